"""The services' replay ops and the bundled example workloads."""

from __future__ import annotations

from importlib import resources

import pytest

from sgx_emm.replay import run

EXAMPLES = ("json_parser.jsonl", "thread_pool.jsonl", "jit_warmup.jsonl")


def lines_of(name: str) -> list[str]:
    return (resources.files("sgx_emm") / "examples" / name).read_text("utf-8").splitlines()


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_bundled_workloads_replay_as_they_say(name: str) -> None:
    report = run(lines_of(name), size=1 << 30, epc_pages=4096)
    assert report.errors == 0 and report.unexpected == 0 and report.dead is None
    assert report.calls == len(lines_of(name))


def test_the_json_parsers_heap_grows_and_trims() -> None:
    report = run(lines_of("json_parser.jsonl"), size=1 << 30, epc_pages=4096)
    by_note = [r for r in report.results
               if r.op == "malloc" and r.counts.get("leaf", {}).get("EAUG", 0) > 10]
    assert by_note, "a growth step shows its commit flow"
    frees = [r for r in report.results if r.op == "free"
             and r.counts.get("ioctl", {}).get("REMOVE_PAGES")]
    assert frees, "a free past the threshold trims"


def test_refused_calls_are_results_not_errors() -> None:
    report = run([
        '{"op": "mmap", "size": 0, "prot": "READ"}',
        '{"op": "mmap", "size": 4096, "prot": "READ", "flags": "MAP_PRIVATE|MAP_BOGUS"}',
        '{"op": "thread_join", "handle": 9}',
        '{"op": "thread_create", "job": "dance"}',
        '{"op": "free", "addr": "u+0x10"}',
        '{"op": "malloc", "size": 16}',
        '{"op": "realloc", "addr": "$5", "size": 5000}',
        '{"op": "stack_touch", "size": "0x3000"}',
        '{"op": "mmap", "addr": null, "size": "0x2000", "prot": "READ|WRITE", '
        '"flags": "PRIVATE|ANONYMOUS"}',
        '{"op": "mprotect", "addr": "$8", "size": "0x1000", "prot": "READ"}',
        '{"op": "madvise", "addr": "$8", "size": "0x2000", "advice": "DONTNEED"}',
        '{"op": "munmap", "addr": "$8", "size": "0x2000"}',
    ], size=1 << 30, epc_pages=4096)
    got = [r.ret for r in report.results]
    assert got == ["EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL", 0, 0, 0, 0, 0, 0, 0]
    assert report.results[1].detail is not None and "MAP_BOGUS" in report.results[1].detail
    assert report.errors == 0 and report.internal_errors == 0

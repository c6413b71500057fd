"""The replay runner's bookkeeping, on a stand-in enclave (replay_fakes).

What is checked here does not depend on the platform: `$N` resolution, errors
per line, threads, the built-in handlers, per-call counts from the trace, the
dead enclave, --strict. The CLI tests run the same paths on the real enclave.
"""

from __future__ import annotations

import json
from typing import Any

from replay_fakes import ABORT_ADDR, CRASH_ADDR, USER_BASE, FakeEnclave

from sgx_emm import flags as F
from sgx_emm.emm.rt import PfInfo
from sgx_emm.replay import CallResult, Report, handler_for, run


def lines(*objs: Any) -> list[str]:
    return [o if isinstance(o, str) else json.dumps(o) for o in objs]


def replay(*objs: Any, strict: bool = False) -> tuple[Report, FakeEnclave]:
    enc = FakeEnclave()
    return run(lines(*objs), enclave=enc, strict=strict), enc


def by_line(report: Report) -> dict[int, CallResult]:
    return {r.line: r for r in report.results}


def test_dollar_n_names_the_address_an_alloc_returned() -> None:
    report, enc = replay(
        {"op": "alloc", "addr": None, "size": "0x2000", "flags": "COMMIT_ON_DEMAND"},
        {"op": "commit", "addr": "$0+0x1000", "size": "0x1000"},
        {"op": "alloc", "addr": "u+0x40000", "size": 4096, "flags": "COMMIT_NOW|FIXED"},
        {"op": "write", "addr": "$2+8", "data": "ff00"},
        {"op": "read", "addr": "$2+8", "size": 2},
    )
    r = by_line(report)
    first = USER_BASE + 0x100000
    assert r[0].ret == 0 and r[0].addr == first
    assert r[1].ret == 0 and r[1].target == first + 0x1000 and r[1].addr is None
    assert ("commit", first + 0x1000, 0x1000) in enc.emm.calls
    assert r[2].addr == USER_BASE + 0x40000
    assert r[4].data == b"\xff\x00"
    assert report.calls == 5 and report.failed == 0 and report.errors == 0


def test_errno_results_and_references_to_lines_without_an_address() -> None:
    report, enc = replay(
        {"op": "alloc", "size": 4096, "flags": "COMMIT_NOW|SYSTEM"},  # 0: EINVAL
        {"op": "commit", "addr": "$0", "size": 4096},  # 1: $0 failed
        {"op": "commit", "addr": "u+0x5000", "size": 4096},  # 2: EINVAL
        {"op": "dealloc", "addr": "$2", "size": 4096},  # 3: $2 failed
        "{not json",  # 4: bad line
        {"op": "dealloc", "addr": "$4", "size": 4096},  # 5: $4 was bad
        "",  # 6: blank
        {"op": "dealloc", "addr": "$6", "size": 4096},  # 7: $6 was blank
    )
    r = by_line(report)
    assert r[0].ret == "EINVAL" and r[0].addr is None and r[0].error is None
    assert r[1].error == ("commit.addr: $0 names line 0, which has no address: it failed "
                          "(EINVAL)")
    assert r[2].ret == "EINVAL"
    assert r[3].error is not None and "it failed (EINVAL)" in r[3].error
    assert r[4].error is not None and r[4].error.startswith("malformed JSON")
    assert r[5].error is not None and "it is not a valid line" in r[5].error
    assert 6 not in r
    assert r[7].error is not None and "it is blank" in r[7].error
    # lines that could not run never reached the manager
    assert [c[0] for c in enc.emm.calls] == ["commit"]
    assert report.calls == 2 and report.failed == 2 and report.errors == 5


def test_threads_enter_through_their_tcs() -> None:
    report, enc = replay(
        {"op": "alloc", "size": 4096, "flags": "COMMIT_NOW", "thread": 1},
        {"op": "write", "addr": "$0", "data": "11", "thread": 2},
        {"op": "read", "addr": "$0", "size": 1, "thread": 3},
        {"op": "read", "addr": "$0", "size": 1},
        {"op": "read", "addr": "$0", "size": 1, "thread": 4},
    )
    tcs = enc.tcs_addresses
    assert enc.entered == [tcs[1], tcs[2], tcs[3], tcs[0]]
    r = by_line(report)
    assert r[2].data == b"\x11" and r[2].thread == 3
    assert r[4].error == "thread 4 does not exist (the enclave has 4 threads: 0..3)"


def test_counts_per_call_are_the_trace_difference() -> None:
    report, enc = replay(
        {"op": "alloc", "size": "0x3000", "flags": "COMMIT_NOW"},
        {"op": "alloc", "size": "0x3000", "flags": "RESERVE"},
    )
    r = by_line(report)
    assert r[0].counts == {"entry": {"EENTER": 1, "EEXIT": 1}, "leaf": {"EACCEPT": 3},
                           "ocall": {"alloc_ocall": 1}}
    assert r[1].counts == {"entry": {"EENTER": 1, "EEXIT": 1}}
    assert report.counts()["leaf"] == {"EACCEPT": 3}
    assert report.counts()["entry"] == {"EENTER": 2, "EEXIT": 2}


def test_fault_lines_report_the_handler_result() -> None:
    report, enc = replay(
        {"op": "alloc", "size": "0x2000", "flags": "COMMIT_ON_DEMAND"},
        {"op": "fault", "addr": "$0+0x10", "write": True},
        {"op": "fault", "addr": "u+0x0"},
        {"op": "alloc", "size": "0x1000", "flags": "COMMIT_ON_DEMAND", "handler": "skip"},
        {"op": "fault", "addr": "$3"},
    )
    r = by_line(report)
    assert r[1].ret == "CONTINUE_EXECUTION"
    assert enc.emm.regions("user")[0].committed == [True, False]
    assert r[2].ret == "CONTINUE_SEARCH"
    assert r[4].ret == "CONTINUE_SEARCH"
    assert report.failed == 0


def test_fault_errcd_has_p_and_sgx_and_w_from_write() -> None:
    seen: list[int] = []
    enc = FakeEnclave()
    enc.emm.handle_page_fault = lambda pf: seen.append(pf.errcd) or 0  # type: ignore
    run(lines({"op": "fault", "addr": "u+0", "write": True}, {"op": "fault", "addr": "u+0"},
              {"op": "fault", "addr": "u+0", "errcd": 4}), enclave=enc)
    assert seen == [0x8003, 0x8001, 0x4]


def test_handler_commit_commits_the_faulting_page_and_continues() -> None:
    committed: list[tuple[int, int]] = []
    handler = handler_for("commit", lambda a, s: committed.append((a, s)))
    assert handler(PfInfo(0x7000_1234, 6), None) == F.EXCEPTION_CONTINUE_EXECUTION
    assert committed == [(0x7000_1000, 0x1000)]


def test_handler_commit_passes_the_fault_on_when_commit_fails() -> None:
    from sgx_emm.errors import EmmError

    def refuse(addr: int, size: int) -> None:
        raise EmmError(13)

    assert handler_for("commit", refuse)(PfInfo(0x1000, 6), None) == \
        F.EXCEPTION_CONTINUE_SEARCH
    assert handler_for("skip", refuse)(PfInfo(0x1000, 6), None) == F.EXCEPTION_CONTINUE_SEARCH


def test_alloc_handler_uses_the_commit_of_its_root() -> None:
    report, enc = replay(
        {"op": "alloc", "size": "0x2000", "flags": "COMMIT_ON_DEMAND", "handler": "commit"},
        {"op": "fault", "addr": "$0+0x1000"},
        {"op": "mm_alloc", "size": "0x2000", "flags": "COMMIT_ON_DEMAND|SYSTEM",
         "handler": "commit"},
        {"op": "fault", "addr": "$2"},
    )
    r = by_line(report)
    assert r[1].ret == r[3].ret == "CONTINUE_EXECUTION"
    assert ("commit", r[0].addr + 0x1000, 0x1000) in enc.emm.calls  # type: ignore[operator]
    assert ("mm_commit", r[2].addr, 0x1000) in enc.emm.calls


def test_crash_and_abort_kill_the_enclave_for_later_lines() -> None:
    crash = f"{CRASH_ADDR:#x}"
    report, enc = replay(
        {"op": "alloc", "size": 4096, "flags": "COMMIT_NOW"},
        {"op": "read", "addr": crash, "size": 1},
        {"op": "read", "addr": "$0", "size": 1},
        "{bad",
    )
    r = by_line(report)
    assert r[1].ret == "CRASH" and r[1].detail == "unhandled #PF"
    assert r[2].error == "not run: the enclave crashed at line 1"
    assert r[3].error is not None and r[3].error.startswith("malformed JSON")
    assert report.dead is r[1]
    report, _ = replay({"op": "write", "addr": f"{ABORT_ADDR:#x}", "data": "00"},
                       {"op": "dealloc", "addr": "u+0", "size": 4096})
    r = by_line(report)
    assert r[0].ret == "ABORT"
    assert r[1].error == "not run: the enclave aborted at line 0"
    assert report.failed == 1


def test_strict_stops_at_the_first_line_that_cannot_run() -> None:
    report, enc = replay(
        {"op": "alloc", "size": 4096, "flags": "COMMIT_NOW|SYSTEM"},  # fails: not a stop
        {"op": "commit", "addr": "$0", "size": 4096},  # bad reference: stop
        {"op": "alloc", "size": 4096, "flags": "COMMIT_NOW"},
        strict=True,
    )
    assert report.stopped is not None and report.stopped.line == 1
    assert [r.line for r in report.results] == [0, 1]
    assert enc.emm.regions("user") == []


def test_expect_marks_results_that_differ() -> None:
    report, _ = replay(
        {"op": "alloc", "size": 4096, "flags": "COMMIT_NOW", "expect": 0},
        {"op": "alloc", "size": 4096, "flags": "COMMIT_NOW|SYSTEM", "expect": "EINVAL"},
        {"op": "alloc", "size": 4096, "flags": "COMMIT_NOW", "expect": "ENOMEM"},
        {"op": "commit", "addr": "$1", "size": 4096, "expect": 0},
    )
    assert [r.as_expected for r in report.results] == [True, True, False, False]
    assert report.unexpected == 2


def test_internal_errors_are_reported_per_line_and_counted() -> None:
    enc = FakeEnclave()

    def broken(*args: Any) -> None:
        raise KeyError("bug")

    enc.emm.__dict__["commit"] = broken
    report = run(lines({"op": "commit", "addr": "u+0", "size": 4096},
                       {"op": "alloc", "size": 4096, "flags": "RESERVE"}), enclave=enc)
    assert report.results[0].error == "internal error: KeyError: 'bug'"
    assert report.results[1].ret == 0
    assert report.internal_errors == 1


def test_decoded_objects_work_as_lines_and_results_can_stream() -> None:
    seen: list[int] = []
    report = run([{"op": "alloc", "size": 4096, "flags": "RESERVE"}], enclave=FakeEnclave(),
                 on_result=lambda r: seen.append(r.line), keep_results=False)
    assert seen == [0] and report.results == [] and report.calls == 1


def test_layout_snapshot_run_length_codes_the_commit_bitmap() -> None:
    report, _ = replay(
        {"op": "alloc", "size": "0x5000", "flags": "COMMIT_ON_DEMAND"},
        {"op": "commit", "addr": "$0+0x1000", "size": "0x2000"},
        {"op": "mm_alloc", "size": "0x1000", "flags": "RESERVE|SYSTEM"},
    )
    layout = report.layout()
    (user,) = layout["user"]
    assert user.runs == ((False, 1), (True, 2), (False, 2)) and user.committed_pages == 2
    (rts,) = layout["rts"]
    assert rts.runs == ((False, 1),)


class CountingView:
    """A commit view that counts how often it is walked page by page."""

    def __init__(self, bits: list[bool]) -> None:
        self.bits = bits
        self.walked = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        self.walked += 1
        return iter(self.bits)

    def count(self, value: bool = True) -> int:
        ones = sum(self.bits)
        return ones if value else len(self.bits) - ones


def test_committed_runs_walks_pages_only_for_partly_committed_views() -> None:
    from sgx_emm.replay import committed_runs

    full, empty, part = CountingView([True] * 8), CountingView([False] * 8), \
        CountingView([True, False, False, True])
    assert committed_runs(full, 8) == ((True, 8),) and full.walked == 0
    assert committed_runs(empty, 8) == ((False, 8),) and empty.walked == 0
    assert committed_runs(part, 4) == ((True, 1), (False, 2), (True, 1)) and part.walked == 1
    assert committed_runs(None, 3) == ((False, 3),)
    assert committed_runs([True, True], 2) == ((True, 2),)

"""The installed command on the real simulated enclave (`python -m sgx_emm.cli`).

Each test runs the CLI as a subprocess on a replay file and reads its output,
the way a user or a script would: every op, bad lines, `$N` references to
failed lines, thread switches, both output formats, --strict, stdin, and the
bundled example (every line of it must give the result it states).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sgx_emm.enclave", reason="the enclave wiring has not landed yet")


def sgx_emm(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sgx_emm.cli", *args], input=input,
                          capture_output=True, text=True, timeout=600)


def write(tmp_path: Path, *objs: Any) -> str:
    path = tmp_path / "calls.jsonl"
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs))
    return str(path)


def replay_json(*args: str, input: str | None = None) -> tuple[list[dict[str, Any]],
                                                               dict[str, Any]]:
    """Per-line objects (by line) and the final object of a JSON replay."""
    done = sgx_emm("replay", *args, "--format", "json", input=input)
    assert done.returncode == 0, done.stderr
    objs = [json.loads(line) for line in done.stdout.splitlines()]
    assert "layout" in objs[-1]
    return objs[:-1], objs[-1]


def by_line(objs: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {o["line"]: o for o in objs}


EVERY_OP = [
    {"op": "alloc", "addr": None, "size": "0x4000", "flags": "COMMIT_ON_DEMAND|GROWSUP"},  # 0
    {"op": "alloc", "addr": "u+0x400000", "size": 8192, "flags": "COMMIT_NOW|FIXED"},  # 1
    {"op": "commit", "addr": "$0", "size": "0x1000"},  # 2
    {"op": "uncommit", "addr": "$0", "size": "0x1000"},  # 3
    {"op": "write", "addr": "$1", "data": "c3"},  # 4
    {"op": "modify_permissions", "addr": "$1", "size": "0x1000", "prot": "READ|EXEC"},  # 5
    {"op": "fetch", "addr": "$1", "size": 1},  # 6
    {"op": "commit_data", "addr": "$0+0x1000", "size": "0x1000", "data": "$1",
     "prot": "READ"},  # 7
    {"op": "read", "addr": "$0+0x1000", "size": 1},  # 8
    {"op": "write", "addr": "$1+0x101c", "data": "01000000"},  # 9: TCS.NSSA = 1
    {"op": "modify_type", "addr": "$1+0x1000", "size": "0x1000", "type": "TCS"},  # 10
    {"op": "fault", "addr": "$0+0x2010", "write": True},  # 11
    {"op": "read", "addr": "$0+0x2010", "size": 2},  # 12
    {"op": "dealloc", "addr": "$0", "size": "0x4000"},  # 13
    {"op": "mm_alloc", "addr": None, "size": "0x3000", "flags": "COMMIT_ON_DEMAND|SYSTEM"},
    {"op": "mm_commit", "addr": "$14", "size": "0x1000"},  # 15
    {"op": "mm_uncommit", "addr": "$14", "size": "0x1000"},  # 16
    {"op": "mm_commit_data", "addr": "$14+0x1000", "size": "0x1000", "data": "$1",
     "prot": "READ|EXEC"},  # 17
    {"op": "mm_modify_permissions", "addr": "$14+0x1000", "size": "0x1000",
     "prot": "READ"},  # 18
    {"op": "mm_commit", "addr": "$14+0x2000", "size": "0x1000"},  # 19
    {"op": "write", "addr": "$14+0x201c", "data": "01000000"},  # 20
    {"op": "mm_modify_type", "addr": "$14+0x2000", "size": "0x1000", "type": "TCS"},  # 21
    {"op": "mm_dealloc", "addr": "$14", "size": "0x3000"},  # 22
    {"op": "mm_init_ema", "addr": "b+0x10000000", "size": "0x2000", "flags": "RESERVE|SYSTEM",
     "prot": "NONE"},  # 23
    {"op": "fetch", "addr": "$0+0x1000", "size": 1},  # 24: freed: nobody handles it
    {"op": "read", "addr": "$1", "size": 1},  # 25: not run, the enclave crashed
]


def test_every_op_on_the_real_enclave(tmp_path: Path) -> None:
    objs, final = replay_json(write(tmp_path, *EVERY_OP))
    r = by_line(objs)
    assert len(r) == len(EVERY_OP)
    assert all(r[n]["ret"] == 0 for n in range(0, 11)), objs
    assert r[0]["addr"].startswith("u+") and r[1]["addr"] == "u+0x400000"
    # COMMIT_NOW accepts both pages; each EACCEPT faults once and the kernel EAUGs
    assert r[1]["counts"]["leaf"]["EAUG"] == 2 and r[1]["counts"]["pf"] == {"0x4": 2}
    assert r[6]["data"] == "c3" and r[8]["data"] == "c3"
    assert r[7]["counts"]["leaf"]["EACCEPTCOPY"] >= 1 and r[7]["counts"]["leaf"]["EAUG"] == 1
    assert r[11]["ret"] == "CONTINUE_EXECUTION"
    assert r[12] == {**r[12], "ret": 0, "data": "0000"}
    assert r[12]["counts"].get("pf") is None  # the fault line committed the page already
    assert all(r[n]["ret"] == 0 for n in range(13, 24)), objs
    assert r[14]["addr"].startswith("0x")  # the rts root lies outside the user range
    assert r[24]["ret"] == "CRASH" and r[24]["detail"]
    assert r[25] == {"line": 25, "op": "read", "error": "not run: the enclave crashed at line 24"}
    assert final["summary"]["dead"] == {"line": 24, "ret": "CRASH"}
    assert set(final["layout"]) == {"user", "rts"}
    regions = final["layout"]["user"]
    # modify_permissions and modify_type split the FIXED region page by page
    assert {"start": "u+0x400000", "size": "0x1000", "alloc_flags": 0x42,
            "si_flags": 0x205, "committed": "1c", "meta": False, "handler": False} in regions
    assert {"start": "u+0x401000", "size": "0x1000", "alloc_flags": 0x42,
            "si_flags": 0x100, "committed": "1c", "meta": False, "handler": False} in regions
    assert any(reg["meta"] for reg in regions)  # the manager's metadata reserve
    for category in ("leaf", "ocall", "ioctl", "pf", "aex", "entry"):
        assert final["counts"][category], category


def test_bad_lines_and_references_to_failed_lines(tmp_path: Path) -> None:
    objs, final = replay_json(write(
        tmp_path,
        {"op": "alloc", "size": "0x1000", "flags": "COMMIT_NOW|SYSTEM"},  # 0: EINVAL
        {"op": "commit", "addr": "$0", "size": "0x1000"},  # 1: $0 failed
        '{"op": "alloc", "size": ',  # 2: malformed
        {"op": "mremap", "addr": "u+0", "size": 1},  # 3: unknown op
        {"op": "commit", "addr": "u+0"},  # 4: missing field
        {"op": "alloc", "size": 4096, "flags": "COMMIT_SOON"},  # 5: bad flag name
        {"op": "modify_permissions", "addr": "$3", "size": 4096, "prot": "READ"},  # 6
        {"op": "alloc", "size": 4096, "flags": "COMMIT_NOW"},  # 7: still runs
        {"op": "uncommit", "addr": "$7", "size": 4096},  # 8
        {"op": "dealloc", "addr": "$8", "size": 4096},  # 9: $8 = where line 8 acted
    ))
    r = by_line(objs)
    assert r[0]["ret"] == "EINVAL" and r[0]["addr"] is None
    assert r[1]["error"] == "commit.addr: $0 names line 0, which has no address: it failed " \
                            "(EINVAL)"
    assert r[2]["error"].startswith("malformed JSON") and "op" not in r[2]
    assert r[3] == {"line": 3, "op": "mremap", "error": "unknown op 'mremap'"}
    assert r[4] == {"line": 4, "op": "commit", "error": 'commit: missing field "size"'}
    assert r[5]["error"] == "alloc.flags: unknown flags name 'COMMIT_SOON'"
    assert "it is not a valid line" in r[6]["error"]
    assert r[7]["ret"] == 0 and r[8]["ret"] == 0
    assert r[9]["ret"] == 0 and r[9]["addr"] == r[8]["addr"] == r[7]["addr"]
    assert final["summary"] == {"calls": 4, "failed": 1, "not_run": 6, "unexpected": 0}


def test_thread_switches(tmp_path: Path) -> None:
    objs, final = replay_json(write(
        tmp_path,
        {"op": "alloc", "size": "0x2000", "flags": "COMMIT_ON_DEMAND", "thread": 1},
        {"op": "write", "addr": "$0", "data": "5a", "thread": 2},
        {"op": "read", "addr": "$0", "size": 1, "thread": 3},
        {"op": "read", "addr": "$0", "size": 1, "thread": 0},
        {"op": "read", "addr": "$0", "size": 1, "thread": 4},
    ), "--threads", "4")
    r = by_line(objs)
    assert r[0]["thread"] == 1 and r[1]["thread"] == 2
    assert r[1]["counts"]["leaf"]["EACCEPT"] == 1  # the first touch commits the page
    assert r[2]["data"] == r[3]["data"] == "5a"
    assert "thread" not in r[3]
    assert r[4]["error"] == "thread 4 does not exist (the enclave has 4 threads: 0..3)"


def test_text_output(tmp_path: Path) -> None:
    path = write(tmp_path,
                 {"op": "alloc", "addr": "u+0x400000", "size": "0x2000",
                  "flags": "COMMIT_ON_DEMAND|FIXED"},
                 {"op": "write", "addr": "$0", "data": "ff", "thread": 1},
                 {"op": "commit", "addr": "u+0x900000", "size": "0x1000"},
                 {"op": "bogus"})
    done = sgx_emm("replay", path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()[1:]  # below the header row
    assert lines[0].split()[:5] == ["0", "alloc", "→", "u+0x400000", "0"]
    first_touch = lines[1].split()
    assert first_touch[:4] == ["1", "write@t1", "u+0x400000", "0"]
    assert "EACCEPT=1" in first_touch and any(w.startswith("pf:0x") for w in first_touch)
    assert lines[2].split()[:4] == ["2", "commit", "u+0x900000", "EINVAL"]
    assert lines[3].split(None, 2) == ["3", "bogus", "error: unknown op 'bogus'"]
    out = done.stdout
    assert "region map" in out and "totals" in out and "leaves" in out
    assert any(line.split()[:6] == ["user", "u+0x400000", "0x2000", "ON_DEMAND", "rw-", "REG"]
               and "1/2" in line for line in lines)
    assert "meta" in out
    assert lines[-1] == "3 calls, 1 failed, 1 not run"


def test_strict_stops_at_the_first_bad_line(tmp_path: Path) -> None:
    path = write(tmp_path, {"op": "alloc", "size": 4096, "flags": "RESERVE"},
                 {"op": "alloc", "size": 4096, "flags": "READ"},
                 {"op": "alloc", "size": 4096, "flags": "RESERVE"})
    done = sgx_emm("replay", path, "--strict", "--format", "json")
    assert done.returncode == 1
    assert done.stderr.strip() == (f"Error: {path}: line 1: alloc.flags: unknown flags name "
                                   "'READ' (it is a prot name) (stopped: --strict)")
    assert [json.loads(line)["line"] for line in done.stdout.splitlines()] == [0, 1]


def test_stdin_and_unreadable_files(tmp_path: Path) -> None:
    objs, _ = replay_json("-", input='{"op": "alloc", "size": 4096, "flags": "COMMIT_NOW"}\n')
    assert objs[0]["ret"] == 0
    done = sgx_emm("replay", str(tmp_path / "nope.jsonl"))
    assert done.returncode == 1
    assert "cannot read" in done.stderr and "No such file or directory" in done.stderr


def test_bad_enclave_options_exit_2() -> None:
    done = sgx_emm("replay", "--size", "0x3000")
    assert done.returncode == 2 and "cannot create the enclave" in done.stderr
    done = sgx_emm("replay", "--epc-pages", "4")  # the image alone needs more
    assert done.returncode == 2 and "cannot create the enclave" in done.stderr
    assert "Traceback" not in done.stderr


def test_map_command(tmp_path: Path) -> None:
    path = write(tmp_path, {"op": "alloc", "addr": "u+0x400000", "size": "0x3000",
                            "flags": "COMMIT_NOW|FIXED"})
    done = sgx_emm("map", path)
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    assert ["user", "u+0x400000", "0x3000", "COMMIT_NOW", "rw-", "REG", "███", "3/3",
            "FIXED"] in rows
    assert any(row[:1] == ["rts"] and "TCS" in row for row in rows)
    assert any(row[:1] == ["user"] and row[-1] == "meta" for row in rows)


# The bundled example: what each line is for, and what it must give.
EXAMPLE_DATA = {5: "c0ffee", 8: "00000000", 11: "c3", 14: "c3", 22: "ab", 34: "11"}


def test_the_bundled_example_runs_every_line_as_intended() -> None:
    objs, final = replay_json()
    r = by_line(objs)
    assert len(r) == 47 and all("error" not in o for o in objs), objs
    assert [o["line"] for o in objs if not o["as_expected"]] == []
    assert final["summary"]["unexpected"] == 0 and "dead" not in final["summary"]
    for line, data in EXAMPLE_DATA.items():
        assert r[line]["data"] == data, line
    failing = {n: o["ret"] for n, o in r.items() if o["ret"] != 0}
    assert failing == {2: "EEXIST", 3: "EINVAL", 15: "EINVAL", 24: "CONTINUE_SEARCH",
                       25: "CONTINUE_EXECUTION", 26: "CONTINUE_SEARCH", 29: "EACCES",
                       45: "EINVAL"}
    # the fault-driven commit: a #PF, then the manager's EACCEPT
    assert r[4]["counts"]["leaf"]["EACCEPT"] == 1 and r[4]["counts"]["pf"]
    # the custom "commit" handler committed the page the write faulted on
    assert r[21]["counts"]["leaf"]["EACCEPT"] == 1 and r[21]["counts"]["pf"]
    # the TCS: converted through the driver, accepted as TCS|MODIFIED
    assert r[18]["counts"]["ioctl"] == {"MODIFY_TYPES": 1}
    assert r[18]["counts"]["leaf"]["EMODT"] == 1
    assert r[19]["counts"].get("ioctl") is None  # already a TCS: nothing to do
    # ... and entered: a whole ecall through it from another thread
    assert r[46]["counts"]["entry"] == {"EENTER": 2, "EEXIT": 2}
    assert [o["op"] for o in objs if o["op"].startswith("mm_")] == [
        "mm_alloc", "mm_commit", "mm_uncommit", "mm_commit_data", "mm_modify_permissions",
        "mm_commit", "mm_modify_type", "mm_dealloc", "mm_init_ema", "mm_init_ema"]
    ops = {o["op"] for o in objs}
    assert ops >= {"alloc", "dealloc", "commit", "uncommit", "commit_data",
                   "modify_permissions", "modify_type", "read", "write", "fetch", "fault"}
    assert {o.get("thread", 0) for o in objs} == {0, 1, 2, 3}


def test_the_bundled_example_in_text_shows_nothing_unexpected() -> None:
    done = sgx_emm("replay")
    assert done.returncode == 0, done.stderr
    assert "UNEXPECTED" not in done.stdout and "error:" not in done.stdout
    assert done.stdout.splitlines()[-1] == "47 calls, 5 failed, 0 not run"


def test_the_runner_as_a_library_takes_enclave_options() -> None:
    from sgx_emm.replay import example_lines, run

    report = run(example_lines(), threads=4)
    assert report.unexpected == 0 and report.calls == 47 and report.dead is None
    assert report.counts()["leaf"]["EAUG"] > 0
    report = run(example_lines(), threads=2)  # lines on threads 2 and 3 cannot run
    assert [(r.line, r.error) for r in report.results if r.error] == [
        (33, "thread 2 does not exist (the enclave has 2 threads: 0..1)"),
        (34, "thread 3 does not exist (the enclave has 2 threads: 0..1)")]


def test_events_show_the_whole_flow_of_each_call(tmp_path: Path) -> None:
    path = write(tmp_path,
                 {"op": "alloc", "addr": None, "size": "0x1000", "flags": "COMMIT_ON_DEMAND"},
                 {"op": "write", "addr": "$0", "data": "c0ffee"})
    text = sgx_emm("replay", "--events", path)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    write_at = next(i for i, line in enumerate(lines) if "write" in line.split()[:2])
    flow = []
    for line in lines[write_at + 1:]:
        if not (line.startswith("        ") and line.strip()):
            break
        flow.append(line.split()[:2])
    # the on-demand commit, in order: first touch -> kernel EAUG -> SGX fault -> EACCEPT
    names = [name for _, name in flow]
    assert names.index("0x6") < names.index("EAUG") < names.index("0x8007") < names.index(
        "EACCEPT")
    assert ["handler", "emm"] in flow
    objs, _ = replay_json(path, "--events")
    events = by_line(objs)[1]["events"]
    assert {"category": "leaf", "name": "EACCEPT", "depth": 1, "addr": "u+0x20000",
            "secinfo": "0x20b"} in events
    assert by_line(objs)[0]["events"][1]["name"] == "alloc_ocall"

"""The command line's plumbing on the stand-in enclave: inputs, formats, exit status.

Runs in-process with click's runner, the enclave factory swapped for the fake,
so that these hold whatever the platform does; test_cli_subprocess.py runs the
installed command on the real enclave.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from replay_fakes import FakeEnclave

from sgx_emm import cli
from sgx_emm.cli import common as cli_common


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Options each enclave was created with; the enclaves are fakes."""
    seen: list[dict[str, Any]] = []

    def create(options: dict[str, Any]) -> FakeEnclave:
        seen.append(options)
        return FakeEnclave(threads=options.get("threads") or 4)

    monkeypatch.setattr(cli_common, "create_enclave", create)
    return seen


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli.main, list(args), input=input)


def write(tmp_path: Path, *objs: Any) -> str:
    path = tmp_path / "calls.jsonl"
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs))
    return str(path)


def test_json_output_one_object_per_call_then_the_final_object(
        made: list[dict[str, Any]], tmp_path: Path) -> None:
    path = write(tmp_path, {"op": "alloc", "size": 4096, "flags": "COMMIT_NOW"},
                 "{oops", {"op": "read", "addr": "$0", "size": 2})
    got = invoke("replay", path, "--format", "json")
    assert got.exit_code == 0, got.output
    objs = [json.loads(line) for line in got.output.splitlines()]
    assert len(objs) == 4
    assert objs[0]["line"] == 0 and objs[0]["ret"] == 0 and objs[0]["addr"] == "u+0x100000"
    assert objs[1] == {"line": 1, "error": objs[1]["error"]}
    assert objs[1]["error"].startswith("malformed JSON")
    assert objs[2]["data"] == "0000"
    assert set(objs[3]) >= {"layout", "counts"} and set(objs[3]["layout"]) == {"user", "rts"}


def test_text_output_has_a_line_per_call_the_map_and_totals(
        made: list[dict[str, Any]], tmp_path: Path) -> None:
    path = write(tmp_path, {"op": "alloc", "size": 4096, "flags": "COMMIT_NOW"},
                 {"op": "commit", "addr": "u+0x5000", "size": 4096})
    got = invoke("replay", path)
    assert got.exit_code == 0
    lines = got.output.splitlines()
    assert lines[0].split() == ["line", "op", "address", "result", "caused"]
    lines = lines[1:]
    assert lines[0].split() == ["0", "alloc", "→", "u+0x100000", "0", "EACCEPT=1",
                                "alloc_ocall=1"]
    assert lines[1].split()[:4] == ["1", "commit", "u+0x5000", "EINVAL"]
    assert "region map" in got.output and "totals" in got.output
    assert lines[-1] == "2 calls, 1 failed, 0 not run"


def test_enclave_options_reach_the_enclave(made: list[dict[str, Any]], tmp_path: Path) -> None:
    path = write(tmp_path, {"op": "read", "addr": "u+0", "size": 1, "thread": 5})
    got = invoke("replay", path, "--threads", "6", "--base", "0x7f0000000000",
                 "--size", str(1 << 36), "--user-base", "0x7f0800000000", "--epc-pages", "0x100",
                 "--emalloc-initial", "0x20000", "--reclaim", "--format", "json")
    assert got.exit_code == 0
    assert made == [{"base": 0x7F0000000000, "size": 1 << 36, "user_base": 0x7F0800000000,
                     "user_size": None, "epc_pages": 0x100, "emalloc_initial": 0x20000,
                     "threads": 6, "reclaim": True, "config": None}]
    assert json.loads(got.output.splitlines()[0])["ret"] == 0  # thread 5 exists


def test_bad_option_values_are_usage_errors(made: list[dict[str, Any]]) -> None:
    got = invoke("replay", "--base", "lots")
    assert got.exit_code == 2 and "'lots' is not a decimal or hex (0x...) number" in got.output


def test_stdin(made: list[dict[str, Any]]) -> None:
    got = invoke("replay", "-", "--format", "json",
                 input='{"op": "alloc", "size": 4096, "flags": "RESERVE"}\n')
    assert got.exit_code == 0
    assert json.loads(got.output.splitlines()[0])["op"] == "alloc"


def test_unreadable_files_exit_1_with_a_clear_message(made: list[dict[str, Any]],
                                                       tmp_path: Path) -> None:
    got = invoke("replay", str(tmp_path / "missing.jsonl"))
    assert got.exit_code == 1
    assert "cannot read" in got.output and "No such file or directory" in got.output
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00")
    got = invoke("replay", str(binary))
    assert got.exit_code == 1 and "not UTF-8 text" in got.output
    got = invoke("map", str(tmp_path))
    assert got.exit_code == 1 and "cannot read" in got.output
    assert made == []  # no enclave was built for an input that cannot be read


def test_strict_stops_with_status_1_at_the_first_bad_line(made: list[dict[str, Any]],
                                                          tmp_path: Path) -> None:
    path = write(tmp_path, {"op": "alloc", "size": 4096, "flags": "RESERVE"},
                 {"op": "mremap", "size": 4096}, {"op": "alloc", "size": 4096, "flags": "RESERVE"})
    got = invoke("replay", path, "--strict", "--format", "json")
    assert got.exit_code == 1
    assert f"{path}: line 1: unknown op 'mremap' (stopped: --strict)" in got.output
    objs = [json.loads(line) for line in got.output.splitlines() if line.startswith("{")]
    assert [o["line"] for o in objs] == [0, 1]  # nothing after the stop, no final object
    assert invoke("replay", path, "--format", "json").exit_code == 0  # not strict: runs on


def test_map_prints_only_the_table(made: list[dict[str, Any]], tmp_path: Path) -> None:
    path = write(tmp_path, {"op": "alloc", "size": "0x2000", "flags": "COMMIT_NOW"})
    got = invoke("map", path)
    assert got.exit_code == 0
    assert "region map" in got.output and "alloc" not in got.output
    assert any(line.split()[:3] == ["user", "u+0x100000", "0x2000"]
               for line in got.output.splitlines())
    got = invoke("map", path, "--format", "json")
    obj = json.loads(got.output)
    assert obj["layout"]["user"][0]["committed"] == "2c"


def test_internal_errors_exit_3(made: list[dict[str, Any]], tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Any, *args: Any, **kw: Any) -> None:
        raise ZeroDivisionError("simulator bug")

    from replay_fakes import FakeEmm

    monkeypatch.setattr(FakeEmm, "alloc", broken)
    path = write(tmp_path, {"op": "alloc", "size": 4096, "flags": "RESERVE"})
    got = invoke("replay", path)
    assert got.exit_code == 3
    assert "internal error: ZeroDivisionError: simulator bug" in got.output


def test_progress_is_quiet_when_stdout_is_not_a_terminal(made: list[dict[str, Any]],
                                                         tmp_path: Path) -> None:
    path = write(tmp_path, *[{"op": "alloc", "size": 4096, "flags": "RESERVE"}] * 300)
    got = invoke("replay", path, "--format", "json")
    assert got.exit_code == 0
    assert all(line.startswith("{") for line in got.output.splitlines())
    assert "replaying" not in got.output


def test_progress_bar_draws_only_on_a_terminal_and_for_long_replays() -> None:
    import io

    from rich.console import Console

    def drawn(terminal: bool, total: int) -> str:
        out = io.StringIO()
        console = Console(file=out, force_terminal=terminal, width=100)
        with cli.progress_for(console, total, "replaying x") as advance:
            for _ in range(total):
                advance()
        return out.getvalue()

    assert "replaying x" in drawn(True, cli.PROGRESS_MIN_LINES)
    assert drawn(True, cli.PROGRESS_MIN_LINES - 1) == ""
    assert drawn(False, 10 * cli.PROGRESS_MIN_LINES) == ""


def test_full_map_shows_every_region(made: list[dict[str, Any]], tmp_path: Path) -> None:
    path = write(tmp_path, *[{"op": "alloc", "size": "0x1000", "flags": "COMMIT_NOW"}] * 4)
    folded = invoke("map", path)
    full = invoke("map", path, "--full-map")
    assert folded.exit_code == full.exit_code == 0

    def user_rows(output: str) -> list[list[str]]:
        return [line.split() for line in output.splitlines() if line.startswith("user")]

    assert len(user_rows(folded.output)) == 1 and "4 × 0x1000" in folded.output
    assert len(user_rows(full.output)) == 4
    assert len(user_rows(invoke("replay", path, "--full-map").output)) == 4


def test_a_long_call_is_named_on_the_progress_console(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import time

    from rich.console import Console

    monkeypatch.setattr(cli_common, "LONG_CALL_SECONDS", 0.0)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with cli.progress_for(console, 3, "replaying x") as progress:
        progress.call_started(7, '{"op": "commit", "addr": "$1"}')
        time.sleep(0.6)  # the watcher looks four times a second
        progress()
    assert "line 7: commit running for" in out.getvalue()
    quiet = io.StringIO()
    with cli.progress_for(Console(file=quiet, force_terminal=False), 3, "x") as progress:
        progress.call_started(1, '{"op": "alloc"}')
        time.sleep(0.3)
        progress()
    assert quiet.getvalue() == ""


def test_progress_goes_to_stderr_only_when_stdout_is_a_terminal() -> None:
    import io

    from rich.console import Console

    piped = Console(file=io.StringIO(), force_terminal=False)
    assert cli_common.progress_console(piped) is piped
    tty = Console(file=io.StringIO(), force_terminal=True)
    assert cli_common.progress_console(tty).stderr

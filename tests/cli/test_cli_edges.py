"""CLI edges: odd input is a line error (exit 0, 1 with --strict), never exit 3 or a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sgx_emm import cli

ALLOC = '{"op": "alloc", "addr": null, "size": "0x1000", "flags": "COMMIT_NOW"}'


def replay(tmp_path: Path, body: bytes, *args: str) -> Result:
    path = tmp_path / "calls.jsonl"
    path.write_bytes(body)
    return CliRunner().invoke(cli.main, ["replay", "--format", "json", *args, str(path)])


def objects(got: Result) -> list[dict[str, object]]:
    return [json.loads(line) for line in got.output.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("line, words", [
    ('{"op": "read", "addr": "0xfffffffffffffff0", "size": "0x20"}', "64-bit address space"),
    ('{"op": "write", "addr": "0xffffffffffffffff", "data": "0000"}', "64-bit address space"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"op": "commit", "addr": "u+0", "size": 4096, "expect": "EWHATEVER"}',
     "unknown result name"),
])
def test_odd_lines_are_line_errors(tmp_path: Path, line: str, words: str) -> None:
    got = replay(tmp_path, (ALLOC + "\n" + line + "\n").encode())
    assert got.exit_code == 0, got.output
    assert got.exception is None or isinstance(got.exception, SystemExit)
    bad = objects(got)[1]
    assert bad["line"] == 1 and words in str(bad["error"])
    strict = replay(tmp_path, (ALLOC + "\n" + line + "\n").encode(), "--strict")
    assert strict.exit_code == 1 and "Traceback" not in strict.output


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    got = replay(tmp_path, b"\xef\xbb\xbf" + ALLOC.encode() + b"\n")
    assert got.exit_code == 0
    assert objects(got)[0]["ret"] == 0


def test_a_line_that_did_not_run_but_expected_a_result_is_marked(tmp_path: Path) -> None:
    body = ('{"op": "alloc", "addr": null, "size": "0x64", "flags": "COMMIT_NOW"}\n'
            '{"op": "commit", "addr": "$0", "size": 4096, "expect": 0}\n')
    got = replay(tmp_path, body.encode())
    assert got.exit_code == 0
    second = objects(got)[1]
    assert second["as_expected"] is False and "error" in second
    assert objects(got)[-1]["summary"]["unexpected"] == 1  # type: ignore[index]

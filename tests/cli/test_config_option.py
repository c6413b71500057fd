"""`--config FILE`: the SDK's config.xml sizes the replayed enclave."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from sgx_emm import cli


def test_config_sets_the_thread_count_a_line_may_name(tmp_path: Path) -> None:
    cfg = tmp_path / "config.xml"
    cfg.write_text("<EnclaveConfiguration><TCSNum>2</TCSNum></EnclaveConfiguration>")
    calls = tmp_path / "calls.jsonl"
    calls.write_text('{"op": "alloc", "size": "0x1000", "flags": "COMMIT_NOW", "thread": 1}\n'
                     '{"op": "alloc", "size": "0x1000", "flags": "COMMIT_NOW", "thread": 2}\n')
    out = CliRunner().invoke(cli.main, ["replay", str(calls), "--config", str(cfg),
                                        "--format", "json"])
    assert out.exit_code == 0, out.output
    first, second = (json.loads(line) for line in out.output.splitlines()[:2])
    assert first["ret"] == 0
    assert "thread 2 does not exist" in second["error"]


def test_a_bad_config_is_a_usage_error_naming_the_element(tmp_path: Path) -> None:
    cfg = tmp_path / "config.xml"
    cfg.write_text("<EnclaveConfiguration><TCSNum>-1</TCSNum></EnclaveConfiguration>")
    out = CliRunner().invoke(cli.main, ["replay", "--config", str(cfg)])
    assert out.exit_code == 2
    assert "TCSNum" in out.output and "negative" in out.output


def test_a_missing_config_file_is_a_usage_error(tmp_path: Path) -> None:
    out = CliRunner().invoke(cli.main, ["map", "--config", str(tmp_path / "none.xml")])
    assert out.exit_code == 2 and "does not exist" in out.output

"""The replay op registry: packages above the manager add ops without editing the runner."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sgx_emm import replay
from sgx_emm.replay import LineError, OpContext, parse_call, register_op


def test_a_registered_op_parses_and_runs_inside_the_enclave() -> None:
    seen: list[tuple[int, str]] = []

    def shout(ctx: OpContext) -> None:
        seen.append((ctx.args["addr"], ctx.args["word"]))
        ctx.result.addr = ctx.args["addr"] + 0x1000

    if "test_shout" not in replay.OPS:
        register_op("test_shout", {"addr": "addr", "word": "text"}, shout)
    report = replay.run(['{"op": "alloc", "addr": null, "size": "0x2000", '
                         '"flags": "COMMIT_ON_DEMAND"}',
                         '{"op": "test_shout", "addr": "$0", "word": " hi "}',
                         '{"op": "read", "addr": "$1", "size": 1}'])
    first, shouted, read = report.results
    assert seen == [(first.addr, "hi")]
    assert shouted.ret == 0 and shouted.addr == first.addr + 0x1000
    assert read.ret == 0 and read.target == first.addr + 0x1000


def test_registering_a_name_twice_is_refused_and_keeps_the_first() -> None:
    before = replay.OPS["read"]
    with pytest.raises(ValueError, match="already registered"):
        register_op("read", {"addr": "addr"}, lambda ctx: None)
    assert replay.OPS["read"] is before


@pytest.mark.parametrize("value", ["", "   ", 3, None])
def test_a_text_field_must_be_a_non_empty_string(value: object) -> None:
    if "test_text" not in replay.OPS:
        register_op("test_text", {"name": "text"}, lambda ctx: None)
    with pytest.raises(LineError, match="test_text.name: expected a non-empty string"):
        parse_call({"op": "test_text", "name": value}, 0)


def test_python_dash_m_sgx_emm_is_the_command_line() -> None:
    out = subprocess.run([sys.executable, "-m", "sgx_emm", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "Usage: sgx-emm" in out and "replay" in out and "map" in out

"""Every manager failure says why: EmmError.reason, SGX codes named as such, replay output."""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import pytest
from emm_support import USER_BASE, make

from sgx_emm import EmmError, Enclave
from sgx_emm.errors import SGX_RESULT_NAMES
from sgx_emm.flags import (
    COMMIT_NOW,
    COMMIT_ON_DEMAND,
    FIXED,
    PAGE_SIZE,
    PROT_READ,
    PROT_WRITE,
    RESERVE,
)
from sgx_emm.replay import LineError, parse_line, run

SRC = Path(__file__).resolve().parents[1] / "src" / "sgx_emm"


@pytest.fixture(scope="module")
def enc() -> Enclave:
    return Enclave.create(size=1 << 30)


def _fails(call: object) -> EmmError:
    with pytest.raises(EmmError) as info:
        call()  # type: ignore[operator]
    return info.value


def test_reason_names_the_check_and_its_values(enc: Enclave) -> None:
    with enc.enter():
        before = enc.emm.regions()
        e = _fails(lambda: enc.emm.alloc(None, 0x64, COMMIT_NOW))
        assert e.errno == errno.EINVAL
        assert e.reason == "size 0x64 is not a multiple of the page size"
        assert str(e) == "[Errno 22] EINVAL: size 0x64 is not a multiple of the page size"
        assert e.result_name == "EINVAL"
        assert enc.emm.regions() == before


@pytest.mark.parametrize("call, err, words", [
    (lambda m, a: m.commit(a + 0x100000, PAGE_SIZE), errno.EINVAL, "no region overlaps"),
    (lambda m, a: m.commit(a - PAGE_SIZE, 2 * PAGE_SIZE), errno.EINVAL,
     "starts in free space"),
    (lambda m, a: m.commit_data(a, PAGE_SIZE, a, PROT_READ), errno.EACCES,
     "is already committed"),
    (lambda m, a: m.modify_permissions(a, PAGE_SIZE, PROT_WRITE), errno.EFAULT,
     "W without R"),
    (lambda m, a: m.alloc(a, PAGE_SIZE, COMMIT_NOW | FIXED), errno.EEXIST,
     "not a reservation"),
    (lambda m, a: m.alloc(None, PAGE_SIZE, COMMIT_NOW | RESERVE), errno.EINVAL,
     "more than one commit mode"),
    (lambda m, a: m.modify_type(a, 2 * PAGE_SIZE, 0x100), errno.EINVAL, "not one page"),
])
def test_each_failure_explains_itself_and_changes_nothing(
        enc: Enclave, call: object, err: int, words: str) -> None:
    with enc.enter():
        addr = enc.emm.alloc(enc.user_base + 0x800000, 2 * PAGE_SIZE,
                             COMMIT_ON_DEMAND | FIXED)
        enc.emm.commit(addr, PAGE_SIZE)
        before = enc.emm.regions()
        e = _fails(lambda: call(enc.emm, addr))  # type: ignore[operator]
        assert e.errno == err, e
        assert words in e.reason and words in str(e)
        assert enc.emm.regions() == before
        enc.emm.dealloc(addr, 2 * PAGE_SIZE)


def test_an_sgx_leaf_result_is_named_as_an_sgx_code() -> None:
    mgr, rt = make()
    addr = mgr.alloc(None, 2 * PAGE_SIZE, COMMIT_ON_DEMAND)
    rt.inject("EACCEPT", 19, match=lambda args: args[1] == addr + PAGE_SIZE)
    e = _fails(lambda: mgr.commit(addr, 2 * PAGE_SIZE))
    assert e.errno == 19  # the reference's result, unchanged
    assert e.result_name == "SGX_PAGE_ATTRIBUTES_MISMATCH"
    assert str(e).startswith(f"SGX_PAGE_ATTRIBUTES_MISMATCH (19) from EACCEPT at "
                             f"{addr + PAGE_SIZE:#x}")
    assert "ENODEV" not in str(e) and "No such device" not in str(e)
    assert addr >= USER_BASE


def test_no_raise_site_lacks_a_reason() -> None:
    bare = re.compile(r"EmmError\(\s*(errno\.\w+|rc|code|err)\s*\)")
    offenders = [f"{p.relative_to(SRC)}:{n}" for p in SRC.rglob("*.py")
                 for n, line in enumerate(p.read_text().splitlines(), 1) if bare.search(line)]
    assert offenders == []


def test_sgx_names_are_the_sdm_codes() -> None:
    assert SGX_RESULT_NAMES[19] == "SGX_PAGE_ATTRIBUTES_MISMATCH"
    assert SGX_RESULT_NAMES[20] == "SGX_PAGE_NOT_MODIFIABLE"


def test_replay_json_and_text_carry_the_reason() -> None:
    report = run(['{"op": "alloc", "addr": null, "size": "0x64", "flags": "COMMIT_NOW"}',
                  '{"op": "commit", "addr": "u+0x900000", "size": "0x1000", '
                  '"expect": "EINVAL", "note": "nothing there"}'], size=1 << 30)
    first, second = report.results
    assert first.ret == "EINVAL" and first.reason is not None
    assert "0x64" in first.reason
    from sgx_emm import render

    fmt = render.address_format(report)
    obj = render.call_json(second, fmt)
    assert obj["reason"] == "no region overlaps u+0x900000-u+0x901000"
    assert obj["note"] == "nothing there" and obj["as_expected"] is True
    line = render.call_text(second, fmt).plain
    assert "no region overlaps u+0x900000-u+0x901000" in line and "# nothing there" in line
    json.dumps(obj)


def test_expect_names_are_validated() -> None:
    with pytest.raises(LineError, match="unknown result name 'EWHATEVER'"):
        parse_line('{"op": "commit", "addr": "u+0", "size": 4096, "expect": "EWHATEVER"}', 0)
    for good in ("EINVAL", "SGX_PAGE_NOT_MODIFIABLE", "CRASH", "0", 0):
        call = parse_line(json.dumps({"op": "commit", "addr": "u+0", "size": 4096,
                                      "expect": good}), 0)
        assert call is not None and call.expect == str(good)

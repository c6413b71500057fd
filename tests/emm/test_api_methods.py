"""The range calls' methods: one body per call, made for both roots, seen as declared.

`commit`, `uncommit`, `dealloc`, `modify_permissions` and their `mm_*` twins are
made by a factory (no forwarding frame); these tests pin what callers see of
them: names, signatures, docstrings, keyword calls, tracebacks, and that each
acts on its own root.
"""

from __future__ import annotations

import errno
import inspect
import traceback

import pytest
from emm_support import BASE, META_AREA, PAGE, SIZE, USER_BASE, make

from sgx_emm.emm import EnclaveMemoryManager
from sgx_emm.emm.manager import _commit_call, _made_by
from sgx_emm.errors import EmmError
from sgx_emm.flags import COMMIT_ON_DEMAND, PROT_READ, RESERVE
from sgx_emm.runtime.null import NullRuntime

RANGE_CALLS = {
    "commit": ["self", "addr", "size"],
    "uncommit": ["self", "addr", "size"],
    "dealloc": ["self", "addr", "size"],
    "modify_permissions": ["self", "addr", "size", "prot"],
}


@pytest.mark.parametrize("name", [*RANGE_CALLS, *(f"mm_{n}" for n in RANGE_CALLS)])
def test_each_method_is_seen_as_declared(name: str) -> None:
    method = getattr(EnclaveMemoryManager, name)
    assert method.__name__ == name
    assert method.__qualname__ == f"EnclaveMemoryManager.{name}"
    assert method.__code__.co_name == name  # what a traceback shows
    assert list(inspect.signature(method).parameters) == RANGE_CALLS[name.removeprefix("mm_")]
    assert method.__doc__ and ("rts root" in method.__doc__) == name.startswith("mm_")


def test_keyword_calls_work_and_each_root_is_its_own() -> None:
    mgr, _ = make()
    user = mgr.alloc(None, PAGE, int(COMMIT_ON_DEMAND))
    rts = mgr.mm_alloc(None, PAGE, int(COMMIT_ON_DEMAND))
    mgr.commit(addr=user, size=PAGE)
    mgr.mm_commit(addr=rts, size=PAGE)
    mgr.modify_permissions(addr=user, size=PAGE, prot=int(PROT_READ))
    assert [r.prot for r in mgr.regions("user") if r.start == user] == [int(PROT_READ)]
    # each root only knows its own regions
    with pytest.raises(EmmError) as info:
        mgr.commit(rts, PAGE)
    assert info.value.errno == errno.EINVAL
    with pytest.raises(EmmError) as info:
        mgr.mm_uncommit(user, PAGE)
    assert info.value.errno == errno.EINVAL
    mgr.mm_dealloc(rts, PAGE)
    mgr.dealloc(user, PAGE)
    assert mgr.region_count("rts") == 0
    assert all(r.start != user for r in mgr.regions("user"))


def test_a_refusal_traceback_names_the_public_method() -> None:
    mgr, _ = make()
    addr = mgr.alloc(None, PAGE, int(RESERVE))
    with pytest.raises(EmmError) as info:
        mgr.commit(addr, PAGE)  # a reservation cannot hold pages
    assert info.value.errno == errno.EACCES
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "commit" in frames and "call" not in frames


def test_a_declaration_with_other_parameters_fails_at_once() -> None:
    with pytest.raises(TypeError, match="declared with other parameters"):
        @_made_by(_commit_call, False, True)
        def commit(self: EnclaveMemoryManager, addr: int, length: int) -> None:
            """A misnamed parameter."""


@pytest.mark.parametrize("name", [*RANGE_CALLS, *(f"mm_{n}" for n in RANGE_CALLS)])
def test_the_range_check_comes_before_the_lock(name: str) -> None:
    """Before `init` the lock refuses every call (EFAULT), but a malformed range is
    refused first (EINVAL), as the range check runs before the lock is taken."""
    rt = NullRuntime(BASE, SIZE)
    mgr = EnclaveMemoryManager(rt, rt.primitives, meta_area_base=META_AREA)
    method = getattr(mgr, name)
    extra = (int(PROT_READ),) if name.endswith("modify_permissions") else ()
    for addr, size, code in ((USER_BASE + 1, PAGE, errno.EINVAL),
                             (USER_BASE, PAGE + 1, errno.EINVAL),
                             (USER_BASE, 0, errno.EINVAL),
                             ((1 << 64) - PAGE, 2 * PAGE, errno.EINVAL),
                             (USER_BASE, PAGE, errno.EFAULT)):
        with pytest.raises(EmmError) as info:
            method(addr, size, *extra)
        assert info.value.errno == code, (addr, size)

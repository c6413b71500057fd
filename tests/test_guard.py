"""enc.emm is guarded: only inside an entry, never after a crash, typed arguments."""

from __future__ import annotations

import pytest

from sgx_emm import EmmError, Enclave, EnclaveCrashed
from sgx_emm.emm.rt import PfInfo
from sgx_emm.errors import NotEntered
from sgx_emm.flags import (
    COMMIT_NOW,
    COMMIT_ON_DEMAND,
    EXCEPTION_CONTINUE_SEARCH,
    PAGE_SIZE,
    PAGE_TYPE_REG,
    PROT_READ,
    aligned,
)
from sgx_emm.guard import GuardedManager


@pytest.fixture
def enc() -> Enclave:
    return Enclave.create(size=1 << 30, epc_pages=4096, threads=2)


def test_manager_calls_outside_an_entry_raise_and_run_nothing(enc: Enclave) -> None:
    before = enc.trace.counts
    regions = enc.emm.regions()
    with pytest.raises(NotEntered, match=r"emm\.alloc: not inside the enclave"):
        enc.emm.alloc(None, PAGE_SIZE, COMMIT_NOW)
    with pytest.raises(NotEntered):
        enc.emm.mm_commit(enc.base, PAGE_SIZE)
    with pytest.raises(RuntimeError):  # NotEntered is a RuntimeError, as capi's always was
        enc.emm.handle_page_fault(PfInfo(enc.user_base, 0x8006))
    assert enc.trace.counts == before and enc.emm.regions() == regions


def test_views_need_no_entry(enc: Enclave) -> None:
    assert isinstance(enc.emm, GuardedManager)
    assert enc.emm.user_base == enc.user_base and enc.emm.user_end == enc.user_end
    assert enc.emm.region_count("rts") == len(enc.emm.regions("rts")) > 0
    assert enc.manager.user_base == enc.user_base  # the unguarded manager


def test_every_call_after_a_crash_raises_enclave_crashed(enc: Enclave) -> None:
    with pytest.raises(EnclaveCrashed) as first, enc.enter() as t:
        t.read(enc.user_base + 0x1000_0000, 1)  # nothing there
    assert enc.crashed
    with pytest.raises(EnclaveCrashed) as later:
        enc.emm.alloc(None, PAGE_SIZE, COMMIT_NOW)
    assert later.value.cause == first.value.cause
    with pytest.raises(EnclaveCrashed):
        enc.enter().__enter__()
    assert enc.emm.regions()  # the books stay readable


def test_entering_through_a_page_that_is_not_a_tcs_is_a_value_error(enc: Enclave) -> None:
    for bad in (0x1234, enc.user_base, enc.base + enc.size + PAGE_SIZE):
        with pytest.raises(ValueError, match="not a TCS page of this enclave"), \
                enc.enter(tcs=bad):
            pass
    with pytest.raises(TypeError), enc.enter(tcs="0x1000"):  # type: ignore[arg-type]
        pass
    assert not enc.crashed
    with enc.enter(tcs=enc.tcs_addresses[1]) as t:
        assert t.tcs == enc.tcs_addresses[1]


@pytest.mark.parametrize("args, name", [
    ((None, "0x1000", COMMIT_NOW), "size"),
    ((None, 4096.0, COMMIT_NOW), "size"),
    ((None, True, COMMIT_NOW), "size"),
    (("0x7f0000000000", PAGE_SIZE, COMMIT_NOW), "addr"),
    ((None, PAGE_SIZE, "COMMIT_NOW"), "flags"),
    ((None, PAGE_SIZE, PROT_READ), "flags"),  # PROT_READ == RESERVE: refused, not reserved
])
def test_alloc_refuses_wrongly_typed_arguments(enc: Enclave, args: tuple[object, ...],
                                               name: str) -> None:
    with enc.enter():
        before = enc.emm.regions()
        with pytest.raises(TypeError, match=name):
            enc.emm.alloc(*args)  # type: ignore[arg-type]
        assert enc.emm.regions() == before


def test_flag_families_and_handlers_are_checked(enc: Enclave) -> None:
    with enc.enter():
        addr = enc.emm.alloc(None, PAGE_SIZE, COMMIT_ON_DEMAND | PAGE_TYPE_REG | aligned(12))
        with pytest.raises(TypeError, match="prot takes Prot values, not AllocFlags"):
            enc.emm.modify_permissions(addr, PAGE_SIZE, COMMIT_NOW)
        with pytest.raises(TypeError, match="page_type takes PageType values"):
            enc.emm.modify_type(addr, PAGE_SIZE, PROT_READ)
        with pytest.raises(TypeError, match="handler must be callable"):
            enc.emm.alloc(None, PAGE_SIZE, COMMIT_ON_DEMAND, 42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="pfinfo"):
            enc.emm.handle_page_fault(addr)  # type: ignore[arg-type]
        # plain ints pass untouched to the manager's own checks
        with pytest.raises(EmmError) as info:
            enc.emm.modify_type(addr, PAGE_SIZE, 1)
        assert info.value.errno == 1 and "not PAGE_TYPE_TCS" in info.value.reason
        assert enc.emm.handle_page_fault(PfInfo(enc.user_base + 0x1000_0000, 0x4)) == \
            EXCEPTION_CONTINUE_SEARCH
        enc.emm.dealloc(addr, PAGE_SIZE)

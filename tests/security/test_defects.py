"""The defects a hostile-OS review found (D1-D4, two stray exceptions), each pinned.

Every test states the observable promise: a documented error (EmmError,
EnclaveAbort, EnclaveCrashed) and books that agree with the hardware afterwards
(`enc.check()` is empty), never an internal exception or a stale page the
enclave can read.
"""

from __future__ import annotations

import threading

import pytest

from sgx_emm import EmmError, Enclave, EnclaveCrashed
from sgx_emm.enclave import OutOfTcs
from sgx_emm.errors import NotEntered
from sgx_emm.flags import (
    COMMIT_NOW,
    COMMIT_ON_DEMAND,
    FIXED,
    PAGE_SIZE,
    PAGE_TYPE_SS_REST,
    PROT_READ,
    PROT_READ_WRITE,
)

P = PAGE_SIZE


def small(threads: int = 2) -> Enclave:
    return Enclave.create(size=1 << 30, epc_pages=4096, threads=threads)


def region_at(enc: Enclave, addr: int) -> list[bool]:
    return list(next(r for r in enc.emm.regions() if r.start <= addr < r.end).committed)


def ssa_of(enc: Enclave, tcs: int) -> int:
    """The first SSA frame of a load-time TCS."""
    return enc.base + enc.layout.find("ssa", enc.tcs_addresses.index(tcs)).offset


# ---------------------------------------------------------------- D1
@pytest.mark.parametrize("kill", ["dealloc_tcs", "uncommit_ssa", "dealloc_ssa", "restrict_ssa"])
def test_d1_breaking_the_running_tcs_or_its_ssa_crashes_and_retires_it(kill: str) -> None:
    enc = small()
    with pytest.raises(EnclaveCrashed), enc.enter() as t:
        tcs = t.tcs
        ssa = ssa_of(enc, tcs)
        if kill == "dealloc_tcs":
            enc.emm.mm_dealloc(tcs, P)
        elif kill == "uncommit_ssa":
            enc.emm.mm_uncommit(ssa, P)
        elif kill == "dealloc_ssa":
            enc.emm.mm_dealloc(ssa, P)
        else:
            enc.emm.mm_modify_permissions(ssa, P, PROT_READ)
        t.read(enc.user_base, 1)
    assert enc.crashed
    assert tcs not in enc._free_tcs     # retired, never handed out again
    with pytest.raises(EnclaveCrashed):
        enc.enter().__enter__()


# ---------------------------------------------------------------- D2
def test_d2_a_failed_commit_data_keeps_no_accepted_page_off_the_books() -> None:
    enc = small()
    with enc.enter() as t:
        a = enc.emm.alloc(None, 3 * P, COMMIT_ON_DEMAND)
        # the source overlaps the destination: the source faults commit a+P and
        # a+2P, so the EACCEPTCOPY of a+P finds an accepted page (19) -> EFAULT
        with pytest.raises(EmmError) as info:
            enc.emm.commit_data(a, 2 * P, a + P, PROT_READ_WRITE)
        assert info.value.errno == 14
        assert enc.check() == []
        assert region_at(enc, a) == [False, False, True]   # the destination rolled back
        t.write(a, b"SECRET")                               # commits a fresh page
        enc.emm.dealloc(a, 3 * P)
        assert enc.check() == []
        assert enc.emm.alloc(a, 3 * P, COMMIT_ON_DEMAND | FIXED) == a
        assert t.read(a, 6) == bytes(6)
        assert enc.check() == []


def test_d2_multi_region_failure_rolls_back_the_earlier_regions_too() -> None:
    enc = small()
    with enc.enter() as t:
        src = enc.emm.alloc(None, 3 * P, COMMIT_NOW)
        a = enc.emm.alloc(None, 2 * P, COMMIT_ON_DEMAND)
        b = enc.emm.alloc(a + 2 * P, P, COMMIT_ON_DEMAND | FIXED)
        assert b == a + 2 * P
        # code in the enclave accepted b behind the manager's back, so the
        # EACCEPTCOPY of the third page fails after two pages were copied
        assert t.eaccept(0x20B, b) == 0
        with pytest.raises(EmmError):
            enc.emm.commit_data(a, 3 * P, src, PROT_READ)
        assert region_at(enc, a) == [False, False]
        assert [d.kind for d in enc.check()] == ["stale"]   # only the page we accepted


# ---------------------------------------------------------------- D3
def test_d3_an_exception_through_commit_now_leaves_a_region_with_its_bitmap() -> None:
    enc = small(threads=1)
    errors: list[BaseException] = []
    started, release = threading.Event(), threading.Event()

    def hold_the_only_tcs() -> None:
        with enc.enter():
            started.set()
            release.wait(5)

    with enc.enter():
        meta_ready = enc.emm.alloc(None, P, COMMIT_NOW)  # warm the metadata reserve
        enc.emm.dealloc(meta_ready, P)
    holder = threading.Thread(target=hold_the_only_tcs)
    holder.start()
    started.wait(5)
    try:
        # outside any entry, every leaf needs a TCS of its own: there is none
        enc.manager.alloc(None, 4 * P, COMMIT_NOW)
    except (OutOfTcs, EmmError, NotEntered) as exc:
        errors.append(exc)
    finally:
        release.set()
        holder.join()
    assert errors
    assert enc.check() == []
    with enc.enter():
        for region in enc.emm.regions():
            if not region.is_meta and region.size == 4 * P:
                enc.emm.dealloc(region.start, region.size)
    assert enc.check() == []


# ---------------------------------------------------------------- D4
def test_d4_commit_data_on_a_shadow_stack_region_changes_nothing_on_failure() -> None:
    enc = small()
    with enc.enter() as t:
        a = enc.emm.alloc(None, 2 * P, COMMIT_ON_DEMAND | PAGE_TYPE_SS_REST)
        src = enc.emm.alloc(None, P, COMMIT_NOW)
        with pytest.raises(EmmError):
            enc.emm.commit_data(a, P, src, PROT_READ)
        assert enc.check() == []
        assert region_at(enc, a) == [False, False]
        t.write(a, b"x")            # the region says RW: a legal write
        assert t.read(a, 1) == b"x"
    assert not enc.crashed
    assert enc.check() == []


# ---------------------------------------------------------------- strays
def test_out_of_tcs_is_a_documented_error() -> None:
    enc = small(threads=1)
    with enc.enter(), pytest.raises(EmmError) as info, enc.enter():
        pass
    assert isinstance(info.value, OutOfTcs)
    assert isinstance(info.value, RuntimeError)   # what it was before: still caught so
    assert not enc.crashed


def test_a_thread_context_used_after_its_with_says_so() -> None:
    enc = small()
    with enc.enter() as t:
        a = enc.emm.alloc(None, P, COMMIT_NOW)
    for use in (lambda: t.read(a, 1), lambda: t.write(a, b"x"), lambda: t.fetch(a, 1),
                lambda: t.eaccept(0x20B, a)):
        with pytest.raises(NotEntered, match="after its `with"):
            use()
    assert not enc.crashed

"""alloc / mm_alloc: every check in the spec's order, placement, ocalls and leaves."""

from __future__ import annotations

import errno

import pytest
from emm_support import (
    BASE,
    FIRST_FREE,
    PAGE,
    SECINFO_COMMIT,
    USER_BASE,
    USER_END,
    call,
    expect_error,
    make,
    meta,
    rejects,
    seq,
    state,
    user_spans,
)

from sgx_emm.emm.rt import PfInfo
from sgx_emm.errors import EmmError, EnclaveAbort
from sgx_emm.flags import (
    COMMIT_NOW,
    COMMIT_ON_DEMAND,
    EXCEPTION_CONTINUE_SEARCH,
    FIXED,
    GROWSDOWN,
    GROWSUP,
    PAGE_TYPE_REG,
    PAGE_TYPE_SS_FIRST,
    PAGE_TYPE_TCS,
    PROT_READ,
    RESERVE,
    SYSTEM,
    AllocFlags,
    aligned,
)

COD = int(COMMIT_ON_DEMAND)


# ---------------------------------------------------------------- the checks


@pytest.mark.parametrize("flags, addr, size, code", [
    # 0. SYSTEM on the public API wins over every other problem
    (SYSTEM, 0x123, 0x10, errno.EINVAL),
    # 1. no commit mode
    (0, None, PAGE, errno.EINVAL),
    (FIXED | GROWSUP, FIRST_FREE, PAGE, errno.EINVAL),
    # 2. page type not allowed
    (COD | PAGE_TYPE_TCS, None, PAGE, errno.EINVAL),
    # 3. size not a page multiple, even with an address outside the enclave
    (COD, 0x1000, 0x800, errno.EINVAL),
    # 4. alignment below 12, then an address not aligned to it
    (COD | aligned(11), None, PAGE, errno.EINVAL),
    (COD | aligned(16), FIRST_FREE + PAGE, PAGE, errno.EINVAL),
    (COD, FIRST_FREE + 0x10, PAGE, errno.EINVAL),
    # 5. an address outside the enclave: EACCES (checked after the EINVALs)
    (COD, BASE - PAGE, PAGE, errno.EACCES),
    (COD | FIXED, USER_END - PAGE, 2 * PAGE, errno.EACCES),
])
def test_alloc_checks(flags: int, addr: int | None, size: int, code: int) -> None:
    mgr, rt = make()
    rejects(mgr, rt, code, mgr.alloc, addr, size, flags)


def test_fixed_outside_user_range_is_eperm_and_plain_falls_back() -> None:
    mgr, rt = make()
    below_user = USER_BASE - 0x100000
    rejects(mgr, rt, errno.EPERM, mgr.alloc, below_user, PAGE, COD | FIXED)
    assert mgr.alloc(below_user, PAGE, COD) == FIRST_FREE


def test_overlap_with_a_committed_region() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, 2 * PAGE, COD)
    rejects(mgr, rt, errno.EEXIST, mgr.alloc, a + PAGE, 2 * PAGE, COD | FIXED)
    # without FIXED: anywhere (first fit above the region)
    assert mgr.alloc(a + PAGE, 2 * PAGE, COD) == a + 2 * PAGE


def test_enomem_when_nothing_fits() -> None:
    mgr, rt = make()
    rejects(mgr, rt, errno.ENOMEM, mgr.alloc, None, USER_END - USER_BASE, COD)


def test_enomem_when_metadata_fails_leaves_no_trace() -> None:
    mgr, rt = make()
    mgr.alloc(None, PAGE, COD)
    meta(mgr).fail_after = 0
    rejects(mgr, rt, errno.ENOMEM, mgr.alloc, None, PAGE, COD)
    # the bitmap allocation fails after the ocall: region removed, ENOMEM
    meta(mgr).fail_after = 1
    before = state(mgr)
    expect_error(errno.ENOMEM, mgr.alloc, None, PAGE, COD)
    assert state(mgr) == before


def test_alloc_ocall_failure_is_efault_and_removes_the_region() -> None:
    mgr, rt = make()
    before = state(mgr)
    rt.inject("alloc_ocall")
    expect_error(errno.EFAULT, mgr.alloc, None, 2 * PAGE, COMMIT_NOW)
    assert seq(rt) == [call("alloc_ocall", FIRST_FREE, 2 * PAGE, 0x200, 0x2)]
    assert state(mgr) == before


def test_eaccept_failure_in_commit_now_aborts() -> None:
    mgr, rt = make()
    rt.inject("EACCEPT", 0x12)
    with pytest.raises(EnclaveAbort):
        mgr.alloc(None, 2 * PAGE, COMMIT_NOW)


# ------------------------------------------------------- ocalls and leaves


def test_commit_now_accepts_high_to_low() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, 3 * PAGE, COMMIT_NOW)
    assert a == FIRST_FREE
    assert seq(rt) == [
        call("alloc_ocall", a, 3 * PAGE, 0x200, 0x02),
        call("EACCEPT", SECINFO_COMMIT, a + 2 * PAGE),
        call("EACCEPT", SECINFO_COMMIT, a + PAGE),
        call("EACCEPT", SECINFO_COMMIT, a),
    ]
    region = mgr.regions()[-1]
    assert (region.start, region.size, region.si_flags) == (a, 3 * PAGE, 0x203)
    assert list(region.committed) == [True, True, True]


def test_growsdown_accepts_low_to_high() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, 2 * PAGE, COMMIT_NOW | GROWSDOWN)
    assert seq(rt) == [
        call("alloc_ocall", a, 2 * PAGE, 0x200, 0x12),
        call("EACCEPT", SECINFO_COMMIT, a),
        call("EACCEPT", SECINFO_COMMIT, a + PAGE),
    ]


def test_shadow_stack_type_reaches_the_ocall_and_the_region() -> None:
    """(COMMIT_NOW of a shadow-stack type is refused: a documented deviation.)"""
    mgr, rt = make()
    a = mgr.alloc(None, PAGE, COD | PAGE_TYPE_SS_FIRST)
    assert seq(rt) == [call("alloc_ocall", a, PAGE, 0x500, 0x4)]
    assert mgr.regions()[-1].si_flags == 0x503


def test_commit_on_demand_and_reserve() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, 4 * PAGE, COD | PAGE_TYPE_REG)
    assert seq(rt) == [call("alloc_ocall", a, 4 * PAGE, 0x200, 0x04)]
    rt.reset()
    r = mgr.alloc(None, 4 * PAGE, RESERVE)
    assert rt.calls == []
    regions = mgr.regions()
    assert regions[-2].committed.count() == 0 and len(regions[-2].committed) == 4
    assert (regions[-1].start, regions[-1].si_flags, regions[-1].alloc_flags) == (r, 0, 1)


# ------------------------------------------------------------------ placement


def test_first_fit_fills_the_lowest_gap_that_fits() -> None:
    mgr, _ = make()
    a = [mgr.alloc(None, PAGE, COD) for _ in range(6)]
    assert a == [FIRST_FREE + i * PAGE for i in range(6)]
    mgr.dealloc(a[1], PAGE)
    mgr.dealloc(a[3], PAGE)
    mgr.dealloc(a[4], PAGE)
    assert mgr.alloc(None, 2 * PAGE, COD) == a[3]  # a[1]'s gap is too small
    assert mgr.alloc(None, PAGE, COD) == a[1]
    assert mgr.alloc(None, PAGE, COD) == a[5] + PAGE


def test_alignment_rounds_the_candidate_up() -> None:
    mgr, _ = make()
    mgr.alloc(None, PAGE, COD)
    b = mgr.alloc(None, PAGE, COD | aligned(16))
    assert b == (FIRST_FREE + PAGE + 0xFFFF) & ~0xFFFF
    # the gap left below `b` is used by a page-aligned request
    assert mgr.alloc(None, PAGE, COD) == FIRST_FREE + PAGE


def test_given_free_address_is_used() -> None:
    mgr, _ = make()
    want = FIRST_FREE + 0x100000
    assert mgr.alloc(want, PAGE, COD) == want
    assert mgr.alloc(want - PAGE, PAGE, COD | FIXED) == want - PAGE


def test_empty_rts_root_places_below_the_user_range_then_grows_down() -> None:
    mgr, _ = make()
    a = mgr.mm_alloc(None, 2 * PAGE, COMMIT_NOW | SYSTEM)
    assert a == USER_BASE - 2 * PAGE
    b = mgr.mm_alloc(None, PAGE, COD | SYSTEM)
    assert b == a - PAGE
    rts = mgr.regions("rts")
    assert [(r.start, r.alloc_flags) for r in rts] == [(b, 0x84), (a, 0x82)]


def test_rts_root_never_enters_the_user_range() -> None:
    mgr, rt = make()
    rejects(mgr, rt, errno.EPERM, mgr.mm_alloc, FIRST_FREE + 0x10000, PAGE, COD | FIXED)
    a = mgr.mm_alloc(FIRST_FREE + 0x10000, PAGE, COD)
    assert a == USER_BASE - PAGE


def test_rts_root_above_the_user_range_when_nothing_below() -> None:
    from emm_support import NullRuntime

    from sgx_emm.emm import EnclaveMemoryManager

    rt = NullRuntime(BASE, 0x20000000)
    mgr = EnclaveMemoryManager(rt, rt.primitives, meta_area_base=0x1F000000)
    mgr.init(BASE, BASE + 0x8000000)  # the user range starts at the enclave base
    assert mgr.mm_alloc(None, PAGE, COD) == BASE + 0x8000000


# ----------------------------------------------------------- reserve re-use


def test_alloc_inside_a_reserve_splits_it() -> None:
    mgr, rt = make()
    r = mgr.alloc(None, 4 * PAGE, RESERVE)
    rt.reset()
    a = mgr.alloc(r + PAGE, 2 * PAGE, COMMIT_NOW | FIXED)
    assert a == r + PAGE
    assert user_spans(mgr) == [(r, PAGE, 1), (r + PAGE, 2 * PAGE, 0x42), (r + 3 * PAGE, PAGE, 1)]
    assert seq(rt)[0] == call("alloc_ocall", a, 2 * PAGE, 0x200, 0x42)


def test_alloc_over_contiguous_reserves_and_beyond() -> None:
    mgr, _ = make()
    r1 = mgr.alloc(None, 2 * PAGE, RESERVE)
    r2 = mgr.alloc(None, 2 * PAGE, RESERVE)
    assert r2 == r1 + 2 * PAGE
    # starts inside r1, covers r2 and one free page above it
    a = mgr.alloc(r1 + PAGE, 4 * PAGE, COD)
    assert a == r1 + PAGE
    assert user_spans(mgr) == [(r1, PAGE, 1), (a, 4 * PAGE, 4)]


def test_reserves_with_a_gap_are_not_reused() -> None:
    mgr, rt = make()
    r1 = mgr.alloc(None, PAGE, RESERVE)
    r2 = mgr.alloc(r1 + 2 * PAGE, PAGE, RESERVE)
    rejects(mgr, rt, errno.EEXIST, mgr.alloc, r1, 3 * PAGE, COD | FIXED)
    assert mgr.alloc(r1, 3 * PAGE, COD) == r2 + PAGE


def test_metadata_reserve_is_never_reused_by_a_user_alloc() -> None:
    mgr, rt = make()
    guard = USER_BASE  # the first reserve's low guard (a RESERVE region)
    rejects(mgr, rt, errno.EEXIST, mgr.alloc, guard, PAGE, COD | FIXED)
    assert mgr.alloc(guard, PAGE, COD) == FIRST_FREE


# ----------------------------------------------- metadata shapes the layout


def test_a_reserve_added_during_alloc_lands_after_the_new_region() -> None:
    mgr, rt = make()
    # RESERVE regions cost one 80-byte EMA each: 818 fit in the first reserve
    per = 80
    room = meta(mgr).reserves()[0].size
    for _ in range(room // per):
        mgr.alloc(None, PAGE, RESERVE)
    before = len(mgr.regions())
    rt.reset()
    x = mgr.alloc(None, PAGE, RESERVE)
    regions = mgr.regions()
    assert len(regions) == before + 4  # the region, and guard / reserve / guard
    tail = [(r.start, r.size, r.alloc_flags, r.is_meta) for r in regions[-4:]]
    assert tail == [
        (x, PAGE, 1, False),
        (x + PAGE, 0x8000, 1, True),
        (x + PAGE + 0x8000, 0x10000, 0x44, True),
        (x + PAGE + 0x18000, 0x8000, 1, True),
    ]
    reserve = x + PAGE + 0x8000
    assert seq(rt) == [call("alloc_ocall", reserve, 0x10000, 0x200, 0x44)] + [
        call("EACCEPT", SECINFO_COMMIT, reserve + i * PAGE) for i in range(16)]


def test_reserve_pages_beyond_the_committed_part_fault_in_on_first_write() -> None:
    mgr, rt = make()
    # fill two reserves; the third one (128 KiB) has only its first 64 KiB committed
    while len([r for r in mgr.regions() if r.is_meta]) < 9:
        mgr.alloc(None, PAGE, COD)
    third = [r for r in mgr.regions() if r.is_meta and r.alloc_flags == 0x44][-1]
    assert third.size == 0x20000 and third.committed.count() == 16
    boundary = third.start + 0x10000
    rt.reset()
    for _ in range(0x10000 // 128 + 1):  # one-page regions cost 128 metadata bytes
        mgr.alloc(None, PAGE, COD)
        if rt.calls_named("EACCEPT"):
            break
    accepts = rt.calls_named("EACCEPT")
    assert accepts and accepts[0].args == (SECINFO_COMMIT, boundary)
    assert [r for r in mgr.regions() if r.start == third.start][0].committed.count() == 17


def test_system_flag_is_kept_on_rts_regions() -> None:
    mgr, _ = make()
    a = mgr.mm_alloc(None, PAGE, RESERVE | SYSTEM)
    assert mgr.regions("rts")[0].alloc_flags == 0x81 and a == USER_BASE - PAGE


# --------------------------------------------------- the decoded flag word


def test_a_flag_word_is_decoded_for_the_root_that_asks() -> None:
    """The decode of a flag word is cached, but the public call's SYSTEM refusal
    (which comes before every other flag check) is not shared with mm_alloc, in
    either order."""
    mgr, _ = make()
    word = SYSTEM | COD
    a = mgr.mm_alloc(None, PAGE, word)
    with pytest.raises(EmmError, match="SYSTEM is reserved") as info:
        mgr.alloc(None, PAGE, word)
    assert info.value.errno == errno.EINVAL
    with pytest.raises(EmmError, match="SYSTEM is reserved"):
        mgr.alloc(None, PAGE, SYSTEM)  # also before the missing commit mode
    with pytest.raises(EmmError, match="no commit mode"):
        mgr.mm_alloc(None, PAGE, SYSTEM)
    assert mgr.mm_alloc(None, PAGE, word) != a


def test_an_intflag_word_leaves_plain_ints_in_the_region() -> None:
    mgr, _ = make()
    a = mgr.alloc(None, PAGE, AllocFlags.COMMIT_ON_DEMAND)
    region = next(r for r in mgr.regions() if r.start == a)
    assert type(region.alloc_flags) is int and type(region.si_flags) is int
    assert (region.alloc_flags, region.si_flags) == (int(COD), 0x203)


@pytest.mark.parametrize("pages", [1, 2, 8, 9, 64, 65, 4097])
def test_a_regions_bit_data_block_is_sized_by_bitmap_bytes(pages: int) -> None:
    """`EmaOps.new` sizes the bit data inline (one page without a shift, larger
    regions with one); either way the block is the one `malloc(bitmap_bytes(pages))`
    takes."""
    from sgx_emm.emm.ema_ops import bitmap_bytes
    from sgx_emm.emm.emalloc import block_size_for

    mgr, _ = make()
    addr = mgr.alloc(None, pages * PAGE, COD)
    ema = mgr._user.find(addr)
    assert ema is not None and ema.map_data is not None
    assert meta(mgr).block_size(ema.map_data) == block_size_for(bitmap_bytes(pages))


# ------------------------------------------------- a freed region's start address


def test_a_freed_start_is_free_space_to_every_call_until_reused() -> None:
    """After a dealloc the region's first page answers as free space (range calls
    EINVAL, a fault not ours), from the region below's end too; the next alloc of
    that size takes the address again, and a larger freed region's inner pages do
    not come back with a smaller region at its start."""
    mgr, rt = make()
    below = mgr.alloc(None, PAGE, COD)
    a = mgr.alloc(None, 2 * PAGE, COD)
    above = mgr.alloc(None, PAGE, COD)
    count = mgr.region_count()
    mgr.dealloc(a, 2 * PAGE)
    assert mgr.region_count() == count - 1
    for addr in (a, a + PAGE):
        rejects(mgr, rt, errno.EINVAL, mgr.commit, addr, PAGE)
        rejects(mgr, rt, errno.EINVAL, mgr.uncommit, addr, PAGE)
        rejects(mgr, rt, errno.EINVAL, mgr.modify_permissions, addr, PAGE, PROT_READ)
        rejects(mgr, rt, errno.EINVAL, mgr.dealloc, addr, PAGE)
        assert mgr.handle_page_fault(PfInfo(addr, 0x2)) == EXCEPTION_CONTINUE_SEARCH
    rejects(mgr, rt, errno.EINVAL, mgr.commit, below, 2 * PAGE)  # runs into the hole
    assert mgr.alloc(None, PAGE, COD) == a  # the lowest gap: the freed start
    assert mgr.region_count() == count
    assert mgr.handle_page_fault(PfInfo(a + PAGE, 0x2)) == EXCEPTION_CONTINUE_SEARCH
    rejects(mgr, rt, errno.EINVAL, mgr.commit, a + PAGE, PAGE)
    mgr.commit(a, PAGE)  # the new region at the old start is a region like any other
    assert [r.start for r in mgr.regions() if r.start in (below, a, above)] == [below, a, above]

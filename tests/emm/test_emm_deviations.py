"""Each documented deviation from the reference, one test each (docs/deviations.md).

Where the reference crashes, corrupts state or accepts invalid input, we return
the documented error and keep state intact; where it only picks another errno
than its documentation, we keep the reference's errno (tested here too).
"""

from __future__ import annotations

import errno

import pytest
from emm_support import (
    BASE,
    FIRST_FREE,
    PAGE,
    SECINFO_COMMIT,
    SECINFO_TRIM,
    USER_BASE,
    call,
    expect_error,
    make,
    rejects,
    seq,
    state,
    user_spans,
)

from sgx_emm.emm.rt import PfInfo
from sgx_emm.flags import (
    COMMIT_NOW,
    COMMIT_ON_DEMAND,
    FIXED,
    PAGE_TYPE_SS_FIRST,
    PAGE_TYPE_SS_REST,
    PAGE_TYPE_TCS,
    PAGE_TYPE_TRIM,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_READ_EXEC,
    PROT_READ_WRITE_EXEC,
    PROT_WRITE,
    RESERVE,
    SYSTEM,
    aligned,
)

COD, NOW, RES = int(COMMIT_ON_DEMAND), int(COMMIT_NOW), int(RESERVE)
R = int(PROT_READ)
TCS = int(PAGE_TYPE_TCS)
DATA = BASE + 0x100000
U64 = (1 << 64) - 1


def test_more_than_one_commit_mode_is_einval() -> None:
    mgr, rt = make()
    for flags in (RES | COD, NOW | COD, RES | NOW | COD):
        rejects(mgr, rt, errno.EINVAL, mgr.alloc, None, PAGE, flags)


def test_size_zero_alloc_is_einval() -> None:
    mgr, rt = make()
    rejects(mgr, rt, errno.EINVAL, mgr.alloc, None, 0, COD)
    rejects(mgr, rt, errno.EINVAL, mgr.mm_alloc, None, 0, COD)


def test_alignment_above_63_is_einval() -> None:
    mgr, rt = make()
    rejects(mgr, rt, errno.EINVAL, mgr.alloc, None, PAGE, COD | aligned(64))
    rejects(mgr, rt, errno.EINVAL, mgr.alloc, None, PAGE, COD | aligned(0xFF))


@pytest.mark.parametrize("page_type", [TCS, int(PAGE_TYPE_TRIM), 0x300, 0x700])
def test_alloc_page_types_are_values_not_bits(page_type: int) -> None:
    mgr, rt = make()
    rejects(mgr, rt, errno.EINVAL, mgr.alloc, None, PAGE, COD | page_type)


@pytest.mark.parametrize("bad", [
    (FIRST_FREE + 8, PAGE),  # unaligned address
    (FIRST_FREE, 0x800),  # unaligned size
    (FIRST_FREE, 0),  # empty
    (U64 - PAGE + 1, 2 * PAGE),  # wraps around
])
def test_unaligned_empty_or_wrapping_ranges_are_einval(bad: tuple[int, int]) -> None:
    mgr, rt = make()
    a = mgr.alloc(None, 4 * PAGE, COD)
    assert a == FIRST_FREE
    mgr.commit(a, PAGE)
    addr, size = bad
    for fn in (mgr.commit, mgr.uncommit, mgr.dealloc):
        rejects(mgr, rt, errno.EINVAL, fn, addr, size)
    rejects(mgr, rt, errno.EINVAL, mgr.modify_permissions, addr, size, R)
    rejects(mgr, rt, errno.EINVAL, mgr.commit_data, addr, size, DATA, R)
    if size == PAGE:
        rejects(mgr, rt, errno.EINVAL, mgr.modify_type, addr, size, TCS)


@pytest.mark.parametrize("bad", [(0x11000008, PAGE), (0x11000000, 0x800), (0x11000000, 0),
                                 (U64 - PAGE + 1, 2 * PAGE)])
def test_mm_init_ema_rejects_unaligned_empty_or_wrapping_ranges(bad: tuple[int, int]) -> None:
    mgr, rt = make()
    rejects(mgr, rt, errno.EINVAL, mgr.mm_init_ema, *bad, 0, R)


def test_undefined_prot_bits_and_x_without_r_are_einval() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, PAGE, NOW)
    b = mgr.alloc(None, PAGE, COD)
    rejects(mgr, rt, errno.EINVAL, mgr.modify_permissions, a, PAGE, 0x8 | R)
    rejects(mgr, rt, errno.EINVAL, mgr.commit_data, b, PAGE, DATA, int(PROT_EXEC))
    rejects(mgr, rt, errno.EINVAL, mgr.commit_data, b, PAGE, DATA, 0x10 | R)


def test_a_range_starting_in_free_space_is_einval() -> None:
    mgr, rt = make()
    a = mgr.alloc(FIRST_FREE + PAGE, 2 * PAGE, COD)
    start = a - PAGE
    for fn in (mgr.commit, mgr.uncommit, mgr.dealloc):
        rejects(mgr, rt, errno.EINVAL, fn, start, 2 * PAGE)
    rejects(mgr, rt, errno.EINVAL, mgr.modify_permissions, start, 2 * PAGE, R)
    rejects(mgr, rt, errno.EINVAL, mgr.commit_data, start, 2 * PAGE, DATA, R)


def test_a_hole_is_einval_except_for_dealloc() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, PAGE, COD)
    mgr.alloc(a + 2 * PAGE, PAGE, COD)
    for fn in (mgr.commit, mgr.uncommit):
        rejects(mgr, rt, errno.EINVAL, fn, a, 3 * PAGE)
    rejects(mgr, rt, errno.EINVAL, mgr.commit_data, a, 3 * PAGE, DATA, R)
    mgr.dealloc(a, 3 * PAGE)
    assert user_spans(mgr) == []


def test_public_calls_on_metadata_regions_are_eacces() -> None:
    mgr, rt = make()
    meta_region = USER_BASE + 0x8000  # the first reserve's on-demand region
    guard = USER_BASE
    assert [r.is_meta for r in mgr.regions()] == [True, True, True]
    for fn in (mgr.commit, mgr.uncommit, mgr.dealloc):
        rejects(mgr, rt, errno.EACCES, fn, meta_region, PAGE)
        rejects(mgr, rt, errno.EACCES, fn, guard, PAGE)
    rejects(mgr, rt, errno.EACCES, mgr.modify_permissions, meta_region, PAGE, R)
    rejects(mgr, rt, errno.EACCES, mgr.modify_type, meta_region, PAGE, TCS)
    # a range that merely includes a metadata region, too
    a = mgr.alloc(None, PAGE, COD)
    rejects(mgr, rt, errno.EACCES, mgr.dealloc, USER_BASE, a + PAGE - USER_BASE)


def test_partial_uncommit_of_a_prot_none_region_touches_only_that_part() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, 4 * PAGE, NOW)
    mgr.modify_permissions(a, 4 * PAGE, int(PROT_NONE))
    rt.reset()
    mgr.uncommit(a + PAGE, 2 * PAGE)
    p1, p2 = a + PAGE, a + 2 * PAGE
    assert seq(rt) == [
        call("modify_ocall", p1, 2 * PAGE, 0x200, 0x201),
        call("EMODPE", 0x221, p1), call("EACCEPT", 0x221, p1),
        call("EMODPE", 0x221, p2), call("EACCEPT", 0x221, p2),
        call("modify_ocall", p1, 2 * PAGE, 0x200, 0x400),
        call("EACCEPT", SECINFO_TRIM, p1), call("EACCEPT", SECINFO_TRIM, p2),
        call("modify_ocall", p1, 2 * PAGE, 0x401, 0x401),  # deviation 23: READ
    ]
    regions = [(r.start, r.size, r.prot, list(r.committed)) for r in mgr.regions()
               if not r.is_meta]
    assert regions == [(a, PAGE, 0, [True]), (p1, 2 * PAGE, R, [False, False]),
                       (a + 3 * PAGE, PAGE, 0, [True])]


def test_partial_dealloc_of_a_prot_none_region_touches_only_that_part() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, 3 * PAGE, NOW)
    mgr.modify_permissions(a, 3 * PAGE, int(PROT_NONE))
    rt.reset()
    mgr.dealloc(a + PAGE, PAGE)
    p = a + PAGE
    assert seq(rt) == [
        call("modify_ocall", p, PAGE, 0x200, 0x201),
        call("EMODPE", 0x221, p), call("EACCEPT", 0x221, p),
        call("modify_ocall", p, PAGE, 0x200, 0x400),
        call("EACCEPT", SECINFO_TRIM, p),
        call("modify_ocall", p, PAGE, 0x400, 0x400),
    ]
    regions = [(r.start, r.size, r.prot, r.committed.count()) for r in mgr.regions()
               if not r.is_meta]
    assert regions == [(a, PAGE, 0, 1), (a + 2 * PAGE, PAGE, 0, 1)]


def test_trimming_a_tcs_page_goes_straight_to_trim() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, PAGE, NOW)
    mgr.modify_type(a, PAGE, TCS)
    rt.reset()
    mgr.dealloc(a, PAGE)
    assert seq(rt) == [
        call("modify_ocall", a, PAGE, 0x100, 0x400),
        call("EACCEPT", SECINFO_TRIM, a),
        call("modify_ocall", a, PAGE, 0x400, 0x400),
    ]
    b = mgr.alloc(None, PAGE, NOW)
    mgr.modify_type(b, PAGE, TCS)
    rt.reset()
    mgr.uncommit(b, PAGE)
    assert [c.name for c in rt.calls] == ["modify_ocall", "EACCEPT", "modify_ocall"]


@pytest.mark.parametrize("prot, tail", [
    (R, [("modify_ocall", 0x203, 0x201), ("EACCEPT", 0x221)]),
    (int(PROT_READ_EXEC), [("modify_ocall", 0x203, 0x205), ("EMODPE", 0x225),
                           ("EACCEPT", 0x225)]),
    (int(PROT_READ_WRITE_EXEC), [("modify_ocall", 0x203, 0x207), ("EMODPE", 0x227)]),
])
def test_a_fault_commit_gives_the_page_the_region_prot(prot: int,
                                                       tail: list[tuple[str, int, int]]) -> None:
    mgr, rt = make()
    a = mgr.alloc(None, 2 * PAGE, COD)
    mgr.commit(a, 2 * PAGE)
    mgr.modify_permissions(a, 2 * PAGE, prot)
    mgr.uncommit(a + PAGE, PAGE)
    rt.reset()
    p = a + PAGE
    assert mgr.handle_page_fault(PfInfo(p, 0)) == -1
    expected = [call("EACCEPT", SECINFO_COMMIT, p)]
    for item in tail:
        if item[0] == "modify_ocall":
            expected.append(call("modify_ocall", p, PAGE, item[1], item[2]))
        else:
            expected.append(call(item[0], item[1], p))
    assert seq(rt) == expected


def test_fixed_reuse_of_a_reserve_never_leaves_the_root_range() -> None:
    # an rts reserve just below the user range; a request over it that runs on into
    # the user range would, in the reference, create an rts region inside it
    mgr, rt = make()
    r = mgr.mm_alloc(USER_BASE - 2 * PAGE, 2 * PAGE, RES | FIXED | SYSTEM)
    rejects(mgr, rt, errno.EEXIST, mgr.mm_alloc, r, 4 * PAGE, COD | FIXED | SYSTEM)
    # without FIXED it goes elsewhere; inside the range, re-use works
    assert mgr.mm_alloc(r, 4 * PAGE, COD | SYSTEM) == r - 4 * PAGE
    assert mgr.mm_alloc(r, PAGE, COD | FIXED | SYSTEM) == r


def test_alloc_over_a_reserve_whose_ocall_fails_leaves_the_reserve() -> None:
    mgr, rt = make()
    r = mgr.alloc(None, 4 * PAGE, RES)
    before = state(mgr)
    rt.inject("alloc_ocall")
    expect_error(errno.EFAULT, mgr.alloc, r + PAGE, 2 * PAGE, COD | FIXED)
    assert state(mgr) == before
    # and it can still be re-used
    assert mgr.alloc(r + PAGE, 2 * PAGE, COD | FIXED) == r + PAGE


def test_mm_init_ema_without_a_type_means_reg() -> None:
    mgr, rt = make()
    low = 0x11000000
    mgr.mm_init_ema(low, PAGE, int(SYSTEM), R)
    assert mgr.regions("rts")[0].si_flags == 0x201
    mgr.mm_modify_permissions(low, PAGE, int(PROT_NONE))  # passes the REG check


def test_reference_errnos_are_kept() -> None:
    mgr, rt = make()
    r = mgr.alloc(None, PAGE, RES)
    rejects(mgr, rt, errno.EACCES, mgr.commit, r, PAGE)  # commit on RESERVE: EACCES
    rejects(mgr, rt, errno.EPERM, mgr.alloc, USER_BASE - PAGE, PAGE, COD | FIXED)
    mgr.mm_init_ema(0x11000000, PAGE, 0, R)
    rejects(mgr, rt, errno.EINVAL, mgr.mm_init_ema, 0x11000000, PAGE, 0, R)


def test_commit_data_with_write_but_not_read_is_einval() -> None:
    """Deviation 21: EACCEPTCOPY #GPs on a SECINFO with W but not R; the reference
    makes the call anyway."""
    mgr, rt = make()
    a = mgr.alloc(None, 2 * PAGE, COD)
    rejects(mgr, rt, errno.EINVAL, mgr.commit_data, a, PAGE, DATA, int(PROT_WRITE))
    rejects(mgr, rt, errno.EINVAL, mgr.mm_commit_data, a, PAGE, DATA, int(PROT_WRITE))
    mgr.commit_data(a, PAGE, DATA, R)  # the region itself is fine
    assert call("EACCEPTCOPY", 0x201, a, DATA) in seq(rt)


@pytest.mark.parametrize("page_type", [PAGE_TYPE_SS_FIRST, PAGE_TYPE_SS_REST])
def test_commit_now_of_a_shadow_stack_type_is_einval(page_type: int) -> None:
    """Deviation 22: the kernel EAUGs only REG pages and EACCEPT of SS|PENDING #GPs;
    the reference allocates and EACCEPTs anyway. Other commit modes keep working."""
    mgr, rt = make()
    rejects(mgr, rt, errno.EINVAL, mgr.alloc, None, PAGE, NOW | int(page_type))
    rejects(mgr, rt, errno.EINVAL, mgr.mm_alloc, None, PAGE, NOW | int(page_type))
    for mode in (COD, RES):
        a = mgr.alloc(None, PAGE, mode | int(page_type))
        assert user_spans(mgr)[-1] == (a, PAGE, mode)


def test_uncommit_of_a_prot_none_region_notifies_with_the_read_it_now_has() -> None:
    """Deviation 23: the region is made READ so its pages can be trimmed; the trim
    notify then carries READ (the reference sends PROT_NONE, after which the
    untrusted side maps the range PROT_NONE while the region says READ)."""
    mgr, rt = make()
    a = mgr.alloc(None, 2 * PAGE, NOW)
    mgr.modify_permissions(a, 2 * PAGE, int(PROT_NONE))
    rt.reset()
    mgr.uncommit(a, 2 * PAGE)
    assert seq(rt) == [
        call("modify_ocall", a, 2 * PAGE, 0x200, 0x201),
        call("EMODPE", 0x221, a), call("EACCEPT", 0x221, a),
        call("EMODPE", 0x221, a + PAGE), call("EACCEPT", 0x221, a + PAGE),
        call("modify_ocall", a, 2 * PAGE, 0x200, 0x400),
        call("EACCEPT", SECINFO_TRIM, a), call("EACCEPT", SECINFO_TRIM, a + PAGE),
        call("modify_ocall", a, 2 * PAGE, 0x401, 0x401),
    ]
    (region,) = [r for r in mgr.regions() if not r.is_meta]
    assert mgr.regions()[-1] == region
    assert region.prot == R and not any(region.committed)  # as in the reference: READ
    # a region that is not PROT_NONE keeps its own prot in both ocalls
    b = mgr.alloc(None, PAGE, NOW)
    rt.reset()
    mgr.uncommit(b, PAGE)
    assert [c for c in seq(rt) if c[0] == "modify_ocall"] == [
        call("modify_ocall", b, PAGE, 0x203, 0x403),
        call("modify_ocall", b, PAGE, 0x403, 0x403)]

"""commit, uncommit, dealloc, modify_permissions, modify_type, commit_data.

For each call: the checks in the spec's order with their errno (state unchanged,
no ocall or leaf), and the exact ocall / leaf sequence the reference issues.
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
    call,
    expect_error,
    make,
    rejects,
    seq,
    state,
    user_spans,
)

from sgx_emm.emm.rt import PfInfo
from sgx_emm.errors import EnclaveAbort
from sgx_emm.flags import (
    COMMIT_NOW,
    COMMIT_ON_DEMAND,
    PAGE_TYPE_SS_FIRST,
    PAGE_TYPE_SS_REST,
    PAGE_TYPE_TCS,
    PAGE_TYPE_TRIM,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_READ_EXEC,
    PROT_READ_WRITE,
    PROT_READ_WRITE_EXEC,
    PROT_WRITE,
    RESERVE,
    SYSTEM,
)

COD = int(COMMIT_ON_DEMAND)
NOW = int(COMMIT_NOW)
R, RW, RX, RWX = int(PROT_READ), int(PROT_READ_WRITE), int(PROT_READ_EXEC), int(
    PROT_READ_WRITE_EXEC)
TCS = int(PAGE_TYPE_TCS)


def committed(mgr: object, addr: int) -> list[bool]:
    from sgx_emm.emm import EnclaveMemoryManager

    assert isinstance(mgr, EnclaveMemoryManager)
    region = next(r for r in mgr.regions() if r.start <= addr < r.end)
    return list(region.committed)


# --------------------------------------------------------------------- commit


def test_commit_accepts_only_uncommitted_pages_in_order() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, 4 * PAGE, COD)
    rt.reset()
    mgr.commit(a + PAGE, 2 * PAGE)
    assert seq(rt) == [call("EACCEPT", SECINFO_COMMIT, a + PAGE),
                       call("EACCEPT", SECINFO_COMMIT, a + 2 * PAGE)]
    rt.reset()
    mgr.commit(a, 4 * PAGE)
    assert seq(rt) == [call("EACCEPT", SECINFO_COMMIT, a),
                       call("EACCEPT", SECINFO_COMMIT, a + 3 * PAGE)]
    assert committed(mgr, a) == [True] * 4
    rt.reset()
    mgr.commit(a, 4 * PAGE)  # all committed: no effect
    assert rt.calls == []


def test_commit_spans_adjacent_regions() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, PAGE, COD)
    b = mgr.alloc(None, PAGE, COD)
    rt.reset()
    mgr.commit(a, 2 * PAGE)
    assert seq(rt) == [call("EACCEPT", SECINFO_COMMIT, a), call("EACCEPT", SECINFO_COMMIT, b)]


def test_commit_checks_in_order() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, PAGE, COD)
    r = mgr.alloc(None, PAGE, RESERVE)
    ro = mgr.alloc(None, PAGE, NOW)
    mgr.modify_permissions(ro, PAGE, R)
    rt.reset()
    rejects(mgr, rt, errno.EINVAL, mgr.commit, a + 0x100000, PAGE)  # nothing there
    rejects(mgr, rt, errno.EACCES, mgr.commit, r, PAGE)  # RESERVE (reference's errno)
    rejects(mgr, rt, errno.EACCES, mgr.commit, ro, PAGE)  # no WRITE
    z = mgr.alloc(None, PAGE, COD)
    rejects(mgr, rt, errno.EINVAL, mgr.commit, z, 2 * PAGE)  # runs past the last region
    # the first failing region wins: RESERVE before the range's end is looked at
    rejects(mgr, rt, errno.EACCES, mgr.commit, a, 4 * PAGE)
    mgr.dealloc(r, PAGE)
    rejects(mgr, rt, errno.EINVAL, mgr.commit, a, 3 * PAGE)  # hole before an EACCES region


def test_commit_leaf_failure_returns_the_code_and_keeps_accepted_pages() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, 3 * PAGE, COD)
    rt.inject("EACCEPT", 0x1B, match=lambda args: args[1] == a + PAGE)
    expect_error(0x1B, mgr.commit, a, 3 * PAGE)
    assert committed(mgr, a) == [True, False, False]


def test_commit_of_a_shadow_stack_rest_region_is_allowed_by_the_bit_test() -> None:
    # the reference tests `si_flags & REG` as a bit: SS_REST (0x600) has it, SS_FIRST not
    mgr, rt = make()
    rest = mgr.alloc(None, PAGE, COD | PAGE_TYPE_SS_REST)
    first = mgr.alloc(None, PAGE, COD | PAGE_TYPE_SS_FIRST)
    rt.reset()
    mgr.commit(rest, PAGE)
    assert seq(rt) == [call("EACCEPT", SECINFO_COMMIT, rest)]
    rejects(mgr, rt, errno.EACCES, mgr.commit, first, PAGE)


# ------------------------------------------------------------------- uncommit


def test_uncommit_trims_each_committed_run() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, 4 * PAGE, COD)
    mgr.commit(a, 2 * PAGE)
    mgr.commit(a + 3 * PAGE, PAGE)
    rt.reset()
    mgr.uncommit(a, 4 * PAGE)
    assert seq(rt) == [
        call("modify_ocall", a, 2 * PAGE, 0x203, 0x403),
        call("EACCEPT", SECINFO_TRIM, a),
        call("EACCEPT", SECINFO_TRIM, a + PAGE),
        call("modify_ocall", a, 2 * PAGE, 0x403, 0x403),
        call("modify_ocall", a + 3 * PAGE, PAGE, 0x203, 0x403),
        call("EACCEPT", SECINFO_TRIM, a + 3 * PAGE),
        call("modify_ocall", a + 3 * PAGE, PAGE, 0x403, 0x403),
    ]
    assert committed(mgr, a) == [False] * 4
    rt.reset()
    mgr.uncommit(a, 4 * PAGE)  # nothing committed: a successful no-op
    assert rt.calls == []



def test_uncommit_checks() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, PAGE, NOW)
    r = mgr.alloc(None, PAGE, RESERVE)
    rejects(mgr, rt, errno.EINVAL, mgr.uncommit, r + 0x100000, PAGE)
    rejects(mgr, rt, errno.EACCES, mgr.uncommit, r, PAGE)
    rejects(mgr, rt, errno.EACCES, mgr.uncommit, a, 3 * PAGE)  # RESERVE before the end
    b = mgr.alloc(None, PAGE, NOW)
    rejects(mgr, rt, errno.EINVAL, mgr.uncommit, b, 2 * PAGE)  # runs past the last region


def test_uncommit_ocall_failure_is_efault() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, PAGE, NOW)
    rt.inject("modify_ocall")
    expect_error(errno.EFAULT, mgr.uncommit, a, PAGE)
    assert committed(mgr, a) == [True]


def test_uncommit_eaccept_failure_aborts() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, PAGE, NOW)
    rt.inject("EACCEPT", 0x13)
    with pytest.raises(EnclaveAbort):
        mgr.uncommit(a, PAGE)


# -------------------------------------------------------------------- dealloc


def test_dealloc_trims_with_prot_none_then_frees() -> None:
    mgr, rt = make()
    before = state(mgr)
    a = mgr.alloc(None, 2 * PAGE, NOW)
    rt.reset()
    mgr.dealloc(a, 2 * PAGE)
    assert seq(rt) == [
        call("modify_ocall", a, 2 * PAGE, 0x200, 0x400),
        call("EACCEPT", SECINFO_TRIM, a), call("EACCEPT", SECINFO_TRIM, a + PAGE),
        call("modify_ocall", a, 2 * PAGE, 0x400, 0x400),
    ]
    assert state(mgr) == before
    assert mgr.alloc(None, PAGE, COD) == a  # the range is free again


def test_dealloc_middle_splits_and_keeps_bitmaps() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, 4 * PAGE, COD)
    mgr.commit(a, PAGE)
    mgr.commit(a + 3 * PAGE, PAGE)
    mgr.dealloc(a + PAGE, 2 * PAGE)
    assert user_spans(mgr) == [(a, PAGE, COD), (a + 3 * PAGE, PAGE, COD)]
    assert committed(mgr, a) == [True] and committed(mgr, a + 3 * PAGE) == [True]


def test_dealloc_allows_holes_and_a_longer_range() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, PAGE, COD)
    b = mgr.alloc(a + 2 * PAGE, PAGE, RESERVE)
    rt.reset()
    mgr.dealloc(a, 8 * PAGE)
    assert user_spans(mgr) == [] and rt.calls == []
    assert b == a + 2 * PAGE


def test_dealloc_of_nothing_is_einval() -> None:
    mgr, rt = make()
    rejects(mgr, rt, errno.EINVAL, mgr.dealloc, FIRST_FREE, PAGE)


def test_dealloc_ocall_failure_is_efault_and_keeps_the_region() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, PAGE, NOW)
    rt.inject("modify_ocall")
    expect_error(errno.EFAULT, mgr.dealloc, a, PAGE)
    assert user_spans(mgr) == [(a, PAGE, NOW)]


# --------------------------------------------------------- modify_permissions


@pytest.mark.parametrize("new, leaves", [
    (R, [("EACCEPT",)]),
    (RX, [("EMODPE",), ("EACCEPT",)]),
    (RWX, [("EMODPE",)]),  # W and X: no EMODPR in the kernel, hence no EACCEPT
    (int(PROT_NONE), [("EACCEPT",)]),
])
def test_modify_permissions_sequence(new: int, leaves: list[tuple[str]]) -> None:
    mgr, rt = make()
    a = mgr.alloc(None, 2 * PAGE, NOW)
    rt.reset()
    mgr.modify_permissions(a, 2 * PAGE, new)
    secinfo = new | 0x200 | 0x20
    expected = [call("modify_ocall", a, 2 * PAGE, 0x203, 0x200 | new)]
    for page in (a, a + PAGE):
        expected += [call(name, secinfo, page) for (name,) in leaves]
    if new == 0:
        expected.append(call("modify_ocall", a, 2 * PAGE, 0x200, 0x200))
    assert seq(rt) == expected
    assert mgr.regions()[-1].si_flags == 0x200 | new


def test_modify_permissions_back_to_rw_extends_with_emodpe() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, PAGE, NOW)
    mgr.modify_permissions(a, PAGE, R)
    rt.reset()
    mgr.modify_permissions(a, PAGE, RW)
    assert seq(rt) == [call("modify_ocall", a, PAGE, 0x201, 0x203),
                       call("EMODPE", 0x223, a), call("EACCEPT", 0x223, a)]
    rt.reset()
    mgr.modify_permissions(a, PAGE, RW)  # unchanged: nothing to do
    assert rt.calls == []


def test_modify_permissions_of_the_middle_splits_in_three() -> None:
    mgr, _ = make()
    a = mgr.alloc(None, 3 * PAGE, NOW)
    mgr.modify_permissions(a + PAGE, PAGE, R)
    regions = [(r.start, r.size, r.si_flags) for r in mgr.regions() if not r.is_meta]
    assert regions == [(a, PAGE, 0x203), (a + PAGE, PAGE, 0x201), (a + 2 * PAGE, PAGE, 0x203)]


def test_modify_permissions_checks() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, 2 * PAGE, COD)
    mgr.commit(a, PAGE)
    r = mgr.alloc(None, PAGE, RESERVE)
    rejects(mgr, rt, errno.EINVAL, mgr.modify_permissions, a, 0, R)
    rejects(mgr, rt, errno.EINVAL, mgr.modify_permissions, a, 0x800, R)
    rejects(mgr, rt, errno.EINVAL, mgr.modify_permissions, a + 8, PAGE, R)
    rejects(mgr, rt, errno.EINVAL, mgr.modify_permissions, a, PAGE, int(PROT_EXEC))
    rejects(mgr, rt, errno.EINVAL, mgr.modify_permissions, r + 0x100000, PAGE, R)
    rejects(mgr, rt, errno.EACCES, mgr.modify_permissions, r, PAGE, R)
    rejects(mgr, rt, errno.EINVAL, mgr.modify_permissions, a, 2 * PAGE, R)  # page 1 not committed
    rejects(mgr, rt, errno.EINVAL, mgr.modify_permissions, a, PAGE + 0x100000, R)


def test_modify_permissions_of_a_tcs_page_is_eacces() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, PAGE, NOW)
    mgr.modify_type(a, PAGE, TCS)
    rejects(mgr, rt, errno.EACCES, mgr.modify_permissions, a, PAGE, R)


def test_modify_permissions_eaccept_failure_returns_the_code() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, PAGE, NOW)
    rt.inject("EACCEPT", 0x14)
    expect_error(0x14, mgr.modify_permissions, a, PAGE, R)


def test_modify_permissions_ocall_failure_is_efault() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, PAGE, NOW)
    before = state(mgr)
    rt.inject("modify_ocall")
    expect_error(errno.EFAULT, mgr.modify_permissions, a, PAGE, R)
    assert state(mgr) == before


# ---------------------------------------------------------------- modify_type


def test_modify_type_to_tcs() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, 3 * PAGE, NOW)
    rt.reset()
    mgr.modify_type(a + PAGE, PAGE, TCS)
    assert seq(rt) == [call("modify_ocall", a + PAGE, PAGE, 0x203, 0x103),
                       call("EACCEPT", 0x110, a + PAGE)]
    regions = [(r.start, r.si_flags) for r in mgr.regions() if not r.is_meta]
    assert regions == [(a, 0x203), (a + PAGE, 0x100), (a + 2 * PAGE, 0x203)]
    rt.reset()
    mgr.modify_type(a + PAGE, PAGE, TCS)  # already TCS: success, nothing done
    assert rt.calls == []


def test_modify_type_checks_in_order() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, 2 * PAGE, COD)
    mgr.commit(a, PAGE)
    ro = mgr.alloc(None, PAGE, NOW)
    mgr.modify_permissions(ro, PAGE, R)
    ss = mgr.alloc(None, PAGE, COD | PAGE_TYPE_SS_REST)
    assert mgr.handle_page_fault(PfInfo(ss, 2)) == -1  # committed by a fault
    rejects(mgr, rt, errno.EPERM, mgr.modify_type, a + 1, 3, int(PAGE_TYPE_TRIM))
    rejects(mgr, rt, errno.EPERM, mgr.modify_type, a, PAGE, int(PAGE_TYPE_SS_FIRST))
    rejects(mgr, rt, errno.EINVAL, mgr.modify_type, a + 1, 2 * PAGE, TCS)
    rejects(mgr, rt, errno.EINVAL, mgr.modify_type, a + 1, PAGE, TCS)
    rejects(mgr, rt, errno.EINVAL, mgr.modify_type, a + 0x100000, PAGE, TCS)
    rejects(mgr, rt, errno.EACCES, mgr.modify_type, a + PAGE, PAGE, TCS)  # not committed
    rejects(mgr, rt, errno.EACCES, mgr.modify_type, ro, PAGE, TCS)  # prot not RW
    rejects(mgr, rt, errno.EACCES, mgr.modify_type, ss, PAGE, TCS)  # type not REG


def test_modify_type_failures() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, PAGE, NOW)
    rt.inject("modify_ocall")
    expect_error(errno.EFAULT, mgr.modify_type, a, PAGE, TCS)
    rt.inject("EACCEPT", 0x10)
    with pytest.raises(EnclaveAbort):
        mgr.modify_type(a, PAGE, TCS)


# ---------------------------------------------------------------- commit_data


DATA = BASE + 0x100000  # a source inside the enclave


def test_commit_data_copies_then_sets_permissions() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, 2 * PAGE, COD)
    rt.reset()
    mgr.commit_data(a, 2 * PAGE, DATA, RX)
    assert seq(rt) == [
        call("EACCEPTCOPY", 0x205, a, DATA),
        call("EACCEPTCOPY", 0x205, a + PAGE, DATA + PAGE),
        call("modify_ocall", a, 2 * PAGE, 0x203, 0x205),
        call("EMODPE", 0x225, a), call("EACCEPT", 0x225, a),
        call("EMODPE", 0x225, a + PAGE), call("EACCEPT", 0x225, a + PAGE),
    ]
    assert committed(mgr, a) == [True, True] and mgr.regions()[-1].prot == RX


def test_commit_data_with_rw_needs_no_permission_change() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, PAGE, COD)
    rt.reset()
    mgr.commit_data(a, PAGE, DATA, RW)
    assert seq(rt) == [call("EACCEPTCOPY", 0x203, a, DATA)]


def test_commit_data_checks() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, 2 * PAGE, COD)
    mgr.commit(a + PAGE, PAGE)
    now = mgr.alloc(None, PAGE, NOW)
    r = mgr.alloc(None, PAGE, RESERVE)
    z = mgr.alloc(None, PAGE, COD)
    for bad in [(a, 0, DATA, R), (a, 0x800, DATA, R), (a + 8, PAGE, DATA, R),
                (a, PAGE, DATA + 8, R), (a, PAGE, DATA, 8), (a, PAGE, BASE - PAGE, R),
                (r + 0x100000, PAGE, DATA, R), (now, PAGE, DATA, R), (z, 2 * PAGE, DATA, R)]:
        rejects(mgr, rt, errno.EINVAL, mgr.commit_data, *bad)
    rejects(mgr, rt, errno.EACCES, mgr.commit_data, a, 2 * PAGE, DATA, R)  # page committed
    rejects(mgr, rt, errno.EACCES, mgr.commit_data, r, PAGE, DATA, R)


def test_commit_data_copy_failure_is_efault() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, PAGE, COD)
    rt.inject("EACCEPTCOPY", 0x11)
    expect_error(errno.EFAULT, mgr.commit_data, a, PAGE, DATA, R)
    assert committed(mgr, a) == [False]


# -------------------------------------------------- private API on the rts root


def test_private_calls_act_on_the_rts_root_only() -> None:
    mgr, rt = make()
    s = mgr.mm_alloc(None, 2 * PAGE, COD | SYSTEM)
    u = mgr.alloc(None, 2 * PAGE, COD)
    expect_error(errno.EINVAL, mgr.commit, s, PAGE)
    expect_error(errno.EINVAL, mgr.mm_commit, u, PAGE)
    rt.reset()
    mgr.mm_commit(s, 2 * PAGE)
    mgr.mm_modify_permissions(s, PAGE, R)
    mgr.mm_modify_type(s + PAGE, PAGE, TCS)
    mgr.mm_uncommit(s, PAGE)
    mgr.mm_dealloc(s, 2 * PAGE)
    assert mgr.regions("rts") == []
    assert [c.name for c in rt.calls].count("modify_ocall") == 6


def test_mm_commit_data_on_the_rts_root() -> None:
    mgr, rt = make()
    s = mgr.mm_alloc(None, PAGE, COD | SYSTEM)
    rt.reset()
    mgr.mm_commit_data(s, PAGE, DATA, R)
    assert seq(rt)[0] == call("EACCEPTCOPY", 0x201, s, DATA)
    assert mgr.regions("rts")[0].prot == R


def test_mm_init_ema() -> None:
    mgr, rt = make()
    low = 0x11000000
    mgr.mm_init_ema(low, 4 * PAGE, int(SYSTEM) | 0x200, RX)
    mgr.mm_init_ema(low + 4 * PAGE, 2 * PAGE, int(RESERVE | SYSTEM), 0)
    assert rt.calls == []
    rts = mgr.regions("rts")
    assert [(r.start, r.size, r.alloc_flags, r.si_flags, r.committed.count()) for r in rts] == [
        (low, 4 * PAGE, 0x80, 0x205, 4), (low + 4 * PAGE, 2 * PAGE, 0x81, 0, 0)]
    rejects(mgr, rt, errno.EINVAL, mgr.mm_init_ema, low + PAGE, PAGE, 0, R)  # overlap
    rejects(mgr, rt, errno.EINVAL, mgr.mm_init_ema, FIRST_FREE, PAGE, 0, R)  # user range
    rejects(mgr, rt, errno.EACCES, mgr.mm_init_ema, BASE - 2 * PAGE, PAGE, 0, R)
    rejects(mgr, rt, errno.EINVAL, mgr.mm_init_ema, low - PAGE, PAGE, int(COMMIT_NOW), R)
    rejects(mgr, rt, errno.EINVAL, mgr.mm_init_ema, low - PAGE, PAGE, 0, 8)


def test_prot_write_only_region_can_commit() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, PAGE, NOW)
    mgr.modify_permissions(a, PAGE, int(PROT_WRITE))
    mgr.uncommit(a, PAGE)
    rt.reset()
    mgr.commit(a, PAGE)
    assert seq(rt) == [call("EACCEPT", SECINFO_COMMIT, a)]


def test_range_checks_run_region_by_region() -> None:
    # the reference checks each region fully before looking at the next gap
    mgr, rt = make()
    a = mgr.alloc(None, PAGE, COD)
    r = mgr.alloc(None, PAGE, RESERVE)
    c = mgr.alloc(r + 2 * PAGE, PAGE, COD)
    span = c + PAGE - a
    rejects(mgr, rt, errno.EACCES, mgr.commit, a, span)  # RESERVE before the hole
    rejects(mgr, rt, errno.EACCES, mgr.uncommit, a, span)
    rejects(mgr, rt, errno.EACCES, mgr.commit_data, a, span, DATA, R)
    mgr.commit(a, PAGE)
    rejects(mgr, rt, errno.EACCES, mgr.modify_permissions, a, span, R)
    mgr.dealloc(r, PAGE)
    rejects(mgr, rt, errno.EINVAL, mgr.commit, a, span)  # now the hole comes first

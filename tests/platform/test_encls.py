"""ENCLS leaves (platform.md B): one test per check, each proving the first failing
check wins over a later one, plus the effect of each leaf on the EPCM."""

from __future__ import annotations

import pytest
from platform_support import DATA, DYN, PAGE, RW, TCS1, TEXT, Small, build_small

from sgx_emm.platform import Epc, GeneralProtection, PageFault, Run
from sgx_emm.platform.secinfo import (
    PT_REG,
    PT_TCS,
    PT_TRIM,
    SGX_CHILD_PRESENT,
    SGX_ENCLAVE_ACT,
    SGX_EPC_PAGE_CONFLICT,
    SGX_PAGE_NOT_MODIFIABLE,
    SGX_PREV_TRK_INCMPL,
    secinfo_flags,
)


def free_paddr(s: Small) -> int:
    slot = s.machine.epc.alloc()
    assert slot is not None
    return Epc.paddr(slot)


def secs(s: Small) -> int:
    return s.fd.secs_paddr


def eaug_page(s: Small, offset: int) -> int:
    """A pending EAUG page at base+offset (through a fault, as Linux does)."""
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        assert t.eaccept(0x20B, s.a(offset)) == 0
    return s.paddr(s.a(offset))


# ---------------------------------------------------------------- EAUG
def test_eaug_misaligned_linaddr_is_gp_before_valid_target_pf(s: Small) -> None:
    with pytest.raises(GeneralProtection):
        s.machine.cpu.eaug(s.a(DYN) + 8, secs(s), s.paddr(s.a(DATA)))


def test_eaug_valid_target_is_pf_before_not_initialized_gp() -> None:
    s = build_small(init=False)
    target = s.paddr(s.a(DATA))
    with pytest.raises(PageFault) as err:
        s.machine.cpu.eaug(s.a(DYN), secs(s), target)
    assert err.value.addr == target


def test_eaug_not_initialized_is_gp() -> None:
    s = build_small(init=False)
    with pytest.raises(GeneralProtection):
        s.machine.cpu.eaug(s.a(DYN), secs(s), free_paddr(s))


def test_eaug_outside_elrange_is_gp(s: Small) -> None:
    with pytest.raises(GeneralProtection):
        s.machine.cpu.eaug(s.base + (1 << 20), secs(s), free_paddr(s))


def test_eaug_effect(s: Small) -> None:
    page = free_paddr(s)
    s.machine.cpu.eaug(s.a(DYN), secs(s), page)
    entry = s.machine.cpu.epcm_entry(page)
    assert entry["valid"] and entry["r"] and entry["w"] and not entry["x"]
    assert entry["pending"] and not entry["modified"] and not entry["pr"]
    assert entry["pt"] == PT_REG and entry["linaddr"] == s.a(DYN)


def test_eaug_without_sgx2_is_gp() -> None:
    # an SGX2 leaf number on an SGX1 CPU is an unsupported ENCLS leaf: #GP(0), not #UD
    s = build_small(sgx2=False)
    with pytest.raises(GeneralProtection) as err:
        s.machine.cpu.eaug(s.a(DYN), secs(s), free_paddr(s))
    assert err.value.reason == "EAUG: SGX2 leaf on a CPU without SGX2"


# ---------------------------------------------------------------- EMODPR
def test_emodpr_reserved_bits_gp_before_invalid_page_pf(s: Small) -> None:
    with pytest.raises(GeneralProtection):
        s.machine.cpu.emodpr(0x1 | (1 << 40), free_paddr(s))


def test_emodpr_w_without_r_is_gp(s: Small) -> None:
    with pytest.raises(GeneralProtection):
        s.machine.cpu.emodpr(0x2, s.paddr(s.a(DATA)))


def test_emodpr_invalid_page_pf_before_conflict(s: Small) -> None:
    page = free_paddr(s)
    s.machine.cpu.inject_conflict(page)
    with pytest.raises(PageFault):
        s.machine.cpu.emodpr(0x1, page)


def test_emodpr_conflict_before_not_modifiable(s: Small) -> None:
    page = eaug_page(s, DYN)          # accepted; make it pending again is impossible,
    pending = free_paddr(s)           # so use a fresh pending page
    s.machine.cpu.eaug(s.a(DYN + PAGE), secs(s), pending)
    s.machine.cpu.inject_conflict(pending)
    assert s.machine.cpu.emodpr(0x1, pending) == SGX_EPC_PAGE_CONFLICT
    assert s.machine.cpu.emodpr(0x1, pending) == SGX_PAGE_NOT_MODIFIABLE
    assert s.machine.cpu.emodpr(0x1, page) == 0


def test_emodpr_modified_is_20_before_pt_check(s: Small) -> None:
    page = s.paddr(s.a(DATA))
    assert s.machine.cpu.emodt(secinfo_flags(0, PT_TRIM), page) == 0   # TRIM, MODIFIED
    assert s.machine.cpu.emodpr(0x1, page) == SGX_PAGE_NOT_MODIFIABLE


def test_emodpr_non_reg_is_pf(s: Small) -> None:
    with pytest.raises(PageFault):
        s.machine.cpu.emodpr(0x1, s.paddr(s.tcs1))


def test_emodpr_not_initialized_is_gp() -> None:
    s = build_small(init=False)
    with pytest.raises(GeneralProtection):
        s.machine.cpu.emodpr(0x1, s.paddr(s.a(DATA)))


def test_emodpr_effect_restricts_never_adds_and_sets_pr(s: Small) -> None:
    page = s.paddr(s.a(TEXT))                 # R-X
    assert s.machine.cpu.emodpr(0x3, page) == 0   # asks R|W: W is not added
    entry = s.machine.cpu.epcm_entry(page)
    assert entry["r"] and not entry["w"] and not entry["x"] and entry["pr"]


# ---------------------------------------------------------------- EMODT
def test_emodt_bad_type_gp_before_invalid_page_pf(s: Small) -> None:
    with pytest.raises(GeneralProtection):
        s.machine.cpu.emodt(secinfo_flags(0, PT_REG), free_paddr(s))


def test_emodt_reserved_bits_gp(s: Small) -> None:
    with pytest.raises(GeneralProtection):
        s.machine.cpu.emodt(secinfo_flags(0, PT_TRIM) | (1 << 20), s.paddr(s.a(DATA)))


def test_emodt_invalid_page_pf_before_conflict(s: Small) -> None:
    page = free_paddr(s)
    s.machine.cpu.inject_conflict(page)
    with pytest.raises(PageFault):
        s.machine.cpu.emodt(secinfo_flags(0, PT_TRIM), page)


def test_emodt_conflict_before_transition_check(s: Small) -> None:
    page = s.paddr(s.a(DATA))
    assert s.machine.cpu.emodt(secinfo_flags(0, PT_TRIM), page) == 0
    s.machine.cpu.inject_conflict(page)
    assert s.machine.cpu.emodt(secinfo_flags(0, PT_TCS), page) == SGX_EPC_PAGE_CONFLICT


def test_emodt_disallowed_transition_pf_before_not_modifiable(s: Small) -> None:
    page = s.paddr(s.a(DATA))
    assert s.machine.cpu.emodt(secinfo_flags(0, PT_TRIM), page) == 0   # TRIM + MODIFIED
    with pytest.raises(PageFault):
        s.machine.cpu.emodt(secinfo_flags(0, PT_TCS), page)              # TRIM -> TCS


def test_emodt_tcs_to_tcs_is_pf(s: Small) -> None:
    with pytest.raises(PageFault):
        s.machine.cpu.emodt(secinfo_flags(0, PT_TCS), s.paddr(s.tcs1))


def test_emodt_pending_is_20(s: Small) -> None:
    pending = free_paddr(s)
    s.machine.cpu.eaug(s.a(DYN), secs(s), pending)
    assert s.machine.cpu.emodt(secinfo_flags(0, PT_TRIM), pending) == SGX_PAGE_NOT_MODIFIABLE


def test_emodt_not_initialized_is_gp() -> None:
    s = build_small(init=False)
    with pytest.raises(GeneralProtection):
        s.machine.cpu.emodt(secinfo_flags(0, PT_TRIM), s.paddr(s.a(DATA)))


def test_emodt_effect(s: Small) -> None:
    page = s.paddr(s.a(DATA))
    assert s.machine.cpu.emodpr(0x1, page) == 0
    assert s.machine.cpu.emodt(secinfo_flags(0, PT_TCS), page) == 0
    entry = s.machine.cpu.epcm_entry(page)
    assert entry["pt"] == PT_TCS and entry["modified"] and not entry["pr"]
    assert not (entry["r"] or entry["w"] or entry["x"])


# ---------------------------------------------------------------- EREMOVE
def test_eremove_invalid_page_succeeds(s: Small) -> None:
    assert s.machine.cpu.eremove(free_paddr(s)) == 0


def test_eremove_accepted_trim_skips_threads_check(s: Small) -> None:
    page = s.paddr(s.a(DATA))
    assert s.machine.cpu.emodt(secinfo_flags(0, PT_TRIM), page) == 0
    assert s.machine.cpu.etrack(secs(s)) == 0
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        assert t.eaccept(0x410, s.a(DATA)) == 0
        assert s.machine.cpu.eremove(page) == 0      # a thread is inside
    assert not s.machine.cpu.epcm_entry(page)["valid"]


def test_eremove_secs_with_children_is_13(s: Small) -> None:
    assert s.machine.cpu.eremove(secs(s)) == SGX_CHILD_PRESENT


def test_eremove_with_thread_inside_is_14(s: Small) -> None:
    page = s.paddr(s.a(DATA))
    with s.machine.vdso.inline(Run(tcs=s.tcs1)):
        assert s.machine.cpu.eremove(page) == SGX_ENCLAVE_ACT
    assert s.machine.cpu.eremove(page) == 0
    assert not s.machine.cpu.epcm_entry(page)["valid"]


# ---------------------------------------------------------------- ETRACK
def test_etrack_previous_cycle_incomplete_is_17(s: Small) -> None:
    with s.machine.vdso.inline(Run(tcs=s.tcs1)):
        assert s.machine.cpu.etrack(secs(s)) == 0
        assert s.machine.cpu.etrack(secs(s)) == SGX_PREV_TRK_INCMPL
    assert s.machine.cpu.etrack(secs(s)) == 0     # the thread left: cycle done


def test_etrack_on_non_secs_is_pf(s: Small) -> None:
    # EPCM(RCX).PT != PT_SECS is #PF(RCX) in the SDM's ETRACK, not #GP
    with pytest.raises(PageFault) as err:
        s.machine.cpu.etrack(s.paddr(s.a(DATA)))
    assert err.value.errcd == 0x8001 and "is not a SECS" in err.value.reason


# ---------------------------------------------------------------- ECREATE / EADD
def test_ecreate_on_valid_page_is_pf(s: Small) -> None:
    from sgx_emm.platform import SecsImage
    with pytest.raises(PageFault):
        s.machine.cpu.ecreate(SecsImage(0, 1 << 20), s.paddr(s.a(DATA)))


def test_ecreate_bad_size_is_gp(s: Small) -> None:
    from sgx_emm.platform import SecsImage
    with pytest.raises(GeneralProtection):
        s.machine.cpu.ecreate(SecsImage(0, 3 * PAGE), free_paddr(s))


def test_eadd_after_einit_is_gp(s: Small) -> None:
    with pytest.raises(GeneralProtection):
        s.machine.cpu.eadd(s.a(DYN), secinfo_flags(RW, PT_REG), None, secs(s), free_paddr(s))


def test_eadd_tcs_forces_rwx_zero() -> None:
    s = build_small(init=False)
    entry = s.epcm(s.a(TCS1))
    assert entry["pt"] == PT_TCS and not (entry["r"] or entry["w"] or entry["x"])

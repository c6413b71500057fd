"""ENCLU leaves inside the enclave (platform.md B): EACCEPT, EACCEPTCOPY, EMODPE,
EENTER/ERESUME. A leaf's #GP/#PF takes the fault path; with no user handler the
inline entry ends with FaultReported carrying the run fields."""

from __future__ import annotations

import pytest
from platform_support import DATA, DYN, DYN_X, PAGE, RW, Small, build_small

from sgx_emm.platform import (
    EnclaveThread,
    Epc,
    FaultReported,
    ModifyTypes,
    RestrictPermissions,
    Run,
)
from sgx_emm.platform.secinfo import (
    EENTER,
    ERESUME,
    PT_REG,
    PT_TCS,
    SGX_NOT_TRACKED,
    SGX_PAGE_ATTRIBUTES_MISMATCH,
    secinfo_flags,
)


def fault_of(call: object) -> FaultReported:
    with pytest.raises(FaultReported) as err:
        call()  # type: ignore[operator]
    return err.value


def write_secinfo(t: EnclaveThread, addr: int, flags: int, junk: bool = False) -> None:
    t.write(addr, flags.to_bytes(8, "little") + (b"\x01" if junk else b"\x00") * 56)


# ---------------------------------------------------------------- EACCEPT
def test_eaccept_misaligned_secinfo_gp_before_invalid_secinfo_page(s: Small,
                                                                   t: EnclaveThread) -> None:
    f = fault_of(lambda: t.eaccept(0, s.a(DYN), secinfo_addr=s.a(DYN + 0x10) + 8))
    assert f.run.exception_vector == 13


def test_eaccept_secinfo_page_invalid_is_pf_rbx_before_target_gp(s: Small,
                                                                 t: EnclaveThread) -> None:
    f = fault_of(lambda: t.eaccept(0, s.a(DATA) + 1, secinfo_addr=s.a(DYN + PAGE)))
    # DYN+PAGE is EAUGed by the kernel but pending: #PF on RBX, not #GP on RCX
    assert f.run.exception_vector == 14
    assert f.run.exception_error_code == 0x8005
    assert f.run.exception_addr == s.a(DYN + PAGE)


def test_eaccept_secinfo_reserved_bytes_is_gp(s: Small, t: EnclaveThread) -> None:
    write_secinfo(t, s.a(DATA), 0x20B, junk=True)
    f = fault_of(lambda: t.eaccept(0, s.a(DYN), secinfo_addr=s.a(DATA)))
    assert f.run.exception_vector == 13


def test_eaccept_secinfo_from_memory_succeeds(s: Small, t: EnclaveThread) -> None:
    write_secinfo(t, s.a(DATA + 64), 0x20B)
    assert t.eaccept(0, s.a(DYN), secinfo_addr=s.a(DATA + 64)) == 0


def test_eaccept_reserved_flag_bits_gp_before_target_pf(s: Small, t: EnclaveThread) -> None:
    f = fault_of(lambda: t.eaccept(0x20B | 0x40, s.a(DYN)))
    assert f.run.exception_vector == 13


def test_eaccept_target_misaligned_or_outside_is_gp(s: Small) -> None:
    for target in (s.a(DYN) + 8, s.base + (1 << 20)):
        with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
            f = fault_of(lambda t=t, target=target: t.eaccept(0x20B, target))
            assert f.run.exception_vector == 13


@pytest.mark.parametrize("flags", [0x21B, 0x212, 0x218 | 0x10, 0x118, 0x430, 0x30B, 0x003])
def test_eaccept_illegal_secinfo_combination_is_gp(s: Small, flags: int) -> None:
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        f = fault_of(lambda: t.eaccept(flags, s.a(DATA)))
        assert f.run.exception_vector == 13


def test_eaccept_target_not_valid_is_pf_rcx(s: Small, t: EnclaveThread) -> None:
    slot = s.machine.epc.alloc()
    assert slot is not None
    s.machine.mm.set_pte((s.a(DYN)) >> 12, slot, RW)     # a lying kernel
    f = fault_of(lambda: t.eaccept(0x20B, s.a(DYN)))
    assert (f.run.exception_vector, f.run.exception_error_code) == (14, 0x8005)
    assert f.run.exception_addr == s.a(DYN)


def test_eaccept_page_of_another_enclave_is_pf(s: Small, t: EnclaveThread) -> None:
    secs_slot = s.fd.secs_slot
    assert secs_slot is not None
    s.machine.mm.set_pte(s.a(DYN) >> 12, secs_slot, RW)   # maps the SECS page
    f = fault_of(lambda: t.eaccept(0x20B, s.a(DYN)))
    assert f.run.exception_error_code == 0x8005


def test_eaccept_mismatch_is_19(s: Small, t: EnclaveThread) -> None:
    assert t.eaccept(0x20B, s.a(DYN)) == 0
    assert t.eaccept(0x20B, s.a(DYN)) == SGX_PAGE_ATTRIBUTES_MISMATCH   # already accepted
    assert t.eaccept(0x20F, s.a(DYN + PAGE)) == SGX_PAGE_ATTRIBUTES_MISMATCH  # X differs


def test_eaccept_untracked_is_11_until_etrack_completes(s: Small) -> None:
    cpu = s.machine.cpu
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        assert cpu.emodpr(0x1, s.paddr(s.a(DATA))) == 0   # no ETRACK yet
        assert t.eaccept(0x221, s.a(DATA)) == SGX_NOT_TRACKED
        assert cpu.etrack(s.fd.secs_paddr) == 0
        assert t.eaccept(0x221, s.a(DATA)) == SGX_NOT_TRACKED   # t still inside
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        assert t.eaccept(0x221, s.a(DATA)) == 0
        assert not s.epcm(s.a(DATA))["pr"]


def test_eaccept_pr_on_never_restricted_page_succeeds(s: Small, t: EnclaveThread) -> None:
    assert t.eaccept(0x223, s.a(DATA)) == 0     # REG|PR|RW: PR is not compared


def test_eaccept_bad_tcs_contents_is_gp(s: Small, t: EnclaveThread) -> None:
    t.write(s.a(DATA), b"\x01" * PAGE)          # STATE != 0
    assert s.fd.modify_types(ModifyTypes(DATA, PAGE, PT_TCS)) == 0
    f = fault_of(lambda: t.eaccept(0x110, s.a(DATA)))
    assert f.run.exception_vector == 13


def test_eaccept_leaf_fault_after_handler_resume() -> None:
    """A leaf's #PF with a user handler that returns ERESUME is re-executed."""
    s = build_small()
    calls: list[int] = []

    def handler(run: Run) -> int:
        calls.append(run.exception_error_code)
        s.machine.mm.clear_pte(s.a(DYN) >> 12)    # undo the lie; the kernel will EAUG
        return ERESUME

    slot = s.machine.epc.alloc()
    assert slot is not None
    s.machine.mm.set_pte(s.a(DYN) >> 12, slot, RW)
    with s.machine.vdso.inline(Run(tcs=s.tcs1, user_handler=handler)) as t:
        assert t.eaccept(0x20B, s.a(DYN)) == 0
    assert calls == [0x8005]


# ---------------------------------------------------------------- EACCEPTCOPY
def test_eacceptcopy_misaligned_dest_is_gp(s: Small, t: EnclaveThread) -> None:
    f = fault_of(lambda: t.eacceptcopy(0x201, s.a(DYN) + 8, s.a(DATA)))
    assert f.run.exception_vector == 13


def test_eacceptcopy_non_reg_secinfo_is_gp(s: Small, t: EnclaveThread) -> None:
    f = fault_of(lambda: t.eacceptcopy(0x101, s.a(DYN), s.a(DATA)))
    assert f.run.exception_vector == 13


def test_eacceptcopy_w_without_r_is_gp(s: Small, t: EnclaveThread) -> None:
    f = fault_of(lambda: t.eacceptcopy(0x202, s.a(DYN), s.a(DATA)))
    assert f.run.exception_vector == 13


def test_eacceptcopy_pending_source_is_pf_before_dest_check(s: Small,
                                                           t: EnclaveThread) -> None:
    t.read(s.a(DATA), 1)
    with pytest.raises(FaultReported):
        t.read(s.a(DYN + PAGE), 1)      # EAUGed by the kernel, pending: 0x8005
    with s.machine.vdso.inline(Run(tcs=s.tcs2)) as t2:
        f = fault_of(lambda: t2.eacceptcopy(0x201, s.a(DATA), s.a(DYN + PAGE)))
        assert f.run.exception_addr == s.a(DYN + PAGE)
        assert f.run.exception_error_code == 0x8005


def test_eacceptcopy_dest_not_fresh_is_19(s: Small, t: EnclaveThread) -> None:
    assert t.eacceptcopy(0x201, s.a(DATA + PAGE), s.a(DATA)) == SGX_PAGE_ATTRIBUTES_MISMATCH


def test_eacceptcopy_copies_and_sets_rwx(s: Small, t: EnclaveThread) -> None:
    t.write(s.a(DATA), b"payload!")
    assert t.eacceptcopy(secinfo_flags(0x5, PT_REG), s.a(DYN_X), s.a(DATA)) == 0
    entry = s.epcm(s.a(DYN_X))
    assert entry["r"] and not entry["w"] and entry["x"] and not entry["pending"]
    assert t.fetch(s.a(DYN_X), 8) == b"payload!"


# ---------------------------------------------------------------- EMODPE
def test_emodpe_misaligned_is_gp(s: Small, t: EnclaveThread) -> None:
    assert fault_of(lambda: t.emodpe(0x203, s.a(DATA) + 1)).run.exception_vector == 13


def test_emodpe_reserved_is_gp_before_target_pf(s: Small, t: EnclaveThread) -> None:
    f = fault_of(lambda: t.emodpe(0x203 | (1 << 33), s.a(DYN)))
    assert f.run.exception_vector == 13


def test_emodpe_pending_target_is_pf(s: Small, t: EnclaveThread) -> None:
    with pytest.raises(FaultReported):
        t.read(s.a(DYN), 1)            # leaves a pending EAUG page behind
    with s.machine.vdso.inline(Run(tcs=s.tcs2)) as t2:
        f = fault_of(lambda: t2.emodpe(0x203, s.a(DYN)))
        assert (f.run.exception_vector, f.run.exception_error_code) == (14, 0x8005)


def test_emodpe_w_without_r_on_unreadable_page_is_gp(s: Small) -> None:
    restrict = RestrictPermissions(DATA, PAGE, 0)
    assert s.fd.restrict_permissions(restrict) == 0
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        assert fault_of(lambda: t.emodpe(0x202, s.a(DATA))).run.exception_vector == 13
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        assert t.emodpe(0x203, s.a(DATA)) == 0
    entry = s.epcm(s.a(DATA))
    assert entry["r"] and entry["w"] and entry["pr"]      # PR unchanged


def test_emodpe_extends(s: Small, t: EnclaveThread) -> None:
    assert t.emodpe(0x204, s.a(DATA)) == 0
    assert s.epcm(s.a(DATA))["x"]


# ---------------------------------------------------------------- EENTER / ERESUME
def test_eenter_non_tcs_page_is_pf_with_function_eenter(s: Small) -> None:
    run = Run(tcs=s.a(DATA))
    with pytest.raises(FaultReported) as err, s.machine.vdso.inline(run):
        pass
    assert err.value.run.function == EENTER
    assert (run.exception_vector, run.exception_error_code) == (14, 0x8005)


def test_eenter_busy_tcs_is_gp(s: Small) -> None:
    with s.machine.vdso.inline(Run(tcs=s.tcs1)):
        run = Run(tcs=s.tcs1)
        with pytest.raises(FaultReported), s.machine.vdso.inline(run):
            pass
        assert run.exception_vector == 13


def test_eenter_cssa_at_nssa_is_gp() -> None:
    s = build_small(nssa=1)
    run = Run(tcs=s.tcs1)
    with pytest.raises(FaultReported), s.machine.vdso.inline(run) as t:
        t.read(s.a(DYN), 1)          # AEX: CSSA 1 = NSSA
    run2 = Run(tcs=s.tcs1)
    with pytest.raises(FaultReported), s.machine.vdso.inline(run2):
        pass
    assert run2.exception_vector == 13


def test_eresume_with_cssa_zero_is_gp(s: Small) -> None:
    run = Run(tcs=s.tcs1)
    assert s.machine.vdso.enter(ERESUME, run) == 0
    assert (run.function, run.exception_vector) == (ERESUME, 13)


def test_eenter_ssa_not_accepted_is_pf(s: Small) -> None:
    ssa = s.a(0x1000)
    assert s.fd.restrict_permissions(RestrictPermissions(0x1000, PAGE, 1)) == 0
    run = Run(tcs=s.tcs1)
    with pytest.raises(FaultReported), s.machine.vdso.inline(run):
        pass
    assert (run.exception_vector, run.exception_error_code) == (14, 0x8007)
    assert run.exception_addr == ssa


def test_vdso_rejects_other_leaves(s: Small) -> None:
    assert s.machine.vdso.enter(5, Run(tcs=s.tcs1)) == -22


def test_epc_paddr_roundtrip(s: Small) -> None:
    assert s.machine.epc.slot_of(Epc.paddr(7)) == 7
    assert s.machine.epc.slot_of(Epc.paddr(7) + 1) is None
    assert s.machine.epc.slot_of(Epc.paddr(s.machine.epc.npages)) is None
    assert s.epcm(s.tcs1)["pt"] == PT_TCS


def test_eaccepts_secinfo_set_is_the_sdm_rule() -> None:
    """EACCEPT checks SECINFO.FLAGS by membership in the values that pass the rule: no
    reserved bit, and a PT/state combination EACCEPT takes."""
    from sgx_emm.platform.enclu import _ACCEPT_OK, _ACCEPT_SHAPE, _LEGAL_ACCEPT
    from sgx_emm.platform.secinfo import SI_RESERVED_MASK

    values = [*range(1 << 16), 1 << 16, 1 << 40, 1 << 63, (1 << 64) - 1, 0x20B | 1 << 20,
              0x20B | 1 << 64, -0x20B]
    for v in values:
        rule = 0 <= v < 1 << 64 and not v & SI_RESERVED_MASK and v & _ACCEPT_SHAPE in _LEGAL_ACCEPT
        assert (v in _ACCEPT_OK) == rule, hex(v)
    assert len(_ACCEPT_OK) == 40

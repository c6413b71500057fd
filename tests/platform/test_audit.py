"""The platform audit against the SDM leaf pages and Linux's SGX driver: each test
pins a value the sources give (docs/platform-model.md, "Audit"), where the model
used to make another choice."""

from __future__ import annotations

import errno
import struct

import pytest
from platform_support import (
    BASE,
    DATA,
    DYN,
    PAGE,
    RW,
    SIZE,
    SSA1,
    TCS1,
    Small,
    build_small,
)

from sgx_emm.platform import (
    MAP_FIXED,
    MAP_SHARED,
    PROT_READ,
    EnclaveThread,
    FaultReported,
    GeneralProtection,
    Machine,
    ModifyTypes,
    PageFault,
    Run,
    SecsImage,
    TcsImage,
    secinfo_flags,
)
from sgx_emm.platform.secinfo import (
    EENTER,
    GPR_EXITINFO,
    GPRSGX_SIZE,
    PT_REG,
    PT_SS_FIRST,
    PT_TCS,
)
from sgx_emm.platform.uapi import SGX_IOC_ENCLAVE_MODIFY_TYPES


def _exitinfo(s: Small, frame: int) -> int:
    slot = s.slot(s.a(SSA1 + frame * PAGE))
    page = s.machine.epc.page_bytes(slot)
    return int(struct.unpack_from("<I", page, PAGE - GPRSGX_SIZE + GPR_EXITINFO)[0])


def _small_without_exinfo() -> Small:
    m = Machine(256)
    fd = m.open_enclave()
    fd.create(SecsImage(BASE, SIZE, ssa_frame_size=1, miscselect=0))
    fd.add_pages(TCS1, TcsImage(ossa=SSA1, nssa=2).to_bytes(), secinfo_flags(0, PT_TCS))
    fd.add_pages(SSA1, bytes(2 * PAGE), secinfo_flags(RW, PT_REG))
    fd.add_pages(DATA, bytes(PAGE), secinfo_flags(PROT_READ, PT_REG))
    fd.init()
    m.mmap(BASE + TCS1, 3 * PAGE, RW, MAP_SHARED | MAP_FIXED, fd)
    m.mmap(BASE + DATA, PAGE, PROT_READ, MAP_SHARED | MAP_FIXED, fd)
    return Small(m, fd)


# 1 ------------------------------------------------------------------ AEX EXITINFO
def test_row1_pf_is_not_reported_in_exitinfo_without_miscselect_exinfo() -> None:
    s = _small_without_exinfo()
    with pytest.raises(FaultReported), s.machine.vdso.inline(Run(tcs=s.a(TCS1))) as t:
        t.write(s.a(DATA), b"x")          # EPCM R only: #PF with the SGX bit
    assert _exitinfo(s, 0) == 0


def test_row1_pf_is_reported_with_miscselect_exinfo(s: Small, t: EnclaveThread) -> None:
    with pytest.raises(FaultReported):
        t.read(s.a(DYN + 0x70000 + 0x30000), 1)     # no VMA: reported #PF
    assert _exitinfo(s, 0) == 0x8000030E


# 2 ------------------------------------------------------------------ EADD of a TCS
def test_row2_eadd_clears_cssa_and_friends_of_a_tcs() -> None:
    s = build_small(init=False)
    image = TcsImage(ossa=SSA1, nssa=2, cssa=1, flags=1, aep=0x1234, state=5).to_bytes()
    s.fd.add_pages(0xC000, image, secinfo_flags(0, PT_TCS))
    stored = TcsImage.from_bytes(bytes(s.machine.epc.page_bytes(s.slot(s.a(0xC000)))))
    assert (stored.cssa, stored.flags, stored.aep, stored.state) == (0, 0, 0, 0)
    assert (stored.ossa, stored.nssa) == (SSA1, 2)


def test_row2_eadd_of_a_tcs_with_reserved_bytes_is_eio() -> None:
    s = build_small(init=False)
    image = bytearray(TcsImage(ossa=SSA1, nssa=2).to_bytes())
    image[200] = 1
    with pytest.raises(OSError) as err:
        s.fd.add_pages(0xC000, bytes(image), secinfo_flags(0, PT_TCS))
    assert err.value.errno == errno.EIO
    assert "TCS reserved area" in err.value.reason  # type: ignore[attr-defined]
    assert s.fd.record(s.a(0xC000)) is None


# 3 ------------------------------------------------------------------ mprotect
def test_row3_mprotect_changes_vmas_before_the_one_refused(s: Small) -> None:
    m = s.machine
    m.mprotect(s.a(SSA1), 2 * PAGE, PROT_READ)
    # [SSA1+PAGE, TEXT) may become RW; TEXT (EADDed RX) may not: EACCES there, and
    # the VMA before it keeps its new protection, as Linux's mprotect walk leaves it
    with pytest.raises(OSError) as err:
        m.mprotect(s.a(SSA1 + PAGE), 2 * PAGE, RW)
    assert err.value.errno == errno.EACCES
    assert m.mm.find_vma(s.a(SSA1 + PAGE)).prot == RW          # type: ignore[union-attr]
    assert m.mm.find_vma(s.a(SSA1)).prot == PROT_READ          # type: ignore[union-attr]
    assert m.mm.find_vma(s.a(SSA1 + 2 * PAGE)).prot == 0x5     # type: ignore[union-attr]


# 5, 7 ------------------------------------------------------------------ ENCLS operands
def test_row7_non_epc_operand_of_encls_is_pf(s: Small) -> None:
    with pytest.raises(PageFault) as err:
        s.machine.cpu.eremove(0x1000)
    assert err.value.errcd == 0x8001 and "does not resolve within the EPC" in err.value.reason
    with pytest.raises(GeneralProtection):
        s.machine.cpu.eremove(s.paddr(s.a(DATA)) + 8)      # misaligned: #GP


def test_row5_eaug_with_a_non_secs_secs_operand_is_pf(s: Small) -> None:
    free = s.machine.epc.alloc()
    assert free is not None
    with pytest.raises(PageFault):
        s.machine.cpu.eaug(s.a(DYN), s.paddr(s.a(DATA)), 0x8000_0000 + (free << 12))


# 8, 9, 16 -------------------------------------------------------------- ioctls
def test_row8_modify_types_with_bits_above_the_type_is_einval(s: Small) -> None:
    params = ModifyTypes(DATA, PAGE, 0x104)
    with pytest.raises(OSError) as err:
        s.fd.modify_types(params)
    assert err.value.errno == errno.EINVAL and params.count == 0
    assert s.fd.record(s.a(DATA))[1] == PT_REG                 # type: ignore[index]


@pytest.mark.parametrize("state", [0x8, 0x10, 0x20])
def test_row9_add_pages_refuses_pending_modified_pr(state: int) -> None:
    s = build_small(init=False)
    with pytest.raises(OSError) as err:
        s.fd.add_pages(0xC000, bytes(PAGE), secinfo_flags(RW, PT_REG) | state)
    assert err.value.errno == errno.EINVAL
    assert s.fd.record(s.a(0xC000)) is None


def test_row16_ebusy_comes_before_the_request_number(s: Small) -> None:
    seen: list[int] = []

    def listener(event: object) -> None:
        if getattr(event, "name", "") == "EMODT" and not seen:
            try:
                s.fd.ioctl(0xC028A4FF, None)
            except OSError as exc:
                seen.append(exc.errno or 0)

    s.machine.trace.subscribe(listener)
    s.fd.ioctl(SGX_IOC_ENCLAVE_MODIFY_TYPES, ModifyTypes(DATA, PAGE, 4))
    assert seen == [errno.EBUSY]


def test_row16_build_ioctls_take_the_busy_bit_too() -> None:
    s = build_small(init=False)
    seen: list[int] = []

    def listener(event: object) -> None:
        if getattr(event, "name", "") == "EADD" and not seen:
            try:
                s.fd.init()
            except OSError as exc:
                seen.append(exc.errno or 0)

    s.machine.trace.subscribe(listener)
    s.fd.add_pages(0xC000, bytes(PAGE), secinfo_flags(RW, PT_REG))
    assert seen == [errno.EBUSY]
    s.fd.init()                      # the bit is released afterwards


# 10, 13 ------------------------------------------------------------------ EENTER
def _with_tcs(image: TcsImage) -> Small:
    s = build_small(init=False)
    s.fd.add_pages(0xC000, image.to_bytes(), secinfo_flags(0, PT_TCS))
    s.fd.init()
    s.machine.mmap(s.a(0xC000), PAGE, RW, MAP_SHARED | MAP_FIXED, s.fd)
    s.machine.mmap(s.a(SSA1), 2 * PAGE, RW, MAP_SHARED | MAP_FIXED, s.fd)
    return s


@pytest.mark.parametrize(("image", "why"), [
    (TcsImage(ossa=SSA1, nssa=2, flags=0x4), "reserved TCS.FLAGS"),
    (TcsImage(ossa=SSA1 + 8, nssa=2), "TCS.OSSA"),
    (TcsImage(ossa=SSA1, nssa=2, ofsbase=0x10), "TCS.OFSBASE"),
    (TcsImage(ossa=SSA1, nssa=2, ogsbase=0x10), "TCS.OGSBASE"),
])
def test_row10_eenter_checks_the_tcs_fields(image: TcsImage, why: str) -> None:
    s = _with_tcs(image)
    run = Run(tcs=s.a(0xC000))
    with pytest.raises(FaultReported) as err, s.machine.vdso.inline(run):
        pass
    assert (run.function, run.exception_vector) == (EENTER, 13)
    assert why in err.value.run.reason


def test_row13_busy_is_checked_after_the_ssa_frame(s: Small, t: EnclaveThread) -> None:
    s.machine.munmap(s.a(SSA1), PAGE)     # frame 0 of the busy TCS is unmapped
    with pytest.raises(PageFault):
        s.machine.cpu.eenter(s.tcs1)       # #PF of the SSA, not #GP of BUSY
    s.machine.mmap(s.a(SSA1), PAGE, RW, MAP_SHARED | MAP_FIXED, s.fd)


# 11, 12, 15 --------------------------------------------------------------- ENCLU order
def test_row11_eaccept_walks_the_target_before_the_secinfo_gp(s: Small,
                                                             t: EnclaveThread) -> None:
    with pytest.raises(FaultReported) as err:
        t.eaccept(secinfo_flags(RW, PT_REG) | 0x10, s.a(DYN))   # REG|MODIFIED: illegal
    assert err.value.run.exception_vector == 13
    assert s.machine.trace.total("leaf", "EAUG") == 1          # the #PF came first


def test_row15_eaccept_on_a_shadow_stack_page_is_pf(s: Small, t: EnclaveThread) -> None:
    slot = s.slot(s.a(DATA))
    s.machine.epc.pt[slot] = PT_SS_FIRST
    with pytest.raises(FaultReported) as err:
        t.eaccept(secinfo_flags(0, PT_REG) | 0x20, s.a(DATA))
    assert err.value.run.exception_vector == 14
    assert err.value.run.exception_error_code == 0x8005


def test_row12_eacceptcopy_walks_destination_before_source(s: Small,
                                                          t: EnclaveThread) -> None:
    # both unmapped: the destination's #PF is the one reported
    with pytest.raises(FaultReported) as err:
        t.eacceptcopy(secinfo_flags(RW, PT_REG), s.a(0xA0000), s.a(0xA1000))
    assert err.value.run.exception_addr == s.a(0xA0000)


def test_row12_emodpe_walks_before_the_secinfo_gp(s: Small, t: EnclaveThread) -> None:
    with pytest.raises(FaultReported) as err:
        t.emodpe(1 << 40, s.a(0xA0000))        # reserved bits and an unmapped target
    assert err.value.run.exception_vector == 14


# 17, 18 ------------------------------------------------------------------ IPIs, vDSO
def test_row17_an_ipi_writes_the_frame_with_exitinfo_not_valid(s: Small,
                                                               t: EnclaveThread) -> None:
    ssa = bytearray(s.machine.epc.writable_page(s.slot(s.a(SSA1))))
    ssa[PAGE - GPRSGX_SIZE + GPR_EXITINFO] = 0xAA
    s.machine.epc.set_page(s.slot(s.a(SSA1)), bytes(ssa))
    s.machine.cpu.ipi(s.fd.secs_paddr)
    assert _exitinfo(s, 0) == 0
    assert t.inside and s.machine.trace.total("aex", "INTR") == 1


def test_row18_inline_entry_does_not_write_run_function() -> None:
    s = build_small()
    run = Run(tcs=s.tcs1, function=0x55)
    with s.machine.vdso.inline(run):
        assert run.function == 0x55
    assert run.function == 4                   # EEXIT


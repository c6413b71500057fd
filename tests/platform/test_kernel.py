"""The Linux driver (platform.md D): mmap/mprotect/munmap rules with max prot, the
fault handler (EAUG on first touch, SIGBUS cases, the race option), and every
error of the EDMM ioctls with `result`/`count` copied back."""

from __future__ import annotations

import errno

import pytest
from platform_support import (
    BASE,
    DATA,
    DYN,
    DYN_X,
    PAGE,
    RW,
    RWX,
    RX,
    SIZE,
    TCS1,
    TEXT,
    UNMAPPED,
    Small,
    build_small,
)

from sgx_emm.platform import (
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    SGX_IOC_ENCLAVE_MODIFY_TYPES,
    SGX_IOC_ENCLAVE_REMOVE_PAGES,
    SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS,
    FaultOutcome,
    FaultReported,
    ModifyTypes,
    RemovePages,
    RestrictPermissions,
    Run,
    SecsImage,
)
from sgx_emm.platform.secinfo import PT_REG, PT_TCS, PT_TRIM, secinfo_flags

FIXED = MAP_SHARED | MAP_FIXED


def errno_of(call: object) -> int:
    with pytest.raises(OSError) as err:
        call()  # type: ignore[operator]
    return err.value.errno or 0


# ---------------------------------------------------------------- ioctl numbers
def test_ioctl_numbers_match_the_uapi_header() -> None:
    assert SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS == 0xC028A405
    assert SGX_IOC_ENCLAVE_MODIFY_TYPES == 0xC028A406
    assert SGX_IOC_ENCLAVE_REMOVE_PAGES == 0xC018A407


def test_unknown_ioctl_is_enotty(s: Small) -> None:
    assert errno_of(lambda: s.fd.ioctl(0xC028A4FF, None)) == errno.ENOTTY


@pytest.mark.parametrize("request_number", ["SGX_IOC_ENCLAVE_INIT", 1.5, None])
def test_ioctl_request_that_is_no_number_is_enotty_and_frees_the_fd(
        s: Small, request_number: object) -> None:
    """A request that is not an int is no SGX ioctl: ENOTTY with the request named, and
    the in-flight bit is cleared (the next ioctl is not EBUSY)."""
    with pytest.raises(OSError) as caught:
        s.fd.ioctl(request_number, None)  # type: ignore[arg-type]
    assert caught.value.errno == errno.ENOTTY
    assert repr(request_number) in str(caught.value)
    assert errno_of(lambda: s.fd.ioctl(0xC028A4FF, None)) == errno.ENOTTY


def test_ioctl_dispatch(s: Small) -> None:
    params = RestrictPermissions(DATA, PAGE, 1)
    assert s.fd.ioctl(SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS, params) == 0
    assert params.count == PAGE


# ---------------------------------------------------------------- mmap / mprotect / munmap
def test_mmap_private_is_einval(s: Small) -> None:
    assert errno_of(lambda: s.machine.mmap(s.a(DYN), PAGE, RW, MAP_PRIVATE | MAP_FIXED,
                                           s.fd)) == errno.EINVAL


def test_mmap_without_shared_is_einval(s: Small) -> None:
    assert errno_of(lambda: s.machine.mmap(s.a(DYN), PAGE, RW, MAP_FIXED, s.fd)) == errno.EINVAL


@pytest.mark.parametrize(("addr", "length", "prot"), [(1, PAGE, 1), (0, 0, 1), (0, PAGE, 8)])
def test_mmap_bad_arguments_are_einval(s: Small, addr: int, length: int, prot: int) -> None:
    assert errno_of(lambda: s.machine.mmap(s.a(DYN) + addr, length, prot, FIXED,
                                           s.fd)) == errno.EINVAL


def test_mmap_outside_elrange_after_einit_is_eacces(s: Small) -> None:
    assert errno_of(lambda: s.machine.mmap(BASE + SIZE, PAGE, RW, FIXED, s.fd)) == errno.EACCES
    assert errno_of(lambda: s.machine.mmap(BASE + SIZE - PAGE, 2 * PAGE, RW, FIXED,
                                           s.fd)) == errno.EACCES


def test_mmap_beyond_max_prot_is_eacces(s: Small) -> None:
    assert errno_of(lambda: s.machine.mmap(s.a(TEXT), PAGE, RWX, FIXED, s.fd)) == errno.EACCES
    assert errno_of(lambda: s.machine.mmap(s.a(DATA), PAGE, RWX, FIXED, s.fd)) == errno.EACCES
    assert s.machine.mmap(s.a(TEXT), PAGE, 0x1, FIXED, s.fd) == s.a(TEXT)   # restricting is fine


def test_mmap_without_records_accepts_rwx(s: Small) -> None:
    assert s.machine.mmap(s.a(UNMAPPED), 4 * PAGE, RWX, FIXED, s.fd) == s.a(UNMAPPED)


def test_mmap_without_fixed_over_used_range_is_eacces(s: Small) -> None:
    assert errno_of(lambda: s.machine.mmap(s.a(DATA), PAGE, RW, MAP_SHARED, s.fd)) == errno.EACCES
    assert s.machine.mmap(s.a(UNMAPPED), PAGE, RW, MAP_SHARED, s.fd) == s.a(UNMAPPED)


def test_mmap_before_einit_may_be_outside_elrange() -> None:
    s = build_small(init=False)
    assert s.machine.mmap(BASE + SIZE, PAGE, RW, FIXED, s.fd) == BASE + SIZE


def test_mprotect_raise_beyond_max_prot_is_eacces_and_changes_nothing(s: Small) -> None:
    assert errno_of(lambda: s.machine.mprotect(s.a(TEXT), PAGE, RWX)) == errno.EACCES
    vma = s.machine.mm.find_vma(s.a(TEXT))
    assert vma is not None and vma.prot == RX
    s.machine.mprotect(s.a(TEXT), PAGE, 0x1)
    assert errno_of(lambda: s.machine.mprotect(s.a(TEXT), PAGE, 0x3)) == errno.EACCES
    s.machine.mprotect(s.a(TEXT), PAGE, RX)     # back up to max prot is allowed


def test_mprotect_unmapped_is_enomem_and_bad_args_einval(s: Small) -> None:
    assert errno_of(lambda: s.machine.mprotect(s.a(UNMAPPED), PAGE, RW)) == errno.ENOMEM
    assert errno_of(lambda: s.machine.mprotect(s.a(DATA) + 1, PAGE, RW)) == errno.EINVAL
    assert errno_of(lambda: s.machine.mprotect(s.a(DATA), PAGE, 9)) == errno.EINVAL


def test_mprotect_splits_vma(s: Small) -> None:
    s.machine.mprotect(s.a(DATA + PAGE), PAGE, 0x1)
    prots = [(v.start - BASE, v.end - BASE, v.prot)
             for v in s.machine.mm.vmas_overlapping(s.a(DATA), s.a(DATA + 4 * PAGE))]
    assert prots == [(DATA, DATA + PAGE, RW), (DATA + PAGE, DATA + 2 * PAGE, 1),
                     (DATA + 2 * PAGE, DATA + 4 * PAGE, RW)]


def test_munmap_then_access_is_not_present(s: Small) -> None:
    s.machine.munmap(s.a(DATA), PAGE)
    with pytest.raises(FaultReported) as err, s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        t.read(s.a(DATA), 1)
    assert err.value.run.exception_error_code == 0x4
    assert errno_of(lambda: s.machine.munmap(s.a(DATA) + 3, PAGE)) == errno.EINVAL


def test_mprotect_none_zaps_and_access_is_reported(s: Small) -> None:
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        t.read(s.a(DATA), 1)
    s.machine.mprotect(s.a(DATA), PAGE, 0)
    assert s.machine.mm.pte(s.a(DATA) >> 12) == 0
    with pytest.raises(FaultReported) as err, s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        t.read(s.a(DATA), 1)
    assert err.value.run.exception_error_code == 0x4


# ---------------------------------------------------------------- fault handler
def test_fault_on_new_page_eaugs_with_max_prot_rwx(s: Small) -> None:
    assert s.machine.kernel.handle_fault(s.a(DYN), 0x6) is FaultOutcome.FIXED
    slot, page_type, max_prot = s.fd.record(s.a(DYN)) or (0, 0, 0)
    assert (page_type, max_prot) == (PT_REG, RWX)
    assert s.machine.mm.pte(s.a(DYN) >> 12) == (slot << 3) | RW
    assert s.epcm(s.a(DYN))["pending"]


def test_sgx_bit_fault_is_never_fixed(s: Small) -> None:
    assert s.machine.kernel.handle_fault(s.a(DATA), 0x8007) is FaultOutcome.REPORT


def test_write_to_read_only_vma_is_reported(s: Small) -> None:
    assert s.machine.kernel.handle_fault(s.a(TEXT), 0x6) is FaultOutcome.REPORT


def test_read_with_p_set_is_reported(s: Small) -> None:
    assert s.machine.kernel.handle_fault(s.a(DATA), 0x5) is FaultOutcome.REPORT


def test_fault_without_vma_is_reported(s: Small) -> None:
    assert s.machine.kernel.handle_fault(s.a(UNMAPPED), 0x4) is FaultOutcome.REPORT


def test_fault_before_einit_is_sigbus() -> None:
    s = build_small(init=False)
    s.machine.mmap(s.a(DYN), PAGE, RW, FIXED, s.fd)
    assert s.machine.kernel.handle_fault(s.a(DYN), 0x4) is FaultOutcome.SIGBUS


def test_fault_without_sgx2_is_sigbus() -> None:
    s = build_small(sgx2=False)
    assert s.machine.kernel.handle_fault(s.a(DYN), 0x4) is FaultOutcome.SIGBUS
    assert s.machine.kernel.handle_fault(s.a(DATA), 0x4) is FaultOutcome.FIXED


def test_fault_with_epc_exhausted_is_sigbus_reported_through_vdso() -> None:
    s = build_small(epc_pages=12)
    while s.machine.epc.alloc() is not None:
        pass
    with pytest.raises(FaultReported) as err, s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        t.write(s.a(DYN), b"x")
    assert (err.value.run.exception_vector, err.value.run.exception_error_code) == (14, 0x6)
    assert s.machine.trace.total("pf", "SIGBUS") == 1


def test_vma_prot_beyond_max_prot_is_sigbus(s: Small) -> None:
    assert s.machine.kernel.handle_fault(s.a(DYN_X), 0x4) is FaultOutcome.FIXED   # RWX VMA
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        assert t.eaccept(0x20B, s.a(DYN_X)) == 0
    assert s.fd.modify_types(ModifyTypes(DYN_X, PAGE, PT_TCS)) == 0   # max prot now RW
    assert s.machine.kernel.handle_fault(s.a(DYN_X), 0x4) is FaultOutcome.SIGBUS


def test_eaug_race_loser_gets_sigbus_only_with_the_option() -> None:
    for option, second in ((False, FaultOutcome.FIXED), (True, FaultOutcome.SIGBUS)):
        s = build_small(eaug_race_sigbus=option)
        assert s.machine.kernel.handle_fault(s.a(DYN), 0x4) is FaultOutcome.FIXED
        assert s.machine.kernel.handle_fault(s.a(DYN), 0x4) is second


# ---------------------------------------------------------------- build ioctls
def test_create_twice_and_bad_secs_are_einval_or_eio() -> None:
    s = build_small(init=False)
    assert errno_of(lambda: s.fd.create(SecsImage(BASE, SIZE))) == errno.EINVAL
    fd = s.machine.open_enclave()
    # the driver checks only that the size is a power of two (ioctl.c
    # sgx_encl_create); every other bad SECS makes ECREATE fault: EIO
    assert errno_of(lambda: fd.create(SecsImage(BASE, 3 * PAGE))) == errno.EINVAL
    assert errno_of(lambda: fd.create(SecsImage(BASE, 0))) == errno.EINVAL
    for bad in (SecsImage(BASE + PAGE, SIZE), SecsImage(BASE, PAGE),
                SecsImage(BASE, SIZE, ssa_frame_size=0), SecsImage(BASE, SIZE, miscselect=2)):
        with pytest.raises(OSError) as err:
            fd.create(bad)
        assert err.value.errno == errno.EIO and "ECREATE: SECS" in err.value.reason  # type: ignore[attr-defined]
    assert not fd.created and fd.secs_slot is None


def test_add_pages_errors() -> None:
    s = build_small(init=False)
    reg = secinfo_flags(RW, PT_REG)
    assert errno_of(lambda: s.fd.add_pages(DATA, bytes(PAGE), reg)) == errno.EBUSY
    assert errno_of(lambda: s.fd.add_pages(DYN + 1, bytes(PAGE), reg)) == errno.EINVAL
    assert errno_of(lambda: s.fd.add_pages(SIZE, bytes(PAGE), reg)) == errno.EINVAL
    assert errno_of(lambda: s.fd.add_pages(DYN, bytes(PAGE), 0x2 | 0x200)) == errno.EINVAL
    assert errno_of(lambda: s.fd.add_pages(DYN, bytes(PAGE), 0x401)) == errno.EINVAL
    assert errno_of(lambda: s.fd.add_pages(DYN, bytes(PAGE), 0x101)) == errno.EINVAL
    assert errno_of(lambda: s.fd.add_pages(DYN, bytes(PAGE),
                                           reg.to_bytes(8, "little") + b"\1" * 56)) == errno.EINVAL
    assert s.fd.add_pages(0xC000, bytes(PAGE), reg) == PAGE
    with pytest.raises(OSError) as err:
        s.fd.add_pages(0xB000, bytes(2 * PAGE), reg)    # the second page exists
    assert err.value.errno == errno.EBUSY and err.value.count == PAGE  # type: ignore[attr-defined]
    s.fd.init()
    assert errno_of(lambda: s.fd.add_pages(DYN, bytes(PAGE), reg)) == errno.EINVAL
    assert errno_of(lambda: s.fd.init()) == errno.EINVAL


def test_add_pages_without_epc_is_enomem() -> None:
    s = build_small(init=False, epc_pages=13)   # the image takes 12 pages
    with pytest.raises(OSError) as err:
        s.fd.add_pages(DYN, bytes(4 * PAGE), secinfo_flags(RW, PT_REG))
    assert err.value.errno == errno.ENOMEM and err.value.count == PAGE  # type: ignore[attr-defined]


# ---------------------------------------------------------------- EDMM ioctls: shared preamble
IOCTLS = {
    "restrict": lambda off, n: RestrictPermissions(off, n, 1),
    "modify": lambda off, n: ModifyTypes(off, n, PT_TRIM),
    "remove": lambda off, n: RemovePages(off, n),
}


def call(s: Small, kind: str, params: object) -> int:
    fn = {"restrict": s.fd.restrict_permissions, "modify": s.fd.modify_types,
          "remove": s.fd.remove_pages}[kind]
    return fn(params)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", list(IOCTLS))
def test_ioctl_without_sgx2_is_enodev(kind: str) -> None:
    s = build_small(sgx2=False)
    assert errno_of(lambda: call(s, kind, IOCTLS[kind](DATA, PAGE))) == errno.ENODEV


@pytest.mark.parametrize("kind", list(IOCTLS))
def test_ioctl_before_einit_is_einval(kind: str) -> None:
    s = build_small(init=False)
    assert errno_of(lambda: call(s, kind, IOCTLS[kind](DATA, PAGE))) == errno.EINVAL


@pytest.mark.parametrize("kind", list(IOCTLS))
@pytest.mark.parametrize(("offset", "length"), [(DATA + 1, PAGE), (DATA, 0), (DATA, PAGE + 1),
                                                (SIZE, PAGE), (SIZE - PAGE, 2 * PAGE),
                                                (2**64 - PAGE, 2 * PAGE)])
def test_ioctl_bad_range_is_einval(s: Small, kind: str, offset: int, length: int) -> None:
    params = IOCTLS[kind](offset, length)
    assert errno_of(lambda: call(s, kind, params)) == errno.EINVAL
    assert params.count == 0


@pytest.mark.parametrize("kind", list(IOCTLS))
def test_ioctl_missing_record_is_efault_with_partial_count(s: Small, kind: str) -> None:
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        assert t.eaccept(0x20B, s.a(DYN)) == 0          # DYN has a record, DYN+PAGE none
        if kind == "remove":
            assert s.fd.modify_types(ModifyTypes(DYN, PAGE, PT_TRIM)) == 0
            assert t.eaccept(0x410, s.a(DYN)) == 0
    params = IOCTLS[kind](DYN, 2 * PAGE)
    assert errno_of(lambda: call(s, kind, params)) == errno.EFAULT
    assert params.count == PAGE


@pytest.mark.parametrize("kind", list(IOCTLS))
def test_ioctl_reclaimed_page_is_eagain_with_partial_count(s: Small, kind: str) -> None:
    s.fd.mark_reclaiming(s.a(DATA + PAGE))
    params = IOCTLS[kind](DATA, 2 * PAGE)
    if kind == "remove":
        assert s.fd.modify_types(ModifyTypes(DATA, PAGE, PT_TRIM)) == 0
        with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
            assert t.eaccept(0x410, s.a(DATA)) == 0
    assert errno_of(lambda: call(s, kind, params)) == errno.EAGAIN
    assert params.count == PAGE


@pytest.mark.parametrize("kind", list(IOCTLS))
def test_ioctl_while_another_in_flight_is_ebusy(s: Small, kind: str) -> None:
    nested: list[int] = []

    def listener(event: object) -> None:
        if getattr(event, "name", "") == "EMODT" and not nested:
            nested.append(errno_of(lambda: call(s, kind, IOCTLS[kind](DATA, PAGE))))

    s.machine.trace.subscribe(listener)
    assert s.fd.modify_types(ModifyTypes(DATA + PAGE, PAGE, PT_TRIM)) == 0
    assert nested == [errno.EBUSY]


# ---------------------------------------------------------------- RESTRICT_PERMISSIONS
@pytest.mark.parametrize("perm", [8, 0x2, -1])
def test_restrict_bad_permissions_is_einval(s: Small, perm: int) -> None:
    assert errno_of(lambda: s.fd.restrict_permissions(
        RestrictPermissions(DATA, PAGE, perm))) == errno.EINVAL


def test_restrict_nonzero_result_or_count_is_einval(s: Small) -> None:
    assert errno_of(lambda: s.fd.restrict_permissions(
        RestrictPermissions(DATA, PAGE, 1, result=1))) == errno.EINVAL
    assert errno_of(lambda: s.fd.restrict_permissions(
        RestrictPermissions(DATA, PAGE, 1, count=PAGE))) == errno.EINVAL


def test_restrict_non_reg_is_einval(s: Small) -> None:
    params = RestrictPermissions(TCS1, PAGE, 1)
    assert errno_of(lambda: s.fd.restrict_permissions(params)) == errno.EINVAL
    assert (params.result, params.count) == (0, 0)


def test_restrict_pending_page_gives_result_20_and_efault(s: Small) -> None:
    s.machine.kernel.handle_fault(s.a(DYN + PAGE), 0x4)      # EAUG, pending
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        assert t.eaccept(0x20B, s.a(DYN)) == 0
    params = RestrictPermissions(DYN, 2 * PAGE, 1)
    assert errno_of(lambda: s.fd.restrict_permissions(params)) == errno.EFAULT
    assert (params.result, params.count) == (20, PAGE)


def test_restrict_conflict_gives_result_7(s: Small) -> None:
    s.machine.cpu.inject_conflict(s.paddr(s.a(DATA)))
    params = RestrictPermissions(DATA, PAGE, 1)
    assert errno_of(lambda: s.fd.restrict_permissions(params)) == errno.EFAULT
    assert (params.result, params.count) == (7, 0)


def test_restrict_changes_no_pte_nor_max_prot(s: Small) -> None:
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        t.write(s.a(DATA), b"x")
    pte = s.machine.mm.pte(s.a(DATA) >> 12)
    assert s.fd.restrict_permissions(RestrictPermissions(DATA, PAGE, 1)) == 0
    assert s.machine.mm.pte(s.a(DATA) >> 12) == pte
    assert s.fd.record(s.a(DATA))[2] == RW  # type: ignore[index]


# ---------------------------------------------------------------- MODIFY_TYPES
@pytest.mark.parametrize("page_type", [PT_REG, 0, 3, 5])
def test_modify_bad_type_is_einval(s: Small, page_type: int) -> None:
    assert errno_of(lambda: s.fd.modify_types(ModifyTypes(DATA, PAGE, page_type))) == errno.EINVAL


def test_modify_nonzero_result_is_einval(s: Small) -> None:
    assert errno_of(lambda: s.fd.modify_types(
        ModifyTypes(DATA, PAGE, PT_TRIM, result=3))) == errno.EINVAL


def test_modify_tcs_to_tcs_and_trim_to_tcs_are_einval(s: Small) -> None:
    assert errno_of(lambda: s.fd.modify_types(ModifyTypes(TCS1, PAGE, PT_TCS))) == errno.EINVAL
    assert s.fd.modify_types(ModifyTypes(DATA, PAGE, PT_TRIM)) == 0
    assert errno_of(lambda: s.fd.modify_types(ModifyTypes(DATA, PAGE, PT_TCS))) == errno.EINVAL


def test_modify_reg_to_tcs_needs_rw_max_prot(s: Small) -> None:
    params = ModifyTypes(TEXT, PAGE, PT_TCS)
    assert errno_of(lambda: s.fd.modify_types(params)) == errno.EPERM
    assert params.count == 0


def test_modify_reg_to_tcs_zaps_ptes_and_sets_max_prot(s: Small) -> None:
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        assert t.eaccept(0x20B, s.a(DYN_X)) == 0
    assert s.machine.mm.pte(s.a(DYN_X) >> 12)
    assert s.fd.modify_types(ModifyTypes(DYN_X, PAGE, PT_TCS)) == 0
    assert s.machine.mm.pte(s.a(DYN_X) >> 12) == 0
    assert s.fd.record(s.a(DYN_X))[1:] == (PT_TCS, RW)  # type: ignore[index]


def test_modify_code_restores_max_prot(s: Small) -> None:
    s.machine.kernel.handle_fault(s.a(DYN), 0x4)       # pending page, max prot RWX
    params = ModifyTypes(DYN, PAGE, PT_TCS)
    assert errno_of(lambda: s.fd.modify_types(params)) == errno.EFAULT
    assert (params.result, params.count) == (20, 0)
    assert s.fd.record(s.a(DYN))[1:] == (PT_REG, RWX)  # type: ignore[index]


def test_modify_then_eaccept_never_sees_not_tracked(s: Small) -> None:
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        assert s.fd.modify_types(ModifyTypes(DATA, PAGE, PT_TRIM)) == 0   # thread inside
        assert t.eaccept(0x410, s.a(DATA)) == 0


# ---------------------------------------------------------------- REMOVE_PAGES
def test_remove_non_trim_is_eperm(s: Small) -> None:
    params = RemovePages(DATA, PAGE)
    assert errno_of(lambda: s.fd.remove_pages(params)) == errno.EPERM
    assert params.count == 0


def test_remove_nonzero_count_is_einval(s: Small) -> None:
    assert errno_of(lambda: s.fd.remove_pages(RemovePages(DATA, PAGE, count=1))) == errno.EINVAL


def test_remove_then_access_gets_fresh_eaug_page(s: Small) -> None:
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        t.write(s.a(DATA), b"old")
        assert s.fd.modify_types(ModifyTypes(DATA, PAGE, PT_TRIM)) == 0
        assert t.eaccept(0x410, s.a(DATA)) == 0
    assert s.fd.remove_pages(RemovePages(DATA, PAGE)) == 0
    assert s.fd.record(s.a(DATA)) is None
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        assert t.eaccept(0x20B, s.a(DATA)) == 0
        assert t.read(s.a(DATA), 3) == b"\0\0\0"


# ---------------------------------------------------------------- EPC reclaim (EWB / ELDU)
def test_reclaim_keeps_contents_across_eviction_and_reload() -> None:
    s = build_small(epc_pages=16)
    s.machine.kernel.reclaim = True
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        for i in range(40):                      # far more pages than the EPC holds
            assert t.eaccept(0x20B, s.a(DYN + i * PAGE)) == 0
            t.write(s.a(DYN + i * PAGE), i.to_bytes(4, "little") * 4)
        for i in range(40):
            assert t.read(s.a(DYN + i * PAGE), 16) == i.to_bytes(4, "little") * 4
    trace = s.machine.trace
    assert trace.total("leaf", "EWB") > 0 and trace.total("leaf", "ELDU") > 0
    assert any(s.fd.record(s.a(DYN + i * PAGE))[0] < 0  # type: ignore[index]
               for i in range(40))


def test_reclaim_never_evicts_tcs_secs_or_entered_ssa() -> None:
    s = build_small(epc_pages=16)
    s.machine.kernel.reclaim = True
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        for i in range(40):
            assert t.eaccept(0x20B, s.a(DYN + i * PAGE)) == 0
    for addr in (s.tcs1, s.tcs2, s.a(0x1000), s.a(0x2000)):
        assert s.fd.record(addr)[0] >= 0  # type: ignore[index]
    assert s.machine.cpu.epcm_entry(s.fd.secs_paddr)["valid"]


def test_ioctl_on_swapped_page_loads_it_back() -> None:
    s = build_small(epc_pages=16)
    s.machine.kernel.reclaim = True
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        for i in range(30):
            assert t.eaccept(0x20B, s.a(DYN + i * PAGE)) == 0
    swapped = next(i for i in range(30) if s.fd.record(s.a(DYN + i * PAGE))[0] < 0)  # type: ignore[index]
    params = RestrictPermissions(DYN + swapped * PAGE, PAGE, 1)
    assert s.fd.restrict_permissions(params) == 0
    assert s.fd.record(s.a(DYN + swapped * PAGE))[0] >= 0  # type: ignore[index]
    assert s.epcm(s.a(DYN + swapped * PAGE))["pr"]


def test_add_pages_with_reclaim_evicts_instead_of_enomem() -> None:
    s = build_small(init=False, epc_pages=13)
    s.machine.kernel.reclaim = True
    assert s.fd.add_pages(DYN, bytes(4 * PAGE), secinfo_flags(RW, PT_REG)) == 4 * PAGE

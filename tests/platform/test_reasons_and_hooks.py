"""Why things happen, and how a hostile OS switches misbehaviours on.

Every fault the CPU raises names the SDM check with its values (`reason`), the
kernel says why it did not fix a #PF (`os_reason`), both reach the user through
`Run` and `FaultReported`, and driver errors carry `.reason`. The kernel's hook
points (`KernelHooks`) change one behaviour each, without touching privates."""

from __future__ import annotations

import errno

import pytest
from platform_support import ACCEPT_AUG, BASE, DATA, DYN, PAGE, RW, SIZE, SSA1, TCS1, Small

from sgx_emm.platform import (
    MAP_FIXED,
    MAP_SHARED,
    PROT_READ,
    EnclaveFd,
    EnclaveThread,
    FaultOutcome,
    FaultReported,
    FaultResult,
    KernelHooks,
    Machine,
    ModifyTypes,
    RemovePages,
    RestrictPermissions,
    Run,
    SecsImage,
    TcsImage,
    secinfo_flags,
)
from sgx_emm.platform.hooks import Encl
from sgx_emm.platform.secinfo import PT_REG, PT_TCS, PT_TRIM, SGX_NOT_TRACKED
from sgx_emm.platform.state import EvictedPage


def _reported(s: Small, body: object) -> FaultReported:
    run = Run(tcs=s.tcs1)
    with pytest.raises(FaultReported) as err, s.machine.vdso.inline(run) as t:
        body(t)  # type: ignore[operator]
    assert run.exception_reason == err.value.run.reason
    assert run.exception_os_reason == err.value.run.os_reason
    return err.value


# ---------------------------------------------------------------- reasons
def test_eenter_names_nssa_and_cssa() -> None:
    m = Machine(64)
    fd = m.open_enclave()
    fd.create(SecsImage(BASE, SIZE))
    fd.add_pages(TCS1, TcsImage(ossa=SSA1, nssa=0).to_bytes(), secinfo_flags(0, PT_TCS))
    fd.add_pages(SSA1, bytes(PAGE), secinfo_flags(RW, PT_REG))
    fd.init()
    m.mmap(BASE, 2 * PAGE, RW, MAP_SHARED | MAP_FIXED, fd)
    with pytest.raises(FaultReported) as err, m.vdso.inline(Run(tcs=BASE)):
        pass
    assert err.value.run.reason == "EENTER: TCS.NSSA (0) <= TCS.CSSA (0)"
    assert "TCS.NSSA (0) <= TCS.CSSA (0)" in str(err.value)


def test_a_write_to_a_read_only_page_names_the_epcm_permissions(s: Small) -> None:
    s.fd.restrict_permissions(RestrictPermissions(DATA, PAGE, PROT_READ))

    def body(t: EnclaveThread) -> None:
        assert t.eaccept(secinfo_flags(PROT_READ, PT_REG) | 0x20, s.a(DATA)) == 0
        t.write(s.a(DATA), b"x")

    err = _reported(s, body)
    assert err.run.reason == f"write at {s.a(DATA):#x}: EPCM permissions R do not allow W"
    assert err.run.os_reason == "an EPCM fault (the SGX bit is set): the kernel never fixes it"


def test_a_read_of_a_pending_page_says_pending(s: Small) -> None:
    s.machine.host_read(s.a(DYN), 1)           # the kernel EAUGs it; nobody accepts it
    err = _reported(s, lambda t: t.read(s.a(DYN), 1))
    assert err.run.reason == f"read at {s.a(DYN):#x}: the EPCM entry is PENDING"


def test_a_fault_without_a_vma_says_so(s: Small) -> None:
    err = _reported(s, lambda t: t.read(s.a(0xA0000), 1))
    assert err.run.reason == f"read at {s.a(0xA0000):#x}: no page-table entry"
    assert err.run.os_reason == f"no VMA maps {s.a(0xA0000):#x}"
    assert err.run.why.startswith("read at") and "no VMA" in err.run.why


def test_eaccept_of_a_non_pending_page_is_a_code_not_a_fault(s: Small) -> None:
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        assert t.eaccept(ACCEPT_AUG, s.a(DATA)) == 19


def test_ioctl_errors_carry_their_reason(s: Small) -> None:
    with pytest.raises(OSError) as err:
        s.fd.modify_types(ModifyTypes(DATA + 1, PAGE, PT_TRIM))
    assert err.value.reason == f"offset {DATA + 1:#x} is not page aligned"  # type: ignore[attr-defined]
    assert "MODIFY_TYPES" in str(err.value)
    with pytest.raises(OSError) as err:
        s.fd.remove_pages(RemovePages(DATA, PAGE))
    assert err.value.errno == errno.EPERM
    assert err.value.reason == f"page {s.a(DATA):#x} is REG, not TRIM"  # type: ignore[attr-defined]


def test_an_sgx_code_in_result_is_named(s: Small) -> None:
    s.machine.host_read(s.a(DYN), 1)           # EAUGed, PENDING: EMODPR says 20
    params = RestrictPermissions(DYN, PAGE, PROT_READ)
    with pytest.raises(OSError) as err:
        s.fd.restrict_permissions(params)
    assert params.result == 20
    assert err.value.reason.startswith("SGX_PAGE_NOT_MODIFIABLE (20) from EMODPR")  # type: ignore[attr-defined]


def test_host_access_without_a_mapping_says_why(s: Small) -> None:
    with pytest.raises(OSError) as err:
        s.machine.host_read(s.a(0xA0000), 1)
    assert err.value.errno == errno.EFAULT
    assert err.value.reason == f"no VMA maps {s.a(0xA0000):#x}"  # type: ignore[attr-defined]


# ---------------------------------------------------------------- hooks
class RefuseEaug(KernelHooks):
    def eaug(self, encl: Encl, addr: int) -> str | None:
        return f"no EAUG at {addr:#x}"


def test_the_eaug_hook_refuses_on_the_commit_path(s: Small) -> None:
    s.machine.kernel.hooks = RefuseEaug()
    assert not s.machine.kernel.commit_fast_path
    err = _reported(s, lambda t: t.eaccept(ACCEPT_AUG, s.a(DYN)))
    assert err.run.os_reason == f"EAUG refused: no EAUG at {s.a(DYN):#x}"
    assert s.fd.record(s.a(DYN)) is None
    s.machine.kernel.hooks = None               # Linux again
    assert s.machine.kernel.commit_fast_path
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        assert t.eaccept(ACCEPT_AUG, s.a(DYN)) == 0


class LyingIoctls(KernelHooks):
    def ioctl(self, encl: Encl, name: str, params: object) -> bool:
        return name != "RESTRICT_PERMISSIONS"


def test_the_ioctl_hook_skips_the_work_and_reports_success(s: Small) -> None:
    s.machine.kernel.hooks = LyingIoctls()
    params = RestrictPermissions(DATA, 2 * PAGE, PROT_READ)
    assert s.fd.restrict_permissions(params) == 0
    assert params.count == 2 * PAGE
    assert s.epcm(s.a(DATA))["w"] and not s.epcm(s.a(DATA))["pr"]


class NoTracking(KernelHooks):
    def etrack(self, encl: Encl) -> bool:
        return False


def test_the_etrack_hook_leaves_the_change_untracked(s: Small) -> None:
    with s.machine.vdso.inline(Run(tcs=s.tcs2)):
        s.machine.kernel.hooks = NoTracking()   # a thread inside, never interrupted
        s.fd.restrict_permissions(RestrictPermissions(DATA, PAGE, PROT_READ))
        s.machine.cpu.etrack(s.fd.secs_paddr)   # a cycle the thread inside holds up
        with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
            assert t.eaccept(secinfo_flags(PROT_READ, PT_REG) | 0x20,
                             s.a(DATA)) == SGX_NOT_TRACKED


class SkipLeaves(KernelHooks):
    def page_leaf(self, encl: Encl, leaf: str, addr: int) -> bool:
        return leaf != "EMODT"


def test_the_page_leaf_hook_skips_one_leaf(s: Small) -> None:
    s.machine.kernel.hooks = SkipLeaves()
    assert s.fd.modify_types(ModifyTypes(DATA, PAGE, PT_TRIM)) == 0
    assert s.epcm(s.a(DATA))["pt"] == PT_REG          # the EPCM never changed
    assert s.fd.record(s.a(DATA))[1] == PT_TRIM       # type: ignore[index]


class WriteableAlways(KernelHooks):
    def map_prot(self, syscall: str, addr: int, length: int, prot: int) -> int:
        return prot | 0x2 if prot else prot


def test_the_map_prot_hook_changes_what_mprotect_applies(s: Small) -> None:
    s.machine.kernel.hooks = WriteableAlways()
    s.machine.mprotect(s.a(DATA), PAGE, PROT_READ)
    assert s.machine.mm.find_vma(s.a(DATA)).prot == RW   # type: ignore[union-attr]


class SpuriousFaults(KernelHooks):
    def __init__(self) -> None:
        self.seen = 0

    def page_fault(self, addr: int, errcd: int) -> FaultResult | None:
        self.seen += 1
        return FaultResult(FaultOutcome.REPORT, "the OS withholds this fix")


def test_the_page_fault_hook_withholds_a_fix(s: Small) -> None:
    hooks = SpuriousFaults()
    s.machine.kernel.hooks = hooks
    err = _reported(s, lambda t: t.eaccept(ACCEPT_AUG, s.a(DYN)))
    assert err.run.os_reason == "the OS withholds this fix" and hooks.seen == 1


class SeesEldu(KernelHooks):
    def __init__(self) -> None:
        self.seen: list[tuple[int, EvictedPage]] = []

    def eldu(self, encl: Encl, addr: int, page: EvictedPage) -> EvictedPage:
        self.seen.append((addr, page))
        return page


def test_evict_load_and_the_eldu_hook(s: Small) -> None:
    fd: EnclaveFd = s.fd
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        t.write(s.a(DATA), b"old")
    assert fd.evict(s.a(DATA)) and fd.record(s.a(DATA))[0] == -1   # type: ignore[index]
    sealed = fd.evicted(s.a(DATA))
    assert sealed is not None and fd.evicted_pages() == [sealed]
    assert fd.load(s.a(DATA)) and fd.record(s.a(DATA))[0] >= 0     # type: ignore[index]
    assert fd.evicted_pages() == []
    assert fd.evict(s.a(DATA))
    hooks = SeesEldu()
    s.machine.kernel.hooks = hooks
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        assert t.read(s.a(DATA), 3) == b"old"         # the fault loads it back
    assert [addr for addr, _ in hooks.seen] == [s.a(DATA)]
    assert not fd.evict(s.a(SSA1))             # an entered TCS's SSA frame is pinned
    assert not fd.evict(s.a(0xA0000))          # no record: nothing to evict

"""The OS: system calls on enclave mappings and the #PF handler (Linux v6.0+).

`Kernel` owns `mmap`, `mprotect` and `munmap` on enclave fds, the user #PF
handler (`fault`: do_user_addr_fault's access_error, then the enclave's
`vma_fault`, encl.py) and hands out `EnclaveFd`s (ioctl.py). EPC pages come from
the `Reclaimer` (reclaim.py). Hostile behaviour is switched on through `hooks`
(hooks.py), never by patching this module.

The driver's pieces live by concern, as in Linux's arch/x86/kernel/cpu/sgx/:
uapi.py (the ABI), ioctl.py (the ioctls), edmm.py (their EDMM page loops), encl.py
(records, faults, EAUG, ELDU), reclaim.py (EPC allocation and EWB). This module
re-exports their public names.

Model choices: mmap without MAP_FIXED over a used range gives EACCES (Linux would
place it elsewhere, outside ELRANGE, with that result); an EPC allocation that
finds no free page (and may not reclaim) fails: SIGBUS on a fault, ENOMEM on
add_pages.
"""

from __future__ import annotations

import errno
import threading

from sgx_emm.flags import PAGE_SHIFT, PAGE_SIZE
from sgx_emm.platform.cpu import Cpu
from sgx_emm.platform.edmm import driver_error
from sgx_emm.platform.encl import Encl
from sgx_emm.platform.epcm import Epc
from sgx_emm.platform.exceptions import CpuFault
from sgx_emm.platform.hooks import KernelHooks
from sgx_emm.platform.ioctl import EnclaveFd
from sgx_emm.platform.mmu import AddressSpace, Vma, covers
from sgx_emm.platform.reclaim import Reclaimer
from sgx_emm.platform.secinfo import PF_P, PF_SGX, PF_U, PF_W, VECTOR_PF
from sgx_emm.platform.uapi import (
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_EXEC,
    PROT_MASK,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    SGX_IOC_ENCLAVE_ADD_PAGES,
    SGX_IOC_ENCLAVE_CREATE,
    SGX_IOC_ENCLAVE_INIT,
    SGX_IOC_ENCLAVE_MODIFY_TYPES,
    SGX_IOC_ENCLAVE_REMOVE_PAGES,
    SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS,
    SGX_PAGE_MEASURE,
    AddPages,
    FaultOutcome,
    FaultResult,
    ModifyTypes,
    RemovePages,
    RestrictPermissions,
)
from sgx_emm.trace import PAGE_FAULT, SYSCALL, Trace

__all__ = [
    "MAP_FIXED", "MAP_PRIVATE", "MAP_SHARED", "PROT_EXEC", "PROT_NONE", "PROT_READ",
    "PROT_WRITE", "SGX_IOC_ENCLAVE_ADD_PAGES", "SGX_IOC_ENCLAVE_CREATE",
    "SGX_IOC_ENCLAVE_INIT", "SGX_IOC_ENCLAVE_MODIFY_TYPES", "SGX_IOC_ENCLAVE_REMOVE_PAGES",
    "SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS", "SGX_PAGE_MEASURE", "AddPages", "EnclaveFd",
    "FaultOutcome", "FaultResult", "Kernel", "ModifyTypes", "RemovePages",
    "RestrictPermissions",
]

_PF_NAMES = {code: f"{code:#x}" for code in (
    0x4, 0x5, 0x6, 0x7, 0x14, 0x15, 0x8005, 0x8007, 0x8015)}


def _report(reason: str) -> FaultResult:
    return FaultResult(FaultOutcome.REPORT, reason)


class Kernel:
    """The OS: syscalls on enclave mappings and the #PF handler."""

    def __init__(self, cpu: Cpu, epc: Epc, mm: AddressSpace, trace: Trace,
                 lock: threading.RLock, *, sgx2: bool = True,
                 eaug_race_sigbus: bool = False, reclaim: bool = False) -> None:
        self.cpu = cpu
        self.epc = epc
        self.mm = mm
        self.trace = trace
        self.lock = lock
        self.sgx2 = sgx2
        #: model the pre-2024 race: the loser of two faults on one new page gets SIGBUS
        self.eaug_race_sigbus = eaug_race_sigbus
        self.reclaimer = Reclaimer(epc, reclaim=reclaim)
        self._hooks: KernelHooks | None = None
        self._capable = False
        #: whether enclave threads may take the commit fast path now (thread.py):
        #: `fast_path_capable` and no hooks installed; kept as a plain attribute
        #: because every EACCEPT reads it
        self.commit_fast_path = False

    # ------------------------------------------------------------ configuration
    @property
    def hooks(self) -> KernelHooks | None:
        """The installed hostile-OS hooks (hooks.py), None for Linux's behaviour."""
        return self._hooks

    @hooks.setter
    def hooks(self, hooks: KernelHooks | None) -> None:
        self._hooks = hooks
        self.commit_fast_path = self._capable and hooks is None

    @property
    def fast_path_capable(self) -> bool:
        """The capability the commit fast path needs, which `Machine` sets when it
        wired a stock CPU and kernel on one lock (the fast path composes their
        steps); a machine assembled otherwise leaves it off."""
        return self._capable

    @fast_path_capable.setter
    def fast_path_capable(self, on: bool) -> None:
        self._capable = on
        self.commit_fast_path = on and self._hooks is None

    @property
    def reclaim(self) -> bool:
        """Evict enclave pages (EWB) when the EPC is full, load them back on use."""
        return self.reclaimer.enabled

    @reclaim.setter
    def reclaim(self, on: bool) -> None:
        self.reclaimer.enabled = on
        if on:   # EWB needs a Version Array slot: give initialized enclaves a VA page
            self.reclaimer.prepare_enclaves()

    # ------------------------------------------------------------ EPC, enclaves
    def alloc_epc(self, *, reclaim: bool = True) -> int | None:
        """sgx_alloc_epc_page (reclaim.py). Returns: a free EPC slot, or None."""
        return self.reclaimer.alloc(reclaim=reclaim)

    def register(self, encl: Encl) -> None:
        """An enclave was created: its pages become reclaimable."""
        self.reclaimer.register(encl)

    def open_enclave(self) -> EnclaveFd:
        """open("/dev/sgx_enclave"). Returns: a new enclave fd."""
        return EnclaveFd(self)

    # ------------------------------------------------------------ syscalls
    def mmap(self, addr: int, length: int, prot: int, flags: int, fd: EnclaveFd,
             offset: int = 0) -> int:
        """mmap(2) of an enclave fd (MAP_SHARED only; sgx_mmap checks).

        Returns: addr. Raises: OSError EINVAL (bad address, length, prot, flags,
        MAP_PRIVATE), EBADF (not an enclave fd), ENOMEM (wraps past 2^64), EACCES
        (a used range without MAP_FIXED; outside ELRANGE after EINIT; prot above a
        page's max prot)."""
        self.trace.emit(SYSCALL, "mmap", addr=addr, length=length, prot=prot, flags=flags)
        if (not isinstance(addr, int) or not isinstance(length, int) or length <= 0
                or addr < 0 or addr % PAGE_SIZE or not isinstance(offset, int)
                or offset % PAGE_SIZE or not isinstance(prot, int) or prot & ~PROT_MASK
                or prot < 0):
            raise driver_error(errno.EINVAL, "mmap", "bad address, length, offset or prot")
        if not isinstance(fd, EnclaveFd):
            raise driver_error(errno.EBADF, "mmap", "not an enclave fd")
        length = (length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        end = addr + length
        if end > 1 << 64:
            raise driver_error(errno.ENOMEM, "mmap", "the range wraps past 2^64")
        if flags & MAP_PRIVATE or not flags & MAP_SHARED:
            raise driver_error(errno.EINVAL, "mmap", "an enclave can only be MAP_SHARED")
        with self.lock:
            if not flags & MAP_FIXED and self.mm.vmas_overlapping(addr, end):
                raise driver_error(errno.EACCES, "mmap",
                                   f"{addr:#x} is in use and MAP_FIXED was not given")
            if self._hooks is not None:
                prot = self._hooks.map_prot("mmap", addr, length, prot)
            self._may_map(fd, addr, end, prot, "mmap")
            self.mm.carve(addr, end)
            self.mm.zap(addr, end)
            self.mm.insert(Vma(addr, end, prot, fd))
        return addr

    @staticmethod
    def _may_map(fd: Encl, start: int, end: int, prot: int, what: str) -> None:
        """sgx_encl_may_map: inside ELRANGE after EINIT; prot within every record's
        max prot."""
        if fd.initialized and (start < fd.base or end > fd.base + fd.size):
            raise driver_error(errno.EACCES, what,
                               f"[{start:#x}, {end:#x}) is outside ELRANGE "
                               f"[{fd.base:#x}, {fd.base + fd.size:#x})")
        page = fd.max_prot_violation(start, end, prot)
        if page is not None:
            raise driver_error(errno.EACCES, what,
                               f"prot {prot:#x} exceeds the max prot of the page at {page:#x}")

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        """mprotect(2) over enclave VMAs, applied VMA by VMA in address order: a VMA
        sgx_encl_may_map refuses stops the walk, and the VMAs before it stay changed.

        Returns: None. Raises: OSError EINVAL (bad address, length, prot), ENOMEM
        (a hole in the range), EACCES (sgx_encl_may_map refuses)."""
        self.trace.emit(SYSCALL, "mprotect", addr=addr, length=length, prot=prot)
        if (not isinstance(addr, int) or not isinstance(length, int) or addr < 0
                or addr % PAGE_SIZE or length < 0 or not isinstance(prot, int)
                or prot & ~PROT_MASK or prot < 0):
            raise driver_error(errno.EINVAL, "mprotect", "bad address, length or prot")
        length = (length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        end = addr + length
        if not length:
            return
        mm = self.mm
        with self.lock:
            vmas = mm.vmas_overlapping(addr, end)     # one lookup for the check and the walk
            if not covers(vmas, addr, end):
                raise driver_error(errno.ENOMEM, "mprotect",
                                   f"[{addr:#x}, {end:#x}) is not fully mapped")
            if self._hooks is not None:
                prot = self._hooks.map_prot("mprotect", addr, length, prot)
                vmas = mm.vmas_overlapping(addr, end)     # whatever the hook did to them
            # mprotect_fixup, VMA by VMA: the first refusal stops the walk, and the
            # VMAs before it keep their new protection, as in Linux
            for vma in vmas:
                start, stop = max(addr, vma.start), min(end, vma.end)
                self._may_map(vma.owner, start, stop, prot, "mprotect")
                mm.protect(vma, start, stop, prot)
                if prot:
                    mm.reprotect(start, stop, prot)
                else:
                    mm.zap(start, stop)

    def munmap(self, addr: int, length: int) -> None:
        """munmap(2). Returns: None. Raises: OSError EINVAL (bad address or length)."""
        self.trace.emit(SYSCALL, "munmap", addr=addr, length=length)
        if (not isinstance(addr, int) or not isinstance(length, int) or addr < 0
                or addr % PAGE_SIZE or length <= 0):
            raise driver_error(errno.EINVAL, "munmap", "bad address or length")
        end = addr + ((length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1))
        with self.lock:
            self.mm.carve(addr, end)
            self.mm.zap(addr, end)

    # ------------------------------------------------------------ faults
    def fix(self, fault: CpuFault) -> bool:
        """After an AEX (or a fault of EENTER/ERESUME or a host access): let the #PF
        handler try. Returns: True if it fixed the fault (ERESUME and retry);
        otherwise False, with the kernel's reason in `fault.os_reason`."""
        if fault.vector != VECTOR_PF:
            return False
        result = self.fault(fault.addr, fault.errcd)
        if result.outcome is FaultOutcome.FIXED:
            return True
        fault.os_reason = result.reason
        return False

    fix_enclave_fault = fix
    fix_outside_fault = fix

    def handle_fault(self, addr: int, errcd: int) -> FaultOutcome:
        """do_user_addr_fault + sgx_vma_fault for a user-mode #PF at addr.
        Returns: what the handler did (`fault` also says why)."""
        return self.fault(addr, errcd).outcome

    def fault(self, addr: int, errcd: int) -> FaultResult:
        """The user #PF handler, as Linux's reads: the `page_fault` hook, then
        access_error against the VMA, then the enclave's sgx_vma_fault.

        Returns: FIXED, or REPORT / SIGBUS with the reason the kernel gives up."""
        name = _PF_NAMES.get(errcd)
        page_addr = addr & ~(PAGE_SIZE - 1)
        self.trace.emit(PAGE_FAULT, name if name is not None else f"{errcd:#x}",
                        addr=page_addr)
        if self._hooks is not None:
            forced = self._hooks.page_fault(addr, errcd)
            if forced is not None:
                return forced
        if errcd & PF_SGX:
            return _report("an EPCM fault (the SGX bit is set): the kernel never fixes it")
        with self.lock:
            vma = self.mm.find_vma(addr)
            if vma is None:
                return _report(f"no VMA maps {page_addr:#x}")
            bad = _access_error(vma, errcd)
            if bad:
                return _report(bad)
            fd: Encl = vma.owner
            result = fd.vma_fault(vma.prot, addr, errcd)
        if result.outcome is FaultOutcome.SIGBUS:
            self.trace.emit(PAGE_FAULT, "SIGBUS", addr=page_addr)
        return result

    def eaug_first_touch(self, addr: int) -> int:
        """The commit fast path's kernel half: if `fault(addr, U)` (a not-present
        read) would EAUG a free EPC page without evicting, do exactly that through
        the one EAUG path, without events (the caller counts them), and return the
        EPC slot. Otherwise change nothing and return -1. The caller holds the lock."""
        vma = self.first_touch_vma(addr)
        return -1 if vma is None else self.eaug_in(vma, addr)

    def first_touch_vma(self, addr: int) -> Vma | None:
        """`eaug_first_touch`, first part: the VMA whose enclave's fault handler
        `fault(addr, U)` reaches (a VMA maps `addr` and access_error allows the read;
        SGX2 is there to EAUG), or None. The answer is the same for every address
        of that VMA as long as the caller holds the lock (VMAs change only under
        it), so a page loop asks once per VMA."""
        vma = self.mm.find_vma(addr)
        if vma is None or _access_error(vma, PF_U) or not self.sgx2:
            return None
        return vma

    def eaug_in(self, vma: Vma, addr: int) -> int:
        """`eaug_first_touch`, second part, for `addr` in `vma` (a `first_touch_vma`
        answer under this hold of the lock): the enclave's quiet EAUG. Returns: the
        EPC slot, or -1 with nothing changed."""
        fd: Encl = vma.owner
        slot = fd.eaug_page(addr >> PAGE_SHIFT, vma.prot, True)   # quiet
        return slot if isinstance(slot, int) else -1


def _access_error(vma: Vma, errcd: int) -> str:
    """access_error: why the VMA does not allow the access, or "" if it does."""
    if errcd & PF_W:
        if not vma.prot & PROT_WRITE:
            return f"write to a VMA without PROT_WRITE (prot {vma.prot:#x})"
        return ""
    if errcd & PF_P:
        return "a protection fault on a present page (the PTE already allows what the VMA does)"
    if not vma.prot:
        return "the VMA is PROT_NONE"
    return ""

"""The Linux SGX driver (v6.0+) and the bits of the mm it relies on (platform.md D).

`Kernel` owns the syscalls (`mmap`, `mprotect`, `munmap` on enclave fds), the #PF
handler (`handle_fault`: access_error, then `sgx_vma_fault` with EAUG on the first
touch of a page that has no record, SIGBUS cases) and hands out `EnclaveFd`s,
whose methods are the enclave ioctls: create / add pages / init and the three
EDMM ioctls. Errors raise `OSError(errno, ...)`; an EDMM ioctl fills the caller's
mutable parameter struct (`result`, `count`) before raising, as the C driver
copies the struct back on every path.

Per-page records (the driver's `sgx_encl_page`) are chunked like page tables:
`{page >> 9: (array('l') of EPC slots, bytearray of info bytes)}` where an info
byte packs EXISTS | AUGMENTED | type << 3 | max prot. The kernel does not track
EPCM permissions, PENDING or PR, exactly like the driver.

Model choices: no EPC reclaim (an EPC allocation that finds no free page fails:
SIGBUS on a fault, ENOMEM on add_pages); `mark_reclaiming` stands for a page the
reclaimer holds (EAGAIN in the ioctls); mmap without MAP_FIXED over a used range
gives EACCES (Linux would place it elsewhere, outside ELRANGE, with that result).
"""

from __future__ import annotations

import enum
import errno
import os
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sgx_emm.flags import PAGE_SHIFT, PAGE_SIZE
from sgx_emm.platform.epcm import EPC_BASE, F_VALID, Epc
from sgx_emm.platform.exceptions import CpuFault, PageFault
from sgx_emm.platform.mmu import CHUNK_MASK, CHUNK_PAGES, CHUNK_SHIFT, AddressSpace, Vma
from sgx_emm.platform.secinfo import (
    PF_P,
    PF_SGX,
    PF_W,
    PT_REG,
    PT_TCS,
    PT_TRIM,
    SI_R,
    SI_RWX,
    SI_W,
    VECTOR_PF,
    SecsImage,
    parse_secinfo,
    secinfo_flags,
    secinfo_pt,
    secinfo_reserved_ok,
)
from sgx_emm.trace import IOCTL, PAGE_FAULT, SYSCALL

if TYPE_CHECKING:
    import threading

    from sgx_emm.platform.cpu import Cpu, EvictedPage
    from sgx_emm.trace import Trace

PROT_NONE = 0
PROT_READ = 0x1
PROT_WRITE = 0x2
PROT_EXEC = 0x4
MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_FIXED = 0x10

SGX_PAGE_MEASURE = 0x01
SGX_MAGIC = 0xA4


def _iowr(nr: int, size: int, write: bool = True) -> int:
    direction = 3 if write else 1   # _IOWR / _IOW
    return (direction << 30) | (size << 16) | (SGX_MAGIC << 8) | nr


SGX_IOC_ENCLAVE_CREATE = _iowr(0x00, 8, write=False)
SGX_IOC_ENCLAVE_ADD_PAGES = _iowr(0x01, 48)
SGX_IOC_ENCLAVE_INIT = _iowr(0x02, 8, write=False)
SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS = _iowr(0x05, 40)
SGX_IOC_ENCLAVE_MODIFY_TYPES = _iowr(0x06, 40)
SGX_IOC_ENCLAVE_REMOVE_PAGES = _iowr(0x07, 24)

# info byte of a page record
_EXISTS = 0x80
_AUGMENTED = 0x40
_TYPE_SHIFT = 3
_TYPE_MASK = 0x38
_PROT_MASK = 0x7
#: the info byte of a page the fault handler EAUGed (type REG, max prot RWX)
_EAUG_INFO = _EXISTS | _AUGMENTED | (PT_REG << _TYPE_SHIFT) | SI_RWX


_EVICTABLE = frozenset((PT_REG, PT_TRIM, 5, 6))
_PF_NAMES = {code: f"{code:#x}" for code in (
    0x4, 0x5, 0x6, 0x7, 0x14, 0x15, 0x8005, 0x8007, 0x8015)}


class FaultOutcome(enum.Enum):
    """What the kernel's #PF handler did."""

    FIXED = "fixed"        # retry the access (PTE mapped, page EAUGed, ...)
    REPORT = "report"      # SIGSEGV class: reported through the vDSO
    SIGBUS = "sigbus"      # VM_FAULT_SIGBUS: also reported through the vDSO


def _oserror(err: int, what: str) -> OSError:
    return OSError(err, f"{what}: {os.strerror(err)}")


@dataclass(slots=True)
class RestrictPermissions:
    """struct sgx_enclave_restrict_permissions."""

    offset: int
    length: int
    permissions: int
    result: int = 0
    count: int = 0


@dataclass(slots=True)
class ModifyTypes:
    """struct sgx_enclave_modify_types (`page_type` is the bare PT value: 1 or 4)."""

    offset: int
    length: int
    page_type: int
    result: int = 0
    count: int = 0


@dataclass(slots=True)
class RemovePages:
    """struct sgx_enclave_remove_pages."""

    offset: int
    length: int
    count: int = 0


@dataclass(slots=True)
class AddPages:
    """struct sgx_enclave_add_pages, with the source bytes instead of a pointer."""

    offset: int
    data: bytes
    secinfo: int | bytes
    flags: int = SGX_PAGE_MEASURE
    count: int = 0


class EnclaveFd:
    """An open /dev/sgx_enclave: the driver's `struct sgx_encl`."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel
        self._cpu = kernel.cpu
        self._epc = kernel.epc
        self._lock = kernel.lock
        self.secs_slot: int | None = None
        self.base = 0
        self.size = 0
        self.created = False
        self.initialized = False
        self._records: dict[int, tuple[array[int], bytearray]] = {}
        self._ioctl_busy = False
        self._reclaiming: set[int] = set()
        self._swapped: dict[int, EvictedPage] = {}   # page -> what EWB wrote out

    # ------------------------------------------------------------ records
    def record(self, addr: int) -> tuple[int, int, int] | None:
        """(EPC slot, page type, max prot) of the page at addr, or None."""
        page = addr >> PAGE_SHIFT
        entry = self._records.get(page >> CHUNK_SHIFT)
        if entry is None:
            return None
        info = entry[1][page & CHUNK_MASK]
        if not info:
            return None
        return entry[0][page & CHUNK_MASK], (info & _TYPE_MASK) >> _TYPE_SHIFT, info & _PROT_MASK

    def _info(self, page: int) -> int:
        entry = self._records.get(page >> CHUNK_SHIFT)
        return entry[1][page & CHUNK_MASK] if entry is not None else 0

    def _set_record(self, page: int, slot: int, page_type: int, max_prot: int,
                    augmented: bool = False) -> None:
        key = page >> CHUNK_SHIFT
        entry = self._records.get(key)
        if entry is None:
            entry = self._records[key] = (array("l", bytes(8 * CHUNK_PAGES)),
                                          bytearray(CHUNK_PAGES))
        entry[0][page & CHUNK_MASK] = slot
        entry[1][page & CHUNK_MASK] = (_EXISTS | (_AUGMENTED if augmented else 0)
                                       | (page_type << _TYPE_SHIFT) | max_prot)

    def _update_record(self, page: int, *, page_type: int | None = None,
                       max_prot: int | None = None) -> None:
        entry = self._records[page >> CHUNK_SHIFT]
        info = entry[1][page & CHUNK_MASK]
        if page_type is not None:
            info = (info & ~_TYPE_MASK) | (page_type << _TYPE_SHIFT)
        if max_prot is not None:
            info = (info & ~_PROT_MASK) | max_prot
        entry[1][page & CHUNK_MASK] = info

    def _drop_record(self, page: int) -> None:
        entry = self._records.get(page >> CHUNK_SHIFT)
        if entry is not None:
            entry[1][page & CHUNK_MASK] = 0

    def records_in(self, start: int, end: int) -> list[tuple[int, int, int]]:
        """(page address, type, max prot) of every record in [start, end); walks only
        the allocated record chunks."""
        out: list[tuple[int, int, int]] = []
        first, last = start >> PAGE_SHIFT, (end + PAGE_SIZE - 1) >> PAGE_SHIFT
        for key in sorted(self._records):
            lo = max(first, key << CHUNK_SHIFT)
            hi = min(last, (key + 1) << CHUNK_SHIFT)
            if lo >= hi:
                continue
            infos = self._records[key][1]
            for page in range(lo, hi):
                info = infos[page & CHUNK_MASK]
                if info:
                    out.append((page << PAGE_SHIFT, (info & _TYPE_MASK) >> _TYPE_SHIFT,
                                info & _PROT_MASK))
        return out

    def _max_prot_violation(self, start: int, end: int, prot: int) -> bool:
        first, last = start >> PAGE_SHIFT, (end + PAGE_SIZE - 1) >> PAGE_SHIFT
        for key in list(self._records):
            lo = max(first, key << CHUNK_SHIFT)
            hi = min(last, (key + 1) << CHUNK_SHIFT)
            if lo >= hi:
                continue
            infos = self._records[key][1]
            for i in range(lo & CHUNK_MASK, ((hi - 1) & CHUNK_MASK) + 1):
                info = infos[i]
                if info and prot & ~info & _PROT_MASK:
                    return True
        return False

    def mark_reclaiming(self, addr: int, on: bool = True) -> None:
        """Pretend the reclaimer holds this page (ioctls then fail with EAGAIN)."""
        with self._lock:
            if on:
                self._reclaiming.add(addr >> PAGE_SHIFT)
            else:
                self._reclaiming.discard(addr >> PAGE_SHIFT)

    @property
    def secs_paddr(self) -> int:
        if self.secs_slot is None:
            raise _oserror(errno.EINVAL, "enclave not created")
        return Epc.paddr(self.secs_slot)

    # ------------------------------------------------------------ build ioctls
    def create(self, secs: SecsImage) -> None:
        """SGX_IOC_ENCLAVE_CREATE."""
        k = self._kernel
        k.trace.emit(IOCTL, "ENCLAVE_CREATE", base=secs.base, size=secs.size)
        with self._lock:
            if self.created:
                raise _oserror(errno.EINVAL, "ENCLAVE_CREATE")
            size, base = secs.size, secs.base
            if (size < 2 * PAGE_SIZE or size & (size - 1) or base % size
                    or secs.ssa_frame_size < 1 or secs.miscselect & ~0x1):
                raise _oserror(errno.EINVAL, "ENCLAVE_CREATE")
            slot = k.alloc_epc()
            if slot is None:
                raise _oserror(errno.ENOMEM, "ENCLAVE_CREATE")
            try:
                self._cpu.ecreate(secs, Epc.paddr(slot))
            except CpuFault:
                self._epc.free(slot)
                raise _oserror(errno.EIO, "ENCLAVE_CREATE") from None
            self.secs_slot = slot
            self.base, self.size = base, size
            self.created = True
            k._fds_by_secs[slot] = self

    def add_pages(self, offset: int, data: bytes, secinfo: int | bytes,
                  flags: int = SGX_PAGE_MEASURE) -> int:
        """SGX_IOC_ENCLAVE_ADD_PAGES; returns `count` (bytes added). On an error after
        some pages, the OSError carries `.count` too. `secinfo` is SECINFO.FLAGS or
        the 64-byte SECINFO."""
        args = AddPages(offset, data, secinfo, flags)
        self.ioctl_add_pages(args)
        return args.count

    def ioctl_add_pages(self, args: AddPages) -> None:
        k = self._kernel
        k.trace.emit(IOCTL, "ENCLAVE_ADD_PAGES", offset=args.offset, length=len(args.data))
        if not self.created or self.initialized:
            raise _oserror(errno.EINVAL, "ENCLAVE_ADD_PAGES")
        length = len(args.data)
        if self._bad_range(args.offset, length):
            raise _oserror(errno.EINVAL, "ENCLAVE_ADD_PAGES")
        if isinstance(args.secinfo, bytes | bytearray):
            if len(args.secinfo) != 64:
                raise _oserror(errno.EFAULT, "ENCLAVE_ADD_PAGES")
            si, reserved_clear = parse_secinfo(bytes(args.secinfo))
        else:
            si, reserved_clear = args.secinfo, True
        perm, pt = si & SI_RWX, secinfo_pt(si)
        if (pt not in (PT_REG, PT_TCS) or (perm & SI_W and not perm & SI_R)
                or (pt == PT_TCS and perm) or not secinfo_reserved_ok(si)
                or not reserved_clear):
            raise _oserror(errno.EINVAL, "ENCLAVE_ADD_PAGES")
        max_prot = (PROT_READ | PROT_WRITE) if pt == PT_TCS else perm
        for c in range(0, length, PAGE_SIZE):
            addr = self.base + args.offset + c
            page = addr >> PAGE_SHIFT
            with self._lock:
                if self._info(page):
                    raise self._partial(errno.EBUSY, "ENCLAVE_ADD_PAGES", args, c)
                slot = k.alloc_epc()
                if slot is None:
                    raise self._partial(errno.ENOMEM, "ENCLAVE_ADD_PAGES", args, c)
                try:
                    self._cpu.eadd(addr, si, bytes(args.data[c:c + PAGE_SIZE]),
                                   self.secs_paddr, Epc.paddr(slot))
                except CpuFault:
                    self._epc.free(slot)
                    raise self._partial(errno.EIO, "ENCLAVE_ADD_PAGES", args, c) from None
                self._set_record(page, slot, pt, max_prot)
            args.count = c + PAGE_SIZE

    def init(self, sigstruct: bytes | None = None) -> None:
        """SGX_IOC_ENCLAVE_INIT (no signature checks in the model)."""
        self._kernel.trace.emit(IOCTL, "ENCLAVE_INIT")
        with self._lock:
            if not self.created or self.initialized:
                raise _oserror(errno.EINVAL, "ENCLAVE_INIT")
            try:
                self._cpu.einit(self.secs_paddr)
            except CpuFault:
                raise _oserror(errno.EIO, "ENCLAVE_INIT") from None
            self.initialized = True

    # ------------------------------------------------------------ EDMM ioctls
    def ioctl(self, request: int, arg: object) -> int:
        """The ioctl(2) entry point: dispatch on the request number."""
        handlers: dict[int, Callable[[object], None]] = {
            SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS: self._dispatch_restrict,
            SGX_IOC_ENCLAVE_MODIFY_TYPES: self._dispatch_modify,
            SGX_IOC_ENCLAVE_REMOVE_PAGES: self._dispatch_remove,
            SGX_IOC_ENCLAVE_ADD_PAGES: self._dispatch_add,
        }
        handler = handlers.get(request)
        if handler is None:
            raise _oserror(errno.ENOTTY, f"ioctl {request:#x}")
        handler(arg)
        return 0

    def _dispatch_restrict(self, arg: object) -> None:
        if not isinstance(arg, RestrictPermissions):
            raise _oserror(errno.EFAULT, "RESTRICT_PERMISSIONS")
        self.restrict_permissions(arg)

    def _dispatch_modify(self, arg: object) -> None:
        if not isinstance(arg, ModifyTypes):
            raise _oserror(errno.EFAULT, "MODIFY_TYPES")
        self.modify_types(arg)

    def _dispatch_remove(self, arg: object) -> None:
        if not isinstance(arg, RemovePages):
            raise _oserror(errno.EFAULT, "REMOVE_PAGES")
        self.remove_pages(arg)

    def _dispatch_add(self, arg: object) -> None:
        if not isinstance(arg, AddPages):
            raise _oserror(errno.EFAULT, "ADD_PAGES")
        self.ioctl_add_pages(arg)

    def _bad_range(self, offset: int, length: int) -> bool:
        """sgx_validate_offset_length."""
        return bool(not isinstance(offset, int) or not isinstance(length, int) or offset < 0
                    or offset % PAGE_SIZE or length <= 0 or length % PAGE_SIZE
                    or offset + length >= 1 << 64
                    or offset + length - PAGE_SIZE >= self.size)

    def _preamble(self, name: str, offset: int, length: int) -> None:
        if not self._kernel.sgx2:
            raise _oserror(errno.ENODEV, name)
        if not self.initialized:
            raise _oserror(errno.EINVAL, name)
        if self._bad_range(offset, length):
            raise _oserror(errno.EINVAL, name)

    def _begin(self, name: str) -> None:
        with self._lock:
            if self._ioctl_busy:
                raise _oserror(errno.EBUSY, name)
            self._ioctl_busy = True

    def _end(self) -> None:
        with self._lock:
            self._ioctl_busy = False

    @staticmethod
    def _partial(err: int, name: str, params: object, count: int) -> OSError:
        params.count = count  # type: ignore[attr-defined]
        exc = _oserror(err, name)
        exc.count = count  # type: ignore[attr-defined]
        return exc

    def _load_page(self, addr: int, name: str, params: object, c: int) -> tuple[int, int, int]:
        """sgx_encl_load_page: no record -> EFAULT; held by the reclaimer -> EAGAIN;
        swapped out -> ELDU (failure -> EFAULT)."""
        rec = self.record(addr)
        if rec is None:
            raise self._partial(errno.EFAULT, name, params, c)
        if addr >> PAGE_SHIFT in self._reclaiming:
            raise self._partial(errno.EAGAIN, name, params, c)
        if rec[0] < 0:
            slot = self._kernel.eldu(self, addr >> PAGE_SHIFT)
            if slot is None:
                raise self._partial(errno.EFAULT, name, params, c)
            rec = (slot, rec[1], rec[2])
        return rec

    def _set_slot(self, page: int, slot: int) -> None:
        self._records[page >> CHUNK_SHIFT][0][page & CHUNK_MASK] = slot

    def _etrack(self) -> bool:
        """sgx_enclave_etrack: ETRACK, on failure IPIs and one retry; then IPIs."""
        secs = self.secs_paddr
        if self._cpu.etrack(secs):
            self._cpu.ipi(secs)
            if self._cpu.etrack(secs):
                return False
        self._cpu.ipi(secs)
        return True

    def restrict_permissions(self, p: RestrictPermissions) -> int:
        """SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS: EMODPR + ETRACK per page. No PTE or
        max-prot change (user space calls mprotect itself)."""
        name = "RESTRICT_PERMISSIONS"
        self._kernel.trace.emit(IOCTL, name, offset=p.offset, length=p.length,
                                permissions=p.permissions)
        self._begin(name)
        try:
            self._preamble(name, p.offset, p.length)
            if (not isinstance(p.permissions, int) or p.permissions & ~SI_RWX
                    or p.permissions < 0
                    or (p.permissions & SI_W and not p.permissions & SI_R)):
                raise _oserror(errno.EINVAL, name)
            if p.result or p.count:
                raise _oserror(errno.EINVAL, name)
            secinfo = secinfo_flags(p.permissions, PT_REG)
            for c in range(0, p.length, PAGE_SIZE):
                addr = self.base + p.offset + c
                with self._lock:
                    slot, page_type, _ = self._load_page(addr, name, p, c)
                    if page_type != PT_REG:
                        raise self._partial(errno.EINVAL, name, p, c)
                    try:
                        ret = self._cpu.emodpr(secinfo, Epc.paddr(slot))
                    except CpuFault:
                        raise self._partial(errno.EFAULT, name, p, c) from None
                    if ret:
                        p.result = ret
                        raise self._partial(errno.EFAULT, name, p, c)
                    if not self._etrack():
                        raise self._partial(errno.EFAULT, name, p, c)
                p.count = c + PAGE_SIZE
            return 0
        finally:
            self._end()

    def modify_types(self, p: ModifyTypes) -> int:
        """SGX_IOC_ENCLAVE_MODIFY_TYPES: EMODT + ETRACK per page; REG -> TCS also fixes
        max prot at R|W and zaps the PTEs."""
        name = "MODIFY_TYPES"
        self._kernel.trace.emit(IOCTL, name, offset=p.offset, length=p.length,
                                page_type=p.page_type)
        self._begin(name)
        try:
            self._preamble(name, p.offset, p.length)
            if p.result or p.count:
                raise _oserror(errno.EINVAL, name)
            new_type = p.page_type & 0xFF if isinstance(p.page_type, int) else -1
            if new_type not in (PT_TCS, PT_TRIM):
                raise _oserror(errno.EINVAL, name)
            secinfo = secinfo_flags(0, new_type)
            for c in range(0, p.length, PAGE_SIZE):
                addr = self.base + p.offset + c
                page = addr >> PAGE_SHIFT
                with self._lock:
                    slot, page_type, max_prot = self._load_page(addr, name, p, c)
                    if not (page_type == PT_REG
                            or (page_type == PT_TCS and new_type == PT_TRIM)):
                        raise self._partial(errno.EINVAL, name, p, c)
                    if page_type == PT_REG and new_type == PT_TCS:
                        if ~max_prot & (PROT_READ | PROT_WRITE):
                            raise self._partial(errno.EPERM, name, p, c)
                        self._update_record(page, max_prot=PROT_READ | PROT_WRITE)
                        self._kernel.mm.zap(addr, addr + PAGE_SIZE)
                    try:
                        ret = self._cpu.emodt(secinfo, Epc.paddr(slot))
                    except CpuFault:
                        self._update_record(page, max_prot=max_prot)
                        raise self._partial(errno.EFAULT, name, p, c) from None
                    if ret:
                        self._update_record(page, max_prot=max_prot)
                        p.result = ret
                        raise self._partial(errno.EFAULT, name, p, c)
                    if not self._etrack():
                        raise self._partial(errno.EFAULT, name, p, c)
                    self._update_record(page, page_type=new_type)
                p.count = c + PAGE_SIZE
            return 0
        finally:
            self._end()

    def remove_pages(self, p: RemovePages) -> int:
        """SGX_IOC_ENCLAVE_REMOVE_PAGES: only TRIM pages the enclave accepted (probed
        with EMODPR(RWX), which #PFs on them); zap PTEs, EREMOVE, drop the record."""
        name = "REMOVE_PAGES"
        self._kernel.trace.emit(IOCTL, name, offset=p.offset, length=p.length)
        self._begin(name)
        try:
            self._preamble(name, p.offset, p.length)
            if p.count:
                raise _oserror(errno.EINVAL, name)
            probe = secinfo_flags(SI_RWX, PT_REG)
            for c in range(0, p.length, PAGE_SIZE):
                addr = self.base + p.offset + c
                with self._lock:
                    slot, page_type, _ = self._load_page(addr, name, p, c)
                    if page_type != PT_TRIM:
                        raise self._partial(errno.EPERM, name, p, c)
                    try:
                        self._cpu.emodpr(probe, Epc.paddr(slot))
                    except PageFault:
                        pass
                    except CpuFault:
                        raise self._partial(errno.EPERM, name, p, c) from None
                    else:
                        raise self._partial(errno.EPERM, name, p, c)
                    self._kernel.mm.zap(addr, addr + PAGE_SIZE)
                    self._cpu.eremove(Epc.paddr(slot))
                    self._drop_record(addr >> PAGE_SHIFT)
                p.count = c + PAGE_SIZE
            return 0
        finally:
            self._end()


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
        #: evict enclave pages (EWB) when the EPC is full, load them back (ELDU) on use
        self.reclaim = reclaim
        self._fds_by_secs: dict[int, EnclaveFd] = {}
        self._hand = 0

    # ------------------------------------------------------------ EPC management
    def alloc_epc(self) -> int | None:
        """sgx_alloc_epc_page: a free slot, evicting one page first if the EPC is full
        and reclaim is on (the model runs ksgxd's work synchronously)."""
        slot = self.epc.alloc()
        if slot is None and self.reclaim and self._reclaim_one():
            slot = self.epc.alloc()
        return slot

    def _reclaim_one(self) -> bool:
        """Evict one REG/TRIM/SS page, scanning the EPC like a clock hand. Never SECS, TCS,
        or the SSA frames of a TCS that has been entered (their slots are cached by
        entered threads, as the hardware pins them)."""
        epc, cpu = self.epc, self.cpu
        n = epc.npages
        for _ in range(n):
            slot = self._hand
            self._hand = (slot + 1) % n
            if not epc.flags[slot] & F_VALID or epc.pt[slot] not in _EVICTABLE:
                continue
            fd = self._fds_by_secs.get(epc.owner[slot])
            if fd is None:
                continue
            addr = epc.linaddr[slot]
            if any(t.secs_slot == fd.secs_slot
                   and t.ssa_base <= addr < t.ssa_base + t.nssa * t.frame_bytes
                   for t in cpu.tcs.values()):
                continue
            page = addr >> PAGE_SHIFT
            if page in fd._reclaiming:
                continue
            blob = cpu.ewb(EPC_BASE + (slot << PAGE_SHIFT))
            self.mm.zap(addr, addr + PAGE_SIZE)
            fd._set_slot(page, -1)
            fd._swapped[page] = blob
            return True
        return False

    def eldu(self, fd: EnclaveFd, page: int) -> int | None:
        """Bring a swapped-out page back (sgx_encl_eldu); None if no EPC page."""
        blob = fd._swapped.get(page)
        if blob is None or fd.secs_slot is None:
            return None
        slot = self.alloc_epc()
        if slot is None:
            return None
        try:
            self.cpu.eldu(blob, EPC_BASE + (fd.secs_slot << PAGE_SHIFT),
                          EPC_BASE + (slot << PAGE_SHIFT))
        except CpuFault:
            self.epc.free(slot)
            return None
        del fd._swapped[page]
        fd._set_slot(page, slot)
        return slot

    def open_enclave(self) -> EnclaveFd:
        """open("/dev/sgx_enclave")."""
        return EnclaveFd(self)

    # ------------------------------------------------------------ syscalls
    def mmap(self, addr: int, length: int, prot: int, flags: int, fd: EnclaveFd,
             offset: int = 0) -> int:
        self.trace.emit(SYSCALL, "mmap", addr=addr, length=length, prot=prot, flags=flags)
        if (not isinstance(addr, int) or not isinstance(length, int) or length <= 0
                or addr < 0 or addr % PAGE_SIZE or offset % PAGE_SIZE
                or not isinstance(prot, int) or prot & ~0x7 or prot < 0):
            raise _oserror(errno.EINVAL, "mmap")
        if not isinstance(fd, EnclaveFd):
            raise _oserror(errno.EBADF, "mmap")
        length = (length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        end = addr + length
        if end > 1 << 64:
            raise _oserror(errno.ENOMEM, "mmap")
        if flags & MAP_PRIVATE or not flags & MAP_SHARED:
            raise _oserror(errno.EINVAL, "mmap")
        with self.lock:
            if not flags & MAP_FIXED and self.mm.vmas_overlapping(addr, end):
                raise _oserror(errno.EACCES, "mmap")
            self._may_map(fd, addr, end, prot, "mmap")
            self.mm.carve(addr, end)
            self.mm.zap(addr, end)
            self.mm.insert(Vma(addr, end, prot, fd))
        return addr

    def _may_map(self, fd: EnclaveFd, start: int, end: int, prot: int, what: str) -> None:
        """sgx_encl_may_map: inside ELRANGE after EINIT; prot within every record's
        max prot."""
        if fd.initialized and (start < fd.base or end > fd.base + fd.size):
            raise _oserror(errno.EACCES, what)
        if fd._max_prot_violation(start, end, prot):
            raise _oserror(errno.EACCES, what)

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        self.trace.emit(SYSCALL, "mprotect", addr=addr, length=length, prot=prot)
        if (not isinstance(addr, int) or not isinstance(length, int) or addr < 0
                or addr % PAGE_SIZE or length < 0 or not isinstance(prot, int)
                or prot & ~0x7 or prot < 0):
            raise _oserror(errno.EINVAL, "mprotect")
        length = (length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        end = addr + length
        if not length:
            return
        with self.lock:
            if not self.mm.is_covered(addr, end):
                raise _oserror(errno.ENOMEM, "mprotect")
            pieces = self.mm.vmas_overlapping(addr, end)
            for vma in pieces:
                self._may_map(vma.owner, max(addr, vma.start), min(end, vma.end), prot,
                              "mprotect")
            for piece in self.mm.carve(addr, end):
                self.mm.insert(Vma(piece.start, piece.end, prot, piece.owner))
            if prot:
                self.mm.reprotect(addr, end, prot)
            else:
                self.mm.zap(addr, end)

    def munmap(self, addr: int, length: int) -> None:
        self.trace.emit(SYSCALL, "munmap", addr=addr, length=length)
        if (not isinstance(addr, int) or not isinstance(length, int) or addr < 0
                or addr % PAGE_SIZE or length <= 0):
            raise _oserror(errno.EINVAL, "munmap")
        end = addr + ((length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1))
        with self.lock:
            self.mm.carve(addr, end)
            self.mm.zap(addr, end)

    # ------------------------------------------------------------ faults
    def fix_enclave_fault(self, fault: CpuFault) -> bool:
        """After an AEX: True if the kernel fixed the fault (ERESUME and retry)."""
        if fault.vector != VECTOR_PF:
            return False
        return self.handle_fault(fault.addr, fault.errcd) is FaultOutcome.FIXED

    def fix_outside_fault(self, fault: CpuFault) -> bool:
        """A fault of EENTER/ERESUME or a host access (no AEX)."""
        return self.fix_enclave_fault(fault)

    def handle_fault(self, addr: int, errcd: int) -> FaultOutcome:
        """do_user_addr_fault + sgx_vma_fault for a user-mode #PF at addr."""
        name = _PF_NAMES.get(errcd)
        self.trace.emit(PAGE_FAULT, name if name is not None else f"{errcd:#x}",
                        addr=addr & ~(PAGE_SIZE - 1))
        if errcd & PF_SGX:
            return FaultOutcome.REPORT
        with self.lock:
            vma = self.mm.find_vma(addr)
            if vma is None:
                return FaultOutcome.REPORT
            if errcd & PF_W:
                if not vma.prot & PROT_WRITE:
                    return FaultOutcome.REPORT
            elif errcd & PF_P or not vma.prot:
                return FaultOutcome.REPORT
            outcome = self._sgx_vma_fault(vma, addr, errcd)
        if outcome is FaultOutcome.SIGBUS:
            self.trace.emit(PAGE_FAULT, "SIGBUS", addr=addr & ~(PAGE_SIZE - 1))
        return outcome

    def _sgx_vma_fault(self, vma: Vma, addr: int, errcd: int) -> FaultOutcome:
        fd: EnclaveFd = vma.owner
        page = addr >> PAGE_SHIFT
        entry = fd._records.get(page >> CHUNK_SHIFT)
        info = entry[1][page & CHUNK_MASK] if entry is not None else 0
        if not info:
            if not self.sgx2:
                return FaultOutcome.SIGBUS
            return self._eaug_page(fd, vma, page)
        assert entry is not None
        if (self.eaug_race_sigbus and info & _AUGMENTED and not errcd & PF_P
                and self.mm.pte(page)):
            return FaultOutcome.SIGBUS
        if vma.prot & ~info & _PROT_MASK:
            return FaultOutcome.SIGBUS
        slot = entry[0][page & CHUNK_MASK]
        if slot < 0:
            loaded = self.eldu(fd, page)
            if loaded is None:
                return FaultOutcome.SIGBUS
            slot = loaded
        self.mm.set_pte(page, slot, vma.prot)
        return FaultOutcome.FIXED

    # ------------------------------------------------------------ the commit fast path
    def eaug_first_touch(self, addr: int) -> int:
        """The plain first touch, straight-line: if `handle_fault(addr, 0x4)` (a
        not-present read) would EAUG a free EPC page, add its record and map it
        (FIXED, no eviction, nothing else), do exactly that, without the events
        (the caller counts them), and return the EPC slot. Otherwise change nothing
        and return -1. The caller holds the lock (thread.py's commit path)."""
        vma = self.mm.find_vma(addr)
        if vma is None or not vma.prot or not self.sgx2:
            return -1
        fd: EnclaveFd = vma.owner
        page = addr >> PAGE_SHIFT
        entry = fd._records.get(page >> CHUNK_SHIFT)
        if entry is not None and entry[1][page & CHUNK_MASK]:
            return -1
        secs = fd.secs_slot
        if not fd.initialized or secs is None:
            return -1
        epc = self.epc
        slot = epc.alloc()
        if slot is None:
            return -1
        if not self.cpu.eaug_slot(page << PAGE_SHIFT, secs, slot):
            epc.unalloc(slot)
            return -1
        if entry is None:
            fd._set_record(page, slot, PT_REG, SI_RWX, augmented=True)
        else:
            entry[0][page & CHUNK_MASK] = slot
            entry[1][page & CHUNK_MASK] = _EAUG_INFO
        self.mm.set_pte(page, slot, vma.prot)
        return slot

    def _eaug_page(self, fd: EnclaveFd, vma: Vma, page: int) -> FaultOutcome:
        """sgx_encl_eaug_page: record with max prot RWX, EPC page, EAUG, map."""
        secs = fd.secs_slot
        if not fd.initialized or secs is None:
            return FaultOutcome.SIGBUS
        slot = self.alloc_epc()
        if slot is None:
            return FaultOutcome.SIGBUS
        try:
            self.cpu.eaug(page << PAGE_SHIFT, EPC_BASE + (secs << PAGE_SHIFT),
                          EPC_BASE + (slot << PAGE_SHIFT))
        except CpuFault:
            self.epc.free(slot)
            return FaultOutcome.SIGBUS
        fd._set_record(page, slot, PT_REG, SI_RWX, augmented=True)
        self.mm.set_pte(page, slot, vma.prot)
        return FaultOutcome.FIXED

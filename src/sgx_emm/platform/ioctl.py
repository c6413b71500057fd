"""The driver's user ABI: the enclave ioctls (Linux ioctl.c).

`EnclaveFd` is an open /dev/sgx_enclave. Every ioctl enters through `ioctl()`, as
Linux's `sgx_ioctl` does: the in-flight bit first (EBUSY while another ioctl on the
same enclave runs, before the request number is even looked at), then the request
number (ENOTTY), then the argument's type (EFAULT: the model's stand-in for a bad
user pointer). Each handler validates all of its parameters before anything
changes (EINVAL, ENODEV, ...), then hands them to a worker documented as taking
checked parameters; the worker (the EDMM ones are in edmm.py) walks the pages and,
like Linux, stops at the first page it cannot process, reporting the bytes done in
`count`.

Errors raise `OSError(errno, "NAME: reason")` with `.reason` (the check that
failed, with its values) and, for ioctls that stop part way, `.count`. An EDMM
ioctl also fills the caller's parameter struct (`result`, `count`) before raising,
as the C driver copies the struct back on every path.

Model choices: no signature checks at INIT; `mark_reclaiming` (encl.py) stands
for a page the reclaimer holds (EAGAIN).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from sgx_emm.flags import PAGE_SHIFT, PAGE_SIZE
from sgx_emm.platform.edmm import EdmmWorkers, driver_error
from sgx_emm.platform.encl import DriverHost
from sgx_emm.platform.epcm import Epc
from sgx_emm.platform.exceptions import CpuFault
from sgx_emm.platform.secinfo import (
    PT_REG,
    PT_TCS,
    PT_TRIM,
    SI_R,
    SI_RWX,
    SI_W,
    SecsImage,
    parse_secinfo,
    secinfo_flags,
    secinfo_pt,
)
from sgx_emm.platform.uapi import (
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
    ModifyTypes,
    RemovePages,
    RestrictPermissions,
)
from sgx_emm.trace import IOCTL

#: SECINFO.FLAGS bits ADD_PAGES refuses: everything but RWX and the page type
#: (so PENDING, MODIFIED and PR too)
_ADD_RESERVED = ~(SI_RWX | 0xFF00) & ((1 << 64) - 1)


class _Sigstruct:
    """ENCLAVE_INIT's argument (the model checks no signature)."""

    def __init__(self, data: bytes | None) -> None:
        self.data = data


class EnclaveFd(EdmmWorkers):
    """An open /dev/sgx_enclave: the driver's `struct sgx_encl` and its ioctls."""

    def __init__(self, host: DriverHost) -> None:
        super().__init__(host)
        self._ioctl_busy = False
        #: request number -> (argument type, handler)
        self._requests: dict[int, tuple[type, Callable[[Any], None]]] = {
            SGX_IOC_ENCLAVE_CREATE: (SecsImage, self._ioc_create),
            SGX_IOC_ENCLAVE_ADD_PAGES: (AddPages, self._ioc_add_pages),
            SGX_IOC_ENCLAVE_INIT: (_Sigstruct, self._ioc_init),
            SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS: (RestrictPermissions, self._ioc_restrict),
            SGX_IOC_ENCLAVE_MODIFY_TYPES: (ModifyTypes, self._ioc_modify_types),
            SGX_IOC_ENCLAVE_REMOVE_PAGES: (RemovePages, self._ioc_remove_pages),
        }

    # ------------------------------------------------------------ entry point
    def ioctl(self, request: int, arg: object) -> int:
        """ioctl(2) on the enclave fd.

        Returns: 0. Raises: OSError EBUSY (another ioctl of this enclave in
        flight), ENOTTY (unknown request), EFAULT (argument of the wrong type),
        and whatever the request's handler raises."""
        self._enter_flight(request)
        try:
            entry = self._requests.get(request) if isinstance(request, int) else None
            if entry is None:
                raise driver_error(errno.ENOTTY, f"ioctl {request!r}",
                                   "not an SGX enclave ioctl")
            kind, handler = entry
            if not isinstance(arg, kind):
                raise driver_error(errno.EFAULT, f"ioctl {request:#x}",
                                   f"argument is a {type(arg).__name__}, not a {kind.__name__}")
            handler(arg)
        finally:
            with self._lock:
                self._ioctl_busy = False
        return 0

    def _enter_flight(self, request: object) -> None:
        """test_and_set_bit(SGX_ENCL_IOCTL): one ioctl per enclave at a time; `ioctl`
        clears the bit when it returns (a try/finally there: a generator-based
        context manager costs more than a small ioctl's work). Raises: EBUSY."""
        with self._lock:
            if self._ioctl_busy:
                name = f"ioctl {request:#x}" if isinstance(request, int) else f"ioctl {request!r}"
                raise driver_error(errno.EBUSY, name,
                                   "another ioctl on this enclave is in flight")
            self._ioctl_busy = True

    def _trace(self, name: str, **details: object) -> None:
        self._host.trace.emit(IOCTL, name, **details)

    def _lies(self, name: str, params: object, length: int) -> bool:
        """The `ioctl` hook: True if a hostile OS skips the work (count = length)."""
        hooks = self._host.hooks
        if hooks is None or hooks.ioctl(self, name, params):
            return False
        if hasattr(params, "count"):
            params.count = length
        return True

    # ------------------------------------------------------------ public calls
    def create(self, secs: SecsImage) -> None:
        """SGX_IOC_ENCLAVE_CREATE: ECREATE a SECS for `secs`.

        Returns: None. Raises: OSError EBUSY, EINVAL (already created; SECS.SIZE
        not a power of two), ENOMEM (no EPC page), EIO (ECREATE faulted: a
        misaligned base, a one-page size, SSA frame size 0, MISCSELECT bits the
        CPU does not support, ...)."""
        self.ioctl(SGX_IOC_ENCLAVE_CREATE, secs)

    def add_pages(self, offset: int, data: bytes, secinfo: int | bytes,
                  flags: int = SGX_PAGE_MEASURE) -> int:
        """SGX_IOC_ENCLAVE_ADD_PAGES; `secinfo` is SECINFO.FLAGS or the 64-byte
        SECINFO.

        Returns: `count` (bytes added). Raises: OSError (see `ioctl_add_pages`);
        after some pages the OSError carries `.count` too."""
        args = AddPages(offset, data, secinfo, flags)
        self.ioctl(SGX_IOC_ENCLAVE_ADD_PAGES, args)
        return args.count

    def ioctl_add_pages(self, args: AddPages) -> None:
        """SGX_IOC_ENCLAVE_ADD_PAGES with its struct.

        Returns: None (`args.count` bytes added). Raises: OSError EBUSY (in
        flight; a page already added), EINVAL (not created or already
        initialized, bad range or SECINFO), EFAULT (SECINFO not 64 bytes), ENOMEM
        (no EPC page), EIO (EADD faulted)."""
        self.ioctl(SGX_IOC_ENCLAVE_ADD_PAGES, args)

    def init(self, sigstruct: bytes | None = None) -> None:
        """SGX_IOC_ENCLAVE_INIT (no signature checks in the model).

        Returns: None. Raises: OSError EBUSY, EINVAL (not created or already
        initialized), EIO (EINIT faulted)."""
        self.ioctl(SGX_IOC_ENCLAVE_INIT, _Sigstruct(sigstruct))

    def restrict_permissions(self, p: RestrictPermissions) -> int:
        """SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS: EMODPR + ETRACK per page. No PTE or
        max-prot change (user space calls mprotect itself).

        Returns: 0 (`p.count` = length). Raises: OSError EBUSY, ENODEV (no SGX2),
        EINVAL (not initialized, bad range, permissions, result/count not 0, a
        page not REG), EFAULT (no such page; EMODPR faulted or returned an SGX
        code, then in `p.result`; ETRACK failed), EAGAIN (page being reclaimed);
        `p.count` says how far it got."""
        return self.ioctl(SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS, p)

    def modify_types(self, p: ModifyTypes) -> int:
        """SGX_IOC_ENCLAVE_MODIFY_TYPES: EMODT + ETRACK per page; REG -> TCS also fixes
        max prot at R|W and zaps the PTEs.

        Returns: 0. Raises: OSError EBUSY, ENODEV, EINVAL (as RESTRICT_PERMISSIONS;
        a type other than TCS/TRIM; a change EMODT does not make), EPERM (REG -> TCS
        of a page whose max prot lacks R|W), EFAULT, EAGAIN."""
        return self.ioctl(SGX_IOC_ENCLAVE_MODIFY_TYPES, p)

    def remove_pages(self, p: RemovePages) -> int:
        """SGX_IOC_ENCLAVE_REMOVE_PAGES: only TRIM pages the enclave accepted (probed
        with EMODPR(RWX), which #PFs on them); zap PTEs, EREMOVE, drop the record.

        Returns: 0. Raises: OSError EBUSY, ENODEV, EINVAL (not initialized, bad
        range, count not 0), EPERM (a page not TRIM or not yet accepted), EFAULT
        (no such page), EAGAIN."""
        return self.ioctl(SGX_IOC_ENCLAVE_REMOVE_PAGES, p)

    # ------------------------------------------------------------ build handlers
    def _ioc_create(self, secs: SecsImage) -> None:
        name = "ENCLAVE_CREATE"
        self._trace(name, base=secs.base, size=secs.size)
        if self.created:
            raise driver_error(errno.EINVAL, name, "the enclave was already created")
        size = secs.size
        if not isinstance(size, int) or size <= 0 or size & (size - 1):
            # the driver's one check of its own; everything else ECREATE checks (EIO)
            raise driver_error(errno.EINVAL, name, f"SECS.SIZE {size!r} is not a power of two")
        if self._lies(name, secs, 0):
            return
        self._create(secs)

    def _create(self, secs: SecsImage) -> None:
        """Worker of ENCLAVE_CREATE (parameters checked): an EPC page and ECREATE."""
        name = "ENCLAVE_CREATE"
        host = self._host
        with self._lock:
            slot = host.alloc_epc()
            if slot is None:
                raise driver_error(errno.ENOMEM, name, "no free EPC page for the SECS")
            try:
                self._cpu.ecreate(secs, Epc.paddr(slot))
            except CpuFault as fault:
                self._epc.free(slot)
                raise driver_error(errno.EIO, name, fault.reason) from None
            self.secs_slot = slot
            self.base, self.size = secs.base, secs.size
            self.created = True
            host.register(self)

    def _ioc_add_pages(self, args: AddPages) -> None:
        name = "ENCLAVE_ADD_PAGES"
        length = len(args.data) if isinstance(args.data, bytes | bytearray) else -1
        self._trace(name, offset=args.offset, length=length)
        if not self.created:
            raise driver_error(errno.EINVAL, name, "the enclave was not created")
        if self.initialized:
            raise driver_error(errno.EINVAL, name, "the enclave is already initialized")
        bad = self._bad_range(args.offset, length)
        if bad:
            raise driver_error(errno.EINVAL, name, bad)
        if isinstance(args.secinfo, bytes | bytearray):
            if len(args.secinfo) != 64:
                raise driver_error(errno.EFAULT, name,
                                   f"SECINFO is {len(args.secinfo)} bytes, not 64")
            si, reserved_clear = parse_secinfo(bytes(args.secinfo))
        elif isinstance(args.secinfo, int):
            si, reserved_clear = args.secinfo, True
        else:
            raise driver_error(errno.EFAULT, name, "SECINFO is neither bytes nor an int")
        perm, pt = si & SI_RWX, secinfo_pt(si)
        bad = ("page type must be REG or TCS" if pt not in (PT_REG, PT_TCS) else
               "W without R" if perm & SI_W and not perm & SI_R else
               "a TCS page with permissions" if pt == PT_TCS and perm else
               "reserved SECINFO.FLAGS bits set (only RWX and the page type may be)"
               if not 0 <= si < 1 << 64 or si & _ADD_RESERVED else
               "reserved SECINFO bytes set" if not reserved_clear else "")
        if bad:
            raise driver_error(errno.EINVAL, name, f"SECINFO.FLAGS {si:#x}: {bad}")
        if self._lies(name, args, length):
            return
        self._add_pages(args, si, pt, length)

    def _add_pages(self, args: AddPages, si: int, pt: int, length: int) -> None:
        """Worker of ADD_PAGES (parameters checked): per page, an EPC page and EADD."""
        name = "ENCLAVE_ADD_PAGES"
        max_prot = (PROT_READ | PROT_WRITE) if pt == PT_TCS else si & SI_RWX
        for c in range(0, length, PAGE_SIZE):
            addr = self.base + args.offset + c
            page = addr >> PAGE_SHIFT
            with self._lock:
                if self._info(page):
                    raise self._partial(errno.EBUSY, name, f"page {addr:#x} already added",
                                        args, c)
                slot = self._host.alloc_epc()
                if slot is None:
                    raise self._partial(errno.ENOMEM, name, "no free EPC page", args, c)
                try:
                    self._cpu.eadd(addr, si, bytes(args.data[c:c + PAGE_SIZE]),
                                   self.secs_paddr, Epc.paddr(slot))
                except CpuFault as fault:
                    self._epc.free(slot)
                    raise self._partial(errno.EIO, name, fault.reason, args, c) from None
                self._set_record(page, slot, pt, max_prot)
            args.count = c + PAGE_SIZE

    def _ioc_init(self, _sig: _Sigstruct) -> None:
        name = "ENCLAVE_INIT"
        self._trace(name)
        if not self.created:
            raise driver_error(errno.EINVAL, name, "the enclave was not created")
        if self.initialized:
            raise driver_error(errno.EINVAL, name, "the enclave is already initialized")
        if self._lies(name, _sig, 0):
            return
        with self._lock:
            try:
                self._cpu.einit(self.secs_paddr)
            except CpuFault as fault:
                raise driver_error(errno.EIO, name, fault.reason) from None
            self.initialized = True

    # ------------------------------------------------------------ EDMM checks
    def _bad_range(self, offset: object, length: object) -> str:
        """sgx_validate_offset_length: why [offset, offset+length) is refused, or ""."""
        if not isinstance(offset, int) or not isinstance(length, int):
            return "offset and length must be integers"
        if offset < 0 or offset % PAGE_SIZE:
            return f"offset {offset:#x} is not page aligned"
        if length <= 0 or length % PAGE_SIZE:
            return f"length {length:#x} is not a positive multiple of the page size"
        if offset + length >= 1 << 64 or offset + length - PAGE_SIZE >= self.size:
            return (f"offset {offset:#x} + length {length:#x} is outside the enclave "
                    f"(size {self.size:#x})")
        return ""

    def _check_edmm(self, name: str, offset: int, length: int) -> None:
        """What every EDMM ioctl checks first: SGX2, EINIT done, the range."""
        if not self._host.sgx2:
            raise driver_error(errno.ENODEV, name, "the CPU has no SGX2")
        if not self.initialized:
            raise driver_error(errno.EINVAL, name, "the enclave is not initialized")
        bad = self._bad_range(offset, length)
        if bad:
            raise driver_error(errno.EINVAL, name, bad)

    # ------------------------------------------------------------ EDMM handlers
    def _ioc_restrict(self, p: RestrictPermissions) -> None:
        name = "RESTRICT_PERMISSIONS"
        self._trace(name, offset=p.offset, length=p.length, permissions=p.permissions)
        self._check_edmm(name, p.offset, p.length)
        perm = p.permissions
        if not isinstance(perm, int) or perm & ~SI_RWX or perm < 0:
            raise driver_error(errno.EINVAL, name, f"permissions {perm!r} are not RWX bits")
        if perm & SI_W and not perm & SI_R:
            raise driver_error(errno.EINVAL, name, "permissions give W without R")
        if p.result or p.count:
            raise driver_error(errno.EINVAL, name, "result and count must be 0 on entry")
        if self._lies(name, p, p.length):
            return
        self._restrict(p, secinfo_flags(perm, PT_REG))

    def _ioc_modify_types(self, p: ModifyTypes) -> None:
        name = "MODIFY_TYPES"
        self._trace(name, offset=p.offset, length=p.length, page_type=p.page_type)
        self._check_edmm(name, p.offset, p.length)
        new_type = p.page_type if isinstance(p.page_type, int) else -1
        if new_type & ~0xFF or new_type < 0:
            raise driver_error(errno.EINVAL, name,
                               f"page type {p.page_type!r} has bits outside 0..0xff")
        if p.result or p.count:
            raise driver_error(errno.EINVAL, name, "result and count must be 0 on entry")
        if new_type not in (PT_TCS, PT_TRIM):
            raise driver_error(errno.EINVAL, name,
                               f"page type {p.page_type!r} is neither TCS (1) nor TRIM (4)")
        if self._lies(name, p, p.length):
            return
        self._modify_types(p, new_type)

    def _ioc_remove_pages(self, p: RemovePages) -> None:
        name = "REMOVE_PAGES"
        self._trace(name, offset=p.offset, length=p.length)
        self._check_edmm(name, p.offset, p.length)
        if p.count:
            raise driver_error(errno.EINVAL, name, "count must be 0 on entry")
        if self._lies(name, p, p.length):
            return
        self._remove_pages(p)

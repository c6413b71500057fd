"""The untrusted runtime's services for the manager's two ocalls.

What the Intel SDK's `enclave_common` does for `alloc_ocall` and `modify_ocall` on
the in-kernel driver: `alloc_ocall` maps the range MAP_SHARED|MAP_FIXED with
PROT_READ|PROT_WRITE (page type and flags are ignored; EAUG happens lazily on the
first fault); `modify_ocall` follows the driver-facing decision table below,
row by row, in order. The ioctl wrappers retry on EBUSY/EAGAIN, continuing after
the part the driver reports done (`count`). Every failure reaches the enclave as
EFAULT, the only error the trusted side accepts from here.

Model choice: a non-REG page whose prot changes without a type change (not a row
of the table) is refused; the retry loop gives up after `max_retries` attempts
without progress.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from typing import TypeVar

from sgx_emm.platform.kernel import (
    MAP_FIXED,
    MAP_SHARED,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    EnclaveFd,
    Kernel,
    ModifyTypes,
    RemovePages,
    RestrictPermissions,
)
from sgx_emm.platform.secinfo import PT_REG, PT_TCS, PT_TRIM

P = TypeVar("P", RestrictPermissions, ModifyTypes, RemovePages)

_RETRYABLE = (errno.EBUSY, errno.EAGAIN)


def split_flags(flags: int) -> tuple[int, int]:
    """(prot, page type) of the EMM's `prot | PT << 8` ocall flags."""
    return flags & 0x7, (flags >> 8) & 0xFF


def _why(err: OSError, prot_to: int | None = None) -> str:
    """An OSError from the kernel as one phrase: its own reason when it has one."""
    reason = getattr(err, "reason", None)
    if reason:  # strerror is "NAME: reason (errno text)"
        return f"the OS refused {err.strerror or reason}"
    text = err.strerror or str(err)
    if (err.errno == errno.EINVAL and prot_to is not None and prot_to & PROT_WRITE
            and not prot_to & PROT_READ and "RESTRICT_PERMISSIONS" in text):
        return f"{text} (the driver refuses W without R)"
    return text


class UntrustedRuntime:
    """`alloc_ocall` / `modify_ocall` over one enclave fd of one process."""

    def __init__(self, kernel: Kernel, fd: EnclaveFd, *, max_retries: int = 1000) -> None:
        self.kernel = kernel
        self.fd = fd
        self.max_retries = max_retries
        self._why = threading.local()

    def last_failure(self) -> str | None:
        """Why this thread's last ocall failed, for people (None after a success)."""
        why: str | None = getattr(self._why, "text", None)
        return why

    def _note(self, text: str | None) -> None:
        self._why.text = text

    # ------------------------------------------------------------ the two ocalls
    def alloc_ocall(self, addr: int, length: int, page_type: int, alloc_flags: int) -> int:
        """mmap(addr, len, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_FIXED, fd, 0)."""
        try:
            self.kernel.mmap(addr, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
                             self.fd)
        except OSError as err:
            self._note(f"mmap of {addr:#x}-{addr + length:#x} failed: {_why(err)}")
            return errno.EFAULT
        self._why.text = None       # `_note(None)`, without its call on every alloc
        return 0

    def modify_ocall(self, addr: int, length: int, flags_from: int, flags_to: int) -> int:
        self._why.text = None
        try:
            ok = self._modify(addr, length, flags_from, flags_to)
        except OSError as err:
            self._note(_why(err, split_flags(flags_to)[0]))
            return errno.EFAULT
        if not ok:
            self._note(f"no row of the untrusted runtime's table takes {flags_from:#x} "
                       f"to {flags_to:#x}")
        return 0 if ok else errno.EFAULT

    def _modify(self, addr: int, length: int, flags_from: int, flags_to: int) -> bool:
        """The decision table; False for the rows that are invalid requests."""
        prot_from, type_from = split_flags(flags_from)
        prot_to, type_to = split_flags(flags_to)
        if type_from == PT_TRIM and type_to != PT_TRIM:
            return False
        if prot_from != prot_to and type_from != type_to:
            return False
        if type_from == PT_TRIM and type_to == PT_TRIM:      # trim notification
            self.remove_pages(addr, length)
            if prot_to == PROT_NONE:
                self.kernel.mprotect(addr, length, PROT_NONE)
            return True
        if type_to == PT_TRIM:
            self.modify_types(addr, length, PT_TRIM)
            return True
        if type_to == PT_TCS:
            if type_from != PT_REG or not (prot_from == PROT_READ | PROT_WRITE
                                           or prot_from == prot_to):
                return False
            self.modify_types(addr, length, PT_TCS)
            return True
        if type_from != type_to:
            return False
        if prot_from == PROT_NONE and prot_to == PROT_NONE:
            self.kernel.mprotect(addr, length, PROT_NONE)
            return True
        if prot_from == prot_to:
            return True
        if type_from != PT_REG:
            return False
        self.restrict_permissions(addr, length, prot_to)
        if prot_to != PROT_NONE:
            self.kernel.mprotect(addr, length, prot_to)
        return True

    # ------------------------------------------------------------ ioctl wrappers
    def restrict_permissions(self, addr: int, length: int, prot: int) -> None:
        self._retrying(addr, length, lambda off, n: RestrictPermissions(off, n, prot),
                       self.fd.restrict_permissions)

    def modify_types(self, addr: int, length: int, page_type: int) -> None:
        self._retrying(addr, length, lambda off, n: ModifyTypes(off, n, page_type),
                       self.fd.modify_types)

    def remove_pages(self, addr: int, length: int) -> None:
        self._retrying(addr, length, lambda off, n: RemovePages(off, n),
                       self.fd.remove_pages)

    def _retrying(self, addr: int, length: int, make: Callable[[int, int], P],
                  ioctl: Callable[[P], int]) -> None:
        """Call the ioctl until it covered the range; EBUSY/EAGAIN retry from where
        the driver stopped, anything else raises."""
        offset = addr - self.fd.base
        attempts = 0
        while True:
            params = make(offset, length)
            try:
                ioctl(params)
                return
            except OSError as err:
                if err.errno not in _RETRYABLE:
                    raise
                done = params.count
                offset += done
                length -= done
                attempts = 0 if done else attempts + 1
                if length <= 0:
                    return
                if attempts >= self.max_retries:
                    raise

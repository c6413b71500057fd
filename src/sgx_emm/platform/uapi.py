"""The user-kernel ABI of the SGX driver, as Linux's uapi headers give it.

mmap/mprotect bits, the enclave ioctl numbers and parameter structs
(`asm/sgx.h`), `struct sgx_enclave_run` of the vDSO entry, and the kernel's
answer to one page fault. Plain data: nothing here acts.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sgx_emm.platform.secinfo import VECTOR_PF

PROT_NONE = 0
PROT_READ = 0x1
PROT_WRITE = 0x2
PROT_EXEC = 0x4
PROT_MASK = PROT_READ | PROT_WRITE | PROT_EXEC
MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_FIXED = 0x10

#: SGX_IOC_ENCLAVE_ADD_PAGES flag: measure the page (EEXTEND)
SGX_PAGE_MEASURE = 0x01
SGX_MAGIC = 0xA4


def _ioc(nr: int, size: int, write: bool = True) -> int:
    direction = 3 if write else 1   # _IOWR / _IOW
    return (direction << 30) | (size << 16) | (SGX_MAGIC << 8) | nr


SGX_IOC_ENCLAVE_CREATE = _ioc(0x00, 8, write=False)
SGX_IOC_ENCLAVE_ADD_PAGES = _ioc(0x01, 48)
SGX_IOC_ENCLAVE_INIT = _ioc(0x02, 8, write=False)
SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS = _ioc(0x05, 40)
SGX_IOC_ENCLAVE_MODIFY_TYPES = _ioc(0x06, 40)
SGX_IOC_ENCLAVE_REMOVE_PAGES = _ioc(0x07, 24)


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


class FaultOutcome(enum.Enum):
    """What the kernel's #PF handler did."""

    FIXED = "fixed"        # retry the access (PTE mapped, page EAUGed, ...)
    REPORT = "report"      # SIGSEGV class: reported through the vDSO
    SIGBUS = "sigbus"      # VM_FAULT_SIGBUS: also reported through the vDSO


@dataclass(frozen=True, slots=True)
class FaultResult:
    """The kernel's answer to one #PF: the outcome and, unless FIXED, why."""

    outcome: FaultOutcome
    reason: str = ""


class _Fault(Protocol):
    vector: int
    errcd: int
    addr: int
    reason: str
    os_reason: str


UserHandler = Callable[["Run"], int]


@dataclass(slots=True)
class Run:
    """struct sgx_enclave_run, plus two fields of the model: why the CPU raised the
    reported exception (`exception_reason`, the SDM check with its values) and what
    the kernel decided about it (`exception_os_reason`, e.g. "no VMA")."""

    tcs: int
    function: int = 0
    exception_vector: int = 0
    exception_error_code: int = 0
    exception_addr: int = 0
    user_handler: UserHandler | None = None
    user_data: Any = None
    exception_reason: str = ""
    exception_os_reason: str = ""

    def set_exception(self, function: int, fault: _Fault) -> None:
        """What the vDSO's exception fixup writes (never cleared afterwards): the
        leaf, vector, the low 16 bits of the error code and the address (page
        aligned for a #PF, as AEX clears CR2's low bits)."""
        self.function = function
        self.exception_vector = fault.vector
        self.exception_error_code = fault.errcd & 0xFFFF
        self.exception_addr = fault.addr & ~0xFFF if fault.vector == VECTOR_PF else fault.addr
        self.exception_reason = fault.reason
        self.exception_os_reason = fault.os_reason

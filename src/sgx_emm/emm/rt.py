"""The two interfaces the manager is ported through.

`RuntimeAbstraction` mirrors the reference's `sgx_mm_rt_abstraction.h`: the two
ocalls, fault-handler registration, a recursive mutex and the within-enclave
check. `Primitives` mirrors `sgx_mm_primitives.h`: the three ENCLU leaves the
manager issues itself. A simulated enclave, a null runtime that only counts, or a
hostile test double all plug in here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class PfInfo:
    """The page-fault record the SSA's MISC.EXINFO gives the enclave."""

    maddr: int
    errcd: int

    @property
    def p(self) -> bool:
        """PFEC bit 0: the page was present (a protection fault)."""
        return bool(self.errcd & 0x1)

    @property
    def rw(self) -> bool:
        """PFEC bit 1: the access was a write."""
        return bool(self.errcd & 0x2)

    @property
    def sgx(self) -> bool:
        """PFEC bit 15: the EPCM, not the page tables, refused the access."""
        return bool(self.errcd & 0x8000)

    def __repr__(self) -> str:
        return f"PfInfo(maddr={self.maddr:#x}, errcd={self.errcd:#x})"


#: A custom fault handler of a region: `handler(pfinfo, private) -> int`.
FaultHandler = Callable[[PfInfo, Any], int]
#: The manager's own #PF handler as the runtime calls it.
PfHandler = Callable[[PfInfo], int]


class Mutex(Protocol):
    """A recursive lock; `threading.RLock` satisfies it."""

    def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool: ...

    def release(self) -> None: ...


@runtime_checkable
class RuntimeAbstraction(Protocol):
    """What the manager needs from the runtime it is linked into."""

    def alloc_ocall(self, addr: int, length: int, page_type: int, alloc_flags: int) -> int:
        """Ask the OS to make [addr, addr+length) EAUG-able; 0 or EFAULT."""
        ...

    def modify_ocall(self, addr: int, length: int, flags_from: int, flags_to: int) -> int:
        """Ask the OS to change permissions / type or remove trimmed pages; 0 or EFAULT."""
        ...

    def register_pfhandler(self, handler: PfHandler) -> bool:
        """Install the manager's handler so that it runs first on every #PF."""
        ...

    def mutex_create(self) -> Mutex:
        """A new recursive mutex."""
        ...

    def is_within_enclave(self, addr: int, size: int) -> bool:
        """True iff [addr, addr+size) lies wholly in ELRANGE (False on wrap)."""
        ...


@runtime_checkable
class OcallDiagnostics(Protocol):
    """Optional: a runtime that can say why its last ocall on this thread failed.

    Only for the reason of an error shown to people; the manager's behaviour
    never depends on it (the untrusted side is not trusted).
    """

    def last_ocall_failure(self) -> str | None: ...


@runtime_checkable
class Primitives(Protocol):
    """The ENCLU leaves the manager issues; each returns the SGX code (0 = success).

    `secinfo` is the SECINFO.FLAGS value (prot | state bits | page type << 8).
    """

    def eaccept(self, secinfo: int, addr: int) -> int: ...

    def eacceptcopy(self, secinfo: int, dest: int, src: int) -> int: ...

    def emodpe(self, secinfo: int, addr: int) -> int: ...

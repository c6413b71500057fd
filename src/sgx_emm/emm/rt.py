"""The two interfaces the manager is ported through.

`RuntimeAbstraction` mirrors the reference's `sgx_mm_rt_abstraction.h`: the two
ocalls, fault-handler registration, a recursive mutex and the within-enclave
check. `Primitives` mirrors `sgx_mm_primitives.h`: the three ENCLU leaves the
manager issues itself. A simulated enclave, a null runtime that only counts, or a
hostile test double all plug in here.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable


class PfInfo:
    """The page-fault record the SSA's MISC.EXINFO gives the enclave.

    Immutable and compared by value, like a frozen dataclass, but made with a
    plain `__init__`: every delivered #PF builds one, and a frozen dataclass's
    `__init__` (an `object.__setattr__` call per field) cost more than the
    manager's handling of a committed page. The fields live in private slots;
    `maddr` and `errcd` are read-only views of them, so assigning either raises
    AttributeError.
    """

    __slots__ = ("_maddr", "_errcd")
    __match_args__ = ("maddr", "errcd")

    def __init__(self, maddr: int, errcd: int) -> None:
        self._maddr = maddr
        self._errcd = errcd

    if TYPE_CHECKING:
        @property
        def maddr(self) -> int:
            """The faulting linear address."""

        @property
        def errcd(self) -> int:
            """The page-fault error code (PFEC)."""
    else:  # C getters: no Python frame per read
        maddr = property(attrgetter("_maddr"), doc="The faulting linear address.")
        errcd = property(attrgetter("_errcd"), doc="The page-fault error code (PFEC).")

    @property
    def p(self) -> bool:
        """PFEC bit 0: the page was present (a protection fault)."""
        return bool(self._errcd & 0x1)

    @property
    def rw(self) -> bool:
        """PFEC bit 1: the access was a write."""
        return bool(self._errcd & 0x2)

    @property
    def sgx(self) -> bool:
        """PFEC bit 15: the EPCM, not the page tables, refused the access."""
        return bool(self._errcd & 0x8000)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, PfInfo)
        return self._maddr == other._maddr and self._errcd == other._errcd

    def __hash__(self) -> int:
        return hash((self._maddr, self._errcd))

    def __repr__(self) -> str:
        return f"PfInfo(maddr={self._maddr:#x}, errcd={self._errcd:#x})"


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


@runtime_checkable
class PagePrimitives(Protocol):
    """Optional: EACCEPT over many pages in one call.

    A runtime whose single-page leaf is costly to reach (the simulated enclave
    finds the calling thread's entry and guards every leaf) offers this so that
    a commit or trim of N pages pays that once, not N times. It must behave
    exactly as `eaccept_each` over its own `eaccept`: the same leaves in the
    same order, the same codes, stopping at the same page.
    """

    def eaccept_pages(self, secinfo: int, pages: range, done: list[int]) -> int: ...


def eaccept_each(eaccept: Callable[[int, int], int], secinfo: int, pages: range,
                 done: list[int]) -> int:
    """EACCEPT `secinfo` at each address of `pages`, in order, one leaf per page.

    Returns: 0, or the first nonzero SGX code (the pages after it are not
    tried). `done[0]` becomes the number of pages whose EACCEPT returned 0,
    also when a leaf raises, so the caller knows what was accepted either way.
    """
    n = 0
    try:
        for addr in pages:
            rc = eaccept(secinfo, addr)
            if rc:
                return rc
            n += 1
        return 0
    finally:
        done[0] = n


#: An EACCEPT page loop: `loop(secinfo, pages, done)`, as `eaccept_each` behaves.
PageLoop = Callable[[int, range, list[int]], int]


def page_loop(prims: Primitives) -> PageLoop:
    """The EACCEPT page loop of `prims`, found once: its batched `eaccept_pages` when
    it has one (`PagePrimitives`), otherwise `eaccept_each` over its `eaccept`
    (looked up per loop, so a replaced leaf is the one called)."""
    batch: PageLoop | None = getattr(prims, "eaccept_pages", None)
    if batch is not None:
        return batch

    def each(secinfo: int, pages: range, done: list[int]) -> int:
        return eaccept_each(prims.eaccept, secinfo, pages, done)

    return each


def eaccept_pages(prims: Primitives, secinfo: int, pages: range, done: list[int]) -> int:
    """`eaccept_each` through `prims`: its batched `eaccept_pages` when it has one
    (`PagePrimitives`), otherwise its single-page `eaccept` in a loop, so every
    runtime works and the manager's page loops are written once."""
    batch = getattr(prims, "eaccept_pages", None)
    if batch is not None:
        rc: int = batch(secinfo, pages, done)
        return rc
    return eaccept_each(prims.eaccept, secinfo, pages, done)

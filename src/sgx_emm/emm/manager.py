"""The Enclave Memory Manager: the public and private API and the #PF handler.

Follows the EMM specification: every check in its order (the first failing one
gives the result), the reference's sgx_mm.c / emm_private.c flow for all that
the spec leaves open, and the spec's Deviations (each marked `Deviation:` here
and listed in docs/deviations.md). Region bookkeeping lives in `regions`,
placement in `placement`, per-region work in `ema_ops`; metadata comes from
the `emalloc` model, which calls back into this class as its `MetaHost`.

One recursive mutex from the runtime guards every call; the fault handler
drops it before calling a region's own handler, which may raise (longjmp).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
from collections.abc import Callable, Container, Sequence
from typing import Any, TypeVar, cast

from sgx_emm.emm.bitmap import CommitBitmap
from sgx_emm.emm.ema_ops import (
    SIZEOF_EMA,
    EmaOps,
    MetaAllocatorLike,
    ocall_problem,
)
from sgx_emm.emm.emalloc import MetaAllocator
from sgx_emm.emm.placement import U64, RootBounds, find_free_region, free_at
from sgx_emm.emm.regions import Ema, Region, RegionList, snapshot
from sgx_emm.emm.rt import FaultHandler, Mutex, PfInfo, Primitives, RuntimeAbstraction
from sgx_emm.emm.values import (
    COMMIT_NOW,
    COMMIT_ON_DEMAND,
    FIXED,
    GROWSDOWN,
    PAGE_TYPE_REG,
    PAGE_TYPE_SS_FIRST,
    PAGE_TYPE_SS_REST,
    PAGE_TYPE_TCS,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_READ_WRITE,
    PROT_WRITE,
    RESERVE,
    SYSTEM,
)
from sgx_emm.errors import EmmError, EnclaveAbort, sgx_result_name
from sgx_emm.flags import (
    ALIGNMENT_MASK,
    ALIGNMENT_SHIFT,
    ALLOC_FLAGS_MASK,
    EXCEPTION_CONTINUE_EXECUTION,
    EXCEPTION_CONTINUE_SEARCH,
    PAGE_SHIFT,
    PAGE_SIZE,
    PAGE_TYPE_MASK,
    PROT_MASK,
    alloc_flags_text,
    prot_letters,
    secinfo_text,
)

_PAGE_MASK = PAGE_SIZE - 1
#: An address's page base is `addr & _PAGE_BASE` (`~` is an interpreted op of its own).
_PAGE_BASE = ~_PAGE_MASK
#: The prots modify_permissions takes: R/W/X bits only, and no X without R.
_MPROTECT_PROTS = frozenset(p for p in range(PROT_MASK + 1)
                            if not (p & PROT_EXEC and not p & PROT_READ))
_MODE_BITS = RESERVE | COMMIT_NOW | COMMIT_ON_DEMAND
_COMMIT_MODES = frozenset((RESERVE, COMMIT_NOW, COMMIT_ON_DEMAND))
_ALLOC_PAGE_TYPES = frozenset((0, PAGE_TYPE_REG, PAGE_TYPE_SS_FIRST, PAGE_TYPE_SS_REST))
#: mm_init_ema's accepted flag bits (the reference's LEGAL_INIT_FLAGS).
_INIT_EMA_FLAGS = (PAGE_TYPE_REG | PAGE_TYPE_TCS | PAGE_TYPE_SS_FIRST | PAGE_TYPE_SS_REST
                   | SYSTEM | RESERVE)

MetaAllocatorFactory = Callable[["EnclaveMemoryManager"], MetaAllocatorLike]

#: (start, end, alloc_flags, si_flags, handler, private) of a reserve being re-used.
_Saved = tuple[int, int, int, int, FaultHandler | None, Any]


def _check_range(addr: int, size: int, starts: Container[int] = ()) -> int:
    """Deviation: unaligned, empty or wrapping ranges are EINVAL. Returns the end.

    Every range call runs this, before taking the lock. `starts` (a root's start
    index, read without the lock) answers for the usual call, one page at a
    region's start: an address that was ever a region's start is page aligned
    and its page ends below 2^64, whatever a concurrent call changes. Otherwise
    the arithmetic: addresses are multi-digit ints, on which `(addr | size) &
    mask` builds two new ints; a remainder by the page size takes a
    single-digit fast path (about 10% fewer instructions for the test).
    """
    if size == PAGE_SIZE and addr in starts:
        return addr + PAGE_SIZE
    end = addr + size
    if addr % PAGE_SIZE or size % PAGE_SIZE or addr < 0 or size <= 0 or end > U64:
        raise EmmError(errno.EINVAL, _range_problem(addr, size))
    return end


def _range_problem(addr: int, size: int) -> str:
    """Why (addr, size) is not a page-aligned, non-empty range below 2^64 (cold path)."""
    if addr < 0:
        return f"address {addr:#x} is negative"
    if size <= 0:
        return f"size {size:#x} is not positive"
    if addr & _PAGE_MASK:
        return f"address {addr:#x} is not page aligned"
    if size & _PAGE_MASK:
        return f"size {size:#x} is not a multiple of the page size"
    return f"range {addr:#x} + size {size:#x} wraps around 2^64"  # size_t wrap-around


def _region(ema: Ema) -> str:
    """`region 0x7f..0000-0x7f..2000 (COMMIT_ON_DEMAND, REG|RW)` for reasons."""
    return _region_text(ema.start, ema.end, ema.alloc_flags, ema.si_flags)


def _region_text(start: int, end: int, alloc_flags: int, si_flags: int) -> str:
    mode = ("RESERVE" if alloc_flags & RESERVE else "COMMIT_NOW"
            if alloc_flags & COMMIT_NOW else "COMMIT_ON_DEMAND"
            if alloc_flags & COMMIT_ON_DEMAND else "static")
    return f"region {start:#x}-{end:#x} ({mode}, {secinfo_text(si_flags).split(' ')[0]})"


def _facts(ema: Ema) -> tuple[int, int, int, int]:
    """What `_region` shows of a region, taken now for a reason formatted later."""
    return ema.start, ema.end, ema.alloc_flags, ema.si_flags


def _region_says(facts: tuple[int, int, int, int], what: str) -> str:
    """`<region> <what>`: a lazy EmmError reason (`EmmError(err, _region_says, ...)`)."""
    return f"{_region_text(*facts)} {what}"


def _commit_mode_problem(flags: int) -> str:
    modes = flags & (RESERVE | COMMIT_NOW | COMMIT_ON_DEMAND)
    if not modes:
        return (f"flags {alloc_flags_text(flags)} name no commit mode (one of RESERVE, "
                "COMMIT_NOW, COMMIT_ON_DEMAND)")
    return f"flags {alloc_flags_text(flags)} name more than one commit mode"


def _uncommitted_refusal(ema: Ema, lo: int, hi: int) -> _Refusal:
    """EINVAL naming the first page of [lo, hi) in `ema` that is not committed.

    The page is found now (one bisect); the text is formatted when read.
    """
    bm = ema.bitmap
    holes = bm.holes_list(lo, hi) if bm is not None else []
    page = holes[0][0] if holes else lo
    return errno.EINVAL, _page_not_committed, page, _facts(ema)


def _page_not_committed(page: int, facts: tuple[int, int, int, int]) -> str:
    return f"page {page:#x} of {_region_text(*facts)} is not committed"


def _clip(start: int, end: int, ema: Ema) -> tuple[int, int]:
    """[start, end) cut to the region (no builtin min/max: this runs on every call)."""
    s, e = ema.start, ema.end
    return (start if start > s else s), (end if end < e else e)


#: Why a region check refuses a call: the arguments of the EmmError to raise.
_Refusal = tuple[Any, ...]
#: A range call's own check of one region it acts on: `check(ema, start, end)` with
#: the call's whole range; returns None, or the call's refusal. The check returns
#: it rather than raising it so that the raise happens in `_covered`: every frame
#: an exception leaves costs a frame object and a traceback entry, and the usual
#: call mix refuses about one call in nine here.
_RegionCheck = Callable[[Ema, int, int], _Refusal | None]


def _check_commit(ema: Ema, start: int, end: int) -> _Refusal | None:
    """Commit needs a writable REG region that is not a bare reservation (EACCES).

    Reasons are formatted when read: a third of the commits in a typical call
    mix hit a read-only region.
    """
    si = ema.si_flags
    if ema.alloc_flags & RESERVE:
        return (errno.EACCES, _region_says, _facts(ema),
                "is a reservation: it cannot hold pages")
    if not si & PAGE_TYPE_REG:
        return errno.EACCES, _region_says, _facts(ema), "is not of type REG"
    if not si & PROT_WRITE:
        return (errno.EACCES, _region_says, _facts(ema),
                "is not writable (commit EACCEPTs RW)")
    return None


def _check_uncommit(ema: Ema, start: int, end: int) -> _Refusal | None:
    if ema.alloc_flags & RESERVE:
        return (errno.EACCES, _region_says, _facts(ema),
                "is a reservation: nothing to uncommit")
    return None


def _check_modify_permissions(ema: Ema, start: int, end: int) -> _Refusal | None:
    """Permissions change on committed pages of REG regions only."""
    if ema.alloc_flags & RESERVE:
        return (errno.EACCES, _region_says, _facts(ema),
                "is a reservation: it has no pages")
    if not ema.si_flags & PAGE_TYPE_REG:
        return errno.EACCES, _region_says, _facts(ema), "is not of type REG"
    bm = ema.bitmap
    s, e = ema.start, ema.end  # _clip written out: every mprotect checks here
    lo, hi = (start if start > s else s), (end if end < e else e)
    if bm is None or not bm.all_set(lo, hi):
        return _uncommitted_refusal(ema, lo, hi)
    return None


def _check_commit_data(ema: Ema, start: int, end: int) -> _Refusal | None:
    """commit_data fills uncommitted pages of a committable COMMIT_ON_DEMAND region."""
    refusal = _check_commit(ema, start, end)
    if refusal is not None:
        return refusal
    if not ema.alloc_flags & COMMIT_ON_DEMAND:
        return errno.EINVAL, f"{_region(ema)} is not COMMIT_ON_DEMAND"
    bm = ema.bitmap
    lo, hi = max(start, ema.start), min(end, ema.end)
    if bm is not None and bm.any_set(lo, hi):
        page = bm.runs_list(lo, hi)[0][0]  # the first committed page of the range
        return errno.EACCES, (f"page {page:#x} is already committed "
                              "(commit_data needs uncommitted pages)")
    return None


def _metadata_refusal(ema: Ema) -> EmmError:
    """EACCES: a public call named one of the allocator's own reserves (Deviation)."""
    return EmmError(errno.EACCES, _region_says, _facts(ema), "holds the manager's own metadata")


class _AllocMode:
    """What an alloc's flag word asks for, decoded once per distinct word.

    Bit tests on ints are never specialized by CPython 3.11 (each one costs
    about as much as a call's argument handling), and every alloc made the same
    eight of them on the same few words; the decoded answers are read as slots.
    """

    __slots__ = ("alloc_flags", "page_type", "shift", "align", "si_flags", "reserve",
                 "commit_now", "grow_up")

    def __init__(self, alloc_flags: int, page_type: int, shift: int) -> None:
        self.alloc_flags = alloc_flags
        self.page_type = page_type
        self.shift = shift
        self.align = 1 << shift
        self.reserve = alloc_flags & RESERVE != 0
        #: the region's SECINFO flags: a reservation has no pages, so no type
        self.si_flags = PROT_NONE if self.reserve else PROT_READ_WRITE | page_type
        self.commit_now = alloc_flags & COMMIT_NOW != 0
        self.grow_up = not alloc_flags & GROWSDOWN


@functools.lru_cache(maxsize=64)
def _decode_alloc_flags(flags: int, public: bool) -> _AllocMode:
    """An alloc's flag word decoded, EINVAL for the flag checks that come before the
    size check (the alignment's range is checked after the size). `public`: the
    call came through `alloc`, which may not ask for SYSTEM. Pure, so cached:
    programs pass the same few flag words, and a refused word is checked again
    each time (exceptions are not cached)."""
    flags = int(flags)  # an IntFlag is cached as its int (equal, same hash)
    if public and flags & SYSTEM:
        raise EmmError(errno.EINVAL, "SYSTEM is reserved for the runtime's own regions "
                       "(mm_alloc)")
    alloc_flags = flags & ALLOC_FLAGS_MASK
    # Deviation: exactly one commit mode (the reference accepts several)
    if alloc_flags & _MODE_BITS not in _COMMIT_MODES:
        raise EmmError(errno.EINVAL, _commit_mode_problem(flags))
    page_type = flags & PAGE_TYPE_MASK
    if page_type not in _ALLOC_PAGE_TYPES:  # Deviation: values, not a bit mask
        raise EmmError(errno.EINVAL, f"page type {page_type:#x} cannot be allocated "
                       "(only REG, SS_FIRST or SS_REST)")
    page_type = page_type or PAGE_TYPE_REG
    if alloc_flags & COMMIT_NOW and page_type != PAGE_TYPE_REG:  # Deviation: SS now
        raise EmmError(errno.EINVAL, f"COMMIT_NOW of page type {page_type:#x}: the kernel "
                       "EAUGs only REG pages and EACCEPT refuses a shadow-stack PENDING "
                       "SECINFO; allocate COMMIT_ON_DEMAND or RESERVE")
    return _AllocMode(alloc_flags, page_type,
                      (flags & ALIGNMENT_MASK) >> ALIGNMENT_SHIFT or PAGE_SHIFT)


class _NotInitialized:
    """The manager's lock before `init`: every API call fails with EFAULT."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        raise EmmError(errno.EFAULT, "the manager is not initialized (sgx_mm_init "
                       "has not run)")

    def release(self) -> None:  # pragma: no cover - acquire never succeeds
        pass


# ------------------------------------------------------------------ range calls
#
# A public range call (user root) and its private twin (mm_*, rts root) share
# one body: a factory makes both methods from it, with the root as a closure
# constant. A method that only forwarded to a shared `_commit(rts, ...)` would
# cost every call one more Python frame (about 400 machine instructions, 1.5%
# of a typical call) for no work.

_F = TypeVar("_F", bound=Callable[..., Any])


def _made_by(factory: Callable[..., Callable[..., Any]], *args: bool) -> Callable[[_F], _F]:
    """Decorator: the declared method (signature and docstring only) gets the body
    `factory(*args)` makes, under its own name, docstring and signature.

    Type checkers, `help()`, tracebacks and profiles see the method as declared;
    a declaration whose parameters differ from the body's fails at import.
    """
    def decorate(declared: _F) -> _F:
        made = factory(*args)
        shape = [(p.name, p.kind, p.default)
                 for p in inspect.signature(declared).parameters.values()]
        if shape != [(p.name, p.kind, p.default)
                     for p in inspect.signature(made).parameters.values()]:
            raise TypeError(f"{declared.__qualname__} is declared with other parameters "
                            f"than {factory.__name__} gives it")
        # tracebacks and profiles name the method, not the factory's inner function
        made.__code__ = made.__code__.replace(co_name=declared.__name__,
                                              co_qualname=declared.__qualname__)
        return cast(_F, functools.update_wrapper(made, declared))
    return decorate


def _commit_call(rts: bool, guard_meta: bool) -> Callable[..., None]:
    guard = guard_meta and not rts

    def call(self: EnclaveMemoryManager, addr: int, size: int) -> None:
        root = self._rts if rts else self._user
        end = _check_range(addr, size, root.by_start)
        lock = self._api_lock
        lock.acquire()
        try:
            overlapped = self._covered(root, addr, end, True, guard, _check_commit)
            for ema in overlapped:
                rc = self._ops.do_commit(ema, addr, end)
                if rc:
                    raise EmmError.from_leaf(rc, "EACCEPT", self._ops.failed_page,
                                             "committing a page")
        finally:
            lock.release()

    return call


def _uncommit_call(rts: bool) -> Callable[..., None]:
    def call(self: EnclaveMemoryManager, addr: int, size: int) -> None:
        root = self._rts if rts else self._user
        end = _check_range(addr, size, root.by_start)
        lock = self._api_lock
        lock.acquire()
        try:
            overlapped = self._covered(root, addr, end, True, not rts, _check_uncommit)
            for ema in overlapped:
                prot = ema.si_flags & PROT_MASK
                if prot:  # unclipped: a region's bitmap holds only its own pages
                    self._ops.uncommit_real(ema, addr, end, prot)
                    continue
                lo, hi = _clip(addr, end, ema)
                # Deviation: the trim notify carries the READ the region now has (the
                # reference sends PROT_NONE, so the mapping stops matching the region)
                target = self._readable_for_trim(root, ema, lo, hi)
                self._ops.uncommit_real(target, lo, hi, prot,
                                        notify_prot=target.si_flags & PROT_MASK)
        finally:
            lock.release()

    return call


def _dealloc_call(rts: bool) -> Callable[..., None]:
    def call(self: EnclaveMemoryManager, addr: int, size: int) -> None:
        root = self._rts if rts else self._user
        end = _check_range(addr, size, root.by_start)
        lock = self._api_lock
        lock.acquire()
        try:
            overlapped = self._covered(root, addr, end, False, not rts, None)
            ops = self._ops
            for ema in overlapped:
                lo, hi = _clip(addr, end, ema)
                node = ema
                if not ema.alloc_flags & RESERVE:
                    if not ema.si_flags & PROT_MASK:
                        node = self._readable_for_trim(root, ema, lo, hi)
                    ops.uncommit_real(node, lo, hi, PROT_NONE)
                if lo > node.start:
                    node = ops.split(root, node, lo, False)
                if hi < node.end:
                    node = ops.split(root, node, hi, True)
                ops.destroy(root, node)
        finally:
            lock.release()

    return call


def _modify_permissions_call(rts: bool) -> Callable[..., None]:
    def call(self: EnclaveMemoryManager, addr: int, size: int, prot: int) -> None:
        root = self._rts if rts else self._user
        end = _check_range(addr, size, root.by_start)
        prot = int(prot)
        if prot not in _MPROTECT_PROTS:  # (one set probe instead of three bit tests)
            if prot & ~PROT_MASK:  # Deviation: undefined prot bits
                raise EmmError(errno.EINVAL, f"prot {prot:#x} has bits other than R/W/X")
            raise EmmError(errno.EINVAL, f"prot {prot_letters(prot)} has X without R")
        lock = self._api_lock
        lock.acquire()
        try:
            overlapped = self._covered(root, addr, end, True, not rts, _check_modify_permissions)
            for ema in overlapped:
                self._ops.modify_permissions(root, ema, addr, end, prot)
        finally:
            lock.release()

    return call


class EnclaveMemoryManager:
    """sgx_mm_* (user root) and mm_* (rts root) over one runtime."""

    def __init__(self, runtime: RuntimeAbstraction, primitives: Primitives, *,
                 meta_area_base: int, leaky_emalloc: bool = True,
                 emalloc_legacy_2022: bool = False,
                 emalloc_merge_right: bool | None = None,
                 meta_allocator: MetaAllocatorFactory | None = None) -> None:
        self._rt = runtime
        self._prims = primitives
        self._user = RegionList()
        self._rts = RegionList()
        self._lock: Mutex | None = None
        #: What API calls acquire: the mutex once `init` has run; before that a
        #: stand-in that raises EFAULT (one attribute load, no None test per call).
        self._api_lock: Mutex = _NotInitialized()
        self.user_base = 0
        self.user_end = 0
        self._user_bounds = RootBounds(False, 0, 0, runtime.is_within_enclave)
        self._rts_bounds = RootBounds(True, 0, 0, runtime.is_within_enclave)
        if meta_allocator is None:
            self._meta: MetaAllocatorLike = MetaAllocator(
                self, meta_area_base=meta_area_base, leaky=leaky_emalloc,
                legacy_2022=emalloc_legacy_2022, merge_right=emalloc_merge_right)
        else:
            self._meta = meta_allocator(self)
        self._ops = EmaOps(runtime, primitives, self._meta, self.meta_touch)

    # ------------------------------------------------------------------ init

    def init(self, user_base: int, user_end: int, *, emalloc_initial: int = 0x10000) -> None:
        """sgx_mm_init: mutex, #PF handler registration, first metadata reserve."""
        self._lock = self._api_lock = self._rt.mutex_create()
        self.user_base, self.user_end = user_base, user_end
        within = self._rt.is_within_enclave
        self._user_bounds = RootBounds(False, user_base, user_end, within)
        self._rts_bounds = RootBounds(True, user_base, user_end, within)
        if not self._rt.register_pfhandler(self.handle_page_fault):
            raise EmmError(errno.EFAULT, "the runtime refused to register the #PF handler "
                           "(another one is installed)")
        lock = self._acquire()
        try:
            self._meta.init(emalloc_initial)
        finally:
            lock.release()

    @property
    def meta_allocator(self) -> MetaAllocatorLike:
        """The metadata allocator (emalloc model) the manager's records come from."""
        return self._meta

    def _acquire(self) -> Mutex:
        lock = self._api_lock
        lock.acquire()
        return lock

    @staticmethod
    def _is_meta(ema: Ema) -> bool:
        """One of the metadata allocator's own reserves (its record is in the meta area)."""
        return ema.is_meta

    # ------------------------------------------------------------- public API

    def alloc(self, addr: int | None, size: int, flags: int,
              handler: FaultHandler | None = None, private: Any = None) -> int:
        """sgx_mm_alloc on the user root; returns the region's address."""
        return self._alloc(False, addr, size, flags, handler, private)

    @_made_by(_dealloc_call, False)
    def dealloc(self, addr: int, size: int) -> None:
        """sgx_mm_dealloc on the user root: trim every committed page of the range and forget its
        regions. EmmError EINVAL (unaligned, or the range does not start in a region), EACCES
        (the manager's metadata), EFAULT (the OS refused the trim).
        """

    @_made_by(_commit_call, False, True)
    def commit(self, addr: int, size: int) -> None:
        """sgx_mm_commit on the user root: EACCEPT the range's uncommitted pages. EmmError EINVAL
        (unaligned, holes, no region), EACCES (a reservation, not writable or not REG), or the
        SGX code of a failing EACCEPT (named in the reason).
        """

    @_made_by(_uncommit_call, False)
    def uncommit(self, addr: int, size: int) -> None:
        """sgx_mm_uncommit on the user root: trim the range's committed pages. EmmError EINVAL
        (unaligned, holes), EACCES (a reservation or metadata), EFAULT (the OS refused).
        """

    @_made_by(_commit_call, False, False)
    def _commit_unguarded(self, addr: int, size: int) -> None:
        """sgx_mm_commit as emalloc makes it on its own reserve (no metadata guard)."""

    def commit_data(self, addr: int, size: int, data_addr: int, prot: int) -> None:
        """sgx_mm_commit_data on the user root: EACCEPTCOPY `data_addr`'s pages into the range's
        uncommitted pages, then give them `prot`. EmmError EINVAL (unaligned, not
        COMMIT_ON_DEMAND, source outside the enclave, X without R), EACCES (a page already
        committed), EFAULT.
        """
        self._commit_data(False, addr, size, data_addr, int(prot))

    def modify_type(self, addr: int, size: int, page_type: int) -> None:
        """sgx_mm_modify_type on the user root: turn one committed REG|RW page into a TCS.
        EmmError EPERM (type not TCS), EINVAL (not one page, no region), EACCES (not committed
        or not REG|RW), EFAULT (the OS refused).
        """
        self._modify_type(False, addr, size, int(page_type))

    @_made_by(_modify_permissions_call, False)
    def modify_permissions(self, addr: int, size: int, prot: int) -> None:
        """sgx_mm_modify_permissions on the user root: new permissions for committed pages.
        EmmError EINVAL (unaligned, uncommitted pages, X without R), EACCES (reservation, not
        REG), EFAULT (the OS refused, e.g. W without R), or an EACCEPT's SGX code.
        """

    # ------------------------------------------------------------ private API

    def mm_alloc(self, addr: int | None, size: int, flags: int,
                 handler: FaultHandler | None = None, private: Any = None) -> int:
        """mm_alloc: `alloc` on the runtime's (rts) root; SYSTEM allowed."""
        return self._alloc(True, addr, size, flags, handler, private)

    @_made_by(_dealloc_call, True)
    def mm_dealloc(self, addr: int, size: int) -> None:
        """mm_dealloc: `dealloc` on the rts root."""

    @_made_by(_commit_call, True, False)
    def mm_commit(self, addr: int, size: int) -> None:
        """mm_commit: `commit` on the rts root."""

    @_made_by(_uncommit_call, True)
    def mm_uncommit(self, addr: int, size: int) -> None:
        """mm_uncommit: `uncommit` on the rts root."""

    def mm_commit_data(self, addr: int, size: int, data_addr: int, prot: int) -> None:
        """mm_commit_data: `commit_data` on the rts root."""
        self._commit_data(True, addr, size, data_addr, int(prot))

    def mm_modify_type(self, addr: int, size: int, page_type: int) -> None:
        """mm_modify_type: `modify_type` on the rts root."""
        self._modify_type(True, addr, size, int(page_type))

    @_made_by(_modify_permissions_call, True)
    def mm_modify_permissions(self, addr: int, size: int, prot: int) -> None:
        """mm_modify_permissions: `modify_permissions` on the rts root."""

    def mm_init_ema(self, addr: int, size: int, flags: int, prot: int,
                    handler: FaultHandler | None = None, private: Any = None) -> None:
        """Record a region the loader already built (all pages committed unless RESERVE)."""
        flags, prot = int(flags), int(prot)
        end = _check_range(addr, size)  # Deviation: unaligned / empty / wrapping
        if not self._rt.is_within_enclave(addr, size):
            raise EmmError(errno.EACCES, f"range {addr:#x}-{end:#x} is not inside the enclave")
        if flags & ~_INIT_EMA_FLAGS:
            raise EmmError(errno.EINVAL, f"flags {alloc_flags_text(flags)} have bits "
                           f"mm_init_ema does not take ({flags & ~_INIT_EMA_FLAGS:#x})")
        if prot & ~PROT_MASK:
            raise EmmError(errno.EINVAL, f"prot {prot:#x} has bits other than R/W/X")
        lock = self._acquire()
        try:
            root, bounds = self._rts, self._rts_bounds
            if not free_at(bounds, addr, size, root.first_overlap(addr, end) is not None):
                raise EmmError(errno.EINVAL, f"range {addr:#x}-{end:#x} is not free on the "
                               "rts root (overlaps a region or the user range)")
            page_type = flags & PAGE_TYPE_MASK
            if not page_type and not flags & RESERVE:
                page_type = PAGE_TYPE_REG  # Deviation: no type means REG (a reserve has none)
            ema = self._ops.new(root, addr, end, flags & ALLOC_FLAGS_MASK, prot | page_type,
                                handler, private)
            if ema is None:
                raise EmmError(errno.ENOMEM, "no metadata memory for the region record")
            if flags & RESERVE:
                return
            if not self._ops.new_bitmap(ema, full=True):
                self._ops.destroy(root, ema)
                raise EmmError(errno.ENOMEM, "no metadata memory for the commit bitmap")
        finally:
            lock.release()

    # ------------------------------------------------------- MetaHost (emalloc)

    def meta_alloc_region(self, addr: int | None, size: int, flags: int) -> int:
        """sgx_mm_alloc as emalloc calls it for a reserve."""
        return self.alloc(addr, size, flags)

    def meta_commit(self, addr: int, size: int) -> None:
        """sgx_mm_commit on a new reserve; like the reference, its result is ignored."""
        with contextlib.suppress(EmmError):
            self._commit_unguarded(addr, size)

    def meta_touch(self, addr: int, size: int) -> None:
        """Metadata bytes were written: commit untouched reserve pages as a #PF would.

        Hot (several calls per region created), hence the cached committed run
        (kept on `EmaOps`, whose callers test it before calling): pages of a
        metadata region are never uncommitted (public calls on them are
        refused), so a run once seen committed stays committed.
        """
        end = addr + size
        ops = self._ops
        if ops.touched_lo <= addr and end <= ops.touched_hi:
            return
        page = addr & _PAGE_BASE
        while page < end:
            ema = self._user.find(page)
            if ema is not None and ema.bitmap is not None:
                if not ema.bitmap.test(page):
                    if not ema.alloc_flags & COMMIT_ON_DEMAND:
                        raise EnclaveAbort(
                            f"metadata write to uncommitted page {page:#x}",
                            cause=f"the manager wrote its metadata to uncommitted page "
                                  f"{page:#x} of {_region(ema)}, which does not commit "
                                  "on demand")
                    self._fault_commit(ema, page)
                if self._is_meta(ema):
                    run = ema.bitmap.run_at(page)
                    if run is not None:
                        ops.touched_lo, ops.touched_hi = run
            page += PAGE_SIZE

    # -------------------------------------------------------------- snapshots

    def regions(self, root: str = "user") -> list[Region]:
        """Frozen snapshots of one root's regions, in address order."""
        if root not in ("user", "rts"):
            raise ValueError(f"root must be 'user' or 'rts', not {root!r}")
        rts = root == "rts"
        lock = self._lock
        if lock is not None:
            lock.acquire()
        try:
            lst = self._rts if rts else self._user
            return [snapshot(e, not rts and self._is_meta(e)) for e in lst]
        finally:
            if lock is not None:
                lock.release()

    def books(self) -> list[tuple[int, int, int, int, tuple[int, ...] | None]]:
        """Every region of both roots as (start, end, alloc_flags, si_flags, commit-run
        bounds as absolute page numbers, or None without a bitmap), by address: the
        cheap view `sgx_emm.books` compares with the hardware (no snapshots)."""
        lock = self._lock
        if lock is not None:
            lock.acquire()
        try:
            out = [(e.start, e.end, e.alloc_flags, e.si_flags,
                    tuple(b >> PAGE_SHIFT for b in e.bitmap.bounds)
                    if e.bitmap is not None else None)
                   for root in (self._user, self._rts) for e in root]
        finally:
            if lock is not None:
                lock.release()
        out.sort()
        return out

    def region_count(self, root: str = "user") -> int:
        """Number of regions of a root, O(1)."""
        return len(self._rts if root == "rts" else self._user)

    # ------------------------------------------------------------------ alloc

    def _alloc(self, rts: bool, addr: int | None, size: int, flags: int,
               handler: FaultHandler | None, private: Any) -> int:
        mode = _decode_alloc_flags(flags, not rts)
        # (one page, the usual size, passes with one small-int comparison)
        if size != PAGE_SIZE and (size <= 0 or size % PAGE_SIZE):  # Deviation: size 0
            raise EmmError(errno.EINVAL, f"size {size:#x} is not positive" if size <= 0 else
                           f"size {size:#x} is not a multiple of the page size")
        shift = mode.shift
        if shift < PAGE_SHIFT or shift > 63:  # Deviation: > 63
            raise EmmError(errno.EINVAL, f"alignment ALIGNED({shift}) is not between "
                           f"the page size (12) and 63")
        align = mode.align
        alloc_flags = mode.alloc_flags
        start = addr or 0
        if start:  # a wanted address (most allocs let the manager choose: no checks)
            if start & (align - 1) or start < 0:
                raise EmmError(errno.EINVAL, f"address {start:#x} is not aligned to {align:#x}"
                               if start >= 0 else f"address {start:#x} is negative")
            if not self._rt.is_within_enclave(start, size):
                raise EmmError(errno.EACCES, f"range {start:#x} + size {size:#x} is not "
                               "inside the enclave")
        lock = self._api_lock
        lock.acquire()
        try:
            root, bounds = (self._rts, self._rts_bounds) if rts else (self._user,
                                                                       self._user_bounds)
            si_flags = mode.si_flags
            node: Ema | None = None
            saved: Sequence[_Saved] = ()  # what re-used reserves were (an alloc at an address)
            found: int | None = None
            if start:
                reused: list[_Saved] = []
                saved = reused
                end = start + size
                overlapped = root.overlapping(start, end)
                if overlapped:
                    node = self._realloc_from_reserve(root, bounds, overlapped, start, end,
                                                      alloc_flags, si_flags, handler, private,
                                                      reused)
                    if node is None and alloc_flags & FIXED:
                        raise EmmError(errno.EEXIST,
                                       self._overlap_problem(bounds, overlapped, start, end))
                elif free_at(bounds, start, size, False):
                    found = start
                elif alloc_flags & FIXED:
                    raise EmmError(errno.EPERM, f"FIXED range {start:#x}-{end:#x} is outside "
                                   f"the {'rts' if rts else 'user'} root's range")
            if node is None:
                if found is None:
                    first, last = root.first, root.last
                    found = find_free_region(root.gaps, None if first is None else first.start,
                                             0 if last is None else last.end, bounds, size,
                                             align)
                    if found is None:
                        raise EmmError(errno.ENOMEM, f"no free range of size {size:#x} "
                                       f"aligned to {align:#x} in the "
                                       f"{'rts' if rts else 'user'} root")
                node = self._ops.new(root, found, found + size, alloc_flags, si_flags,
                                     handler, private)
                if node is None:
                    raise EmmError(errno.ENOMEM, "no metadata memory for the region record")
            if not mode.reserve:
                self._do_alloc(root, node, saved, mode)
            return node.start
        finally:
            lock.release()

    def _do_alloc(self, root: RegionList, node: Ema, saved: Sequence[_Saved],
                  mode: _AllocMode) -> None:
        """ema_do_alloc for a committing region (`mode`: its flags, decoded): ocall,
        COMMIT_NOW EACCEPTs, bitmap; the region goes on failure."""
        ops = self._ops
        if self._rt.alloc_ocall(node.start, node.end - node.start, mode.page_type,
                                mode.alloc_flags):
            ops.destroy(root, node)
            if saved:  # Deviation: a re-used reserve stays in place
                self._restore_reserves(root, saved)
            raise EmmError(errno.EFAULT, ocall_problem(
                self._rt, f"alloc_ocall for {node.start:#x}-{node.end:#x}"))
        commit_now = mode.commit_now
        if commit_now:
            try:
                ops.commit_pages(node.start, node.size, node.si_flags, grow_up=mode.grow_up)
            except BaseException as exc:
                self._record_partial_commit(node, getattr(exc, "accepted", (0, 0)))
                raise
        if not ops.new_bitmap(node, commit_now):
            ops.destroy(root, node)
            raise EmmError(errno.ENOMEM, "no metadata memory for the commit bitmap")

    def _overlap_problem(self, bounds: RootBounds, overlapped: list[Ema], start: int,
                         end: int) -> str:
        """Why a FIXED range over existing regions could not reuse them (cold path)."""
        prev_end = overlapped[0].start
        for ema in overlapped:
            if not ema.alloc_flags & RESERVE:
                return f"range {start:#x}-{end:#x} overlaps {_region(ema)}, not a reservation"
            if not self._can_reuse(ema):
                return (f"range {start:#x}-{end:#x} overlaps {_region(ema)}, which holds the "
                        "manager's metadata")
            if ema.start != prev_end:
                return (f"range {start:#x}-{end:#x} overlaps reservations with a gap at "
                        f"{prev_end:#x}-{ema.start:#x}")
            prev_end = ema.end
        if not bounds.in_root_range(start, end - start):
            return f"range {start:#x}-{end:#x} leaves the root's range"
        return (f"range {start:#x}-{end:#x} overlaps reservations that could not be split "
                "(no metadata memory)")

    def _record_partial_commit(self, node: Ema, accepted: tuple[int, int]) -> None:
        """Deviation: something unwound through COMMIT_NOW's EACCEPT loop.

        The reference longjmps out and leaves a region without a bitmap; we give
        it one holding exactly the pages accepted so far, so the region stays
        usable (commit, uncommit, dealloc) and the books match the EPCM. If the
        metadata cannot be had now, the bitmap is kept without its C-side blocks.
        """
        ok = False
        with contextlib.suppress(Exception):
            ok = self._ops.new_bitmap(node, full=False)
        if not ok or node.bitmap is None:
            node.bitmap = CommitBitmap()
        lo, hi = accepted
        if lo < hi:
            node.bitmap.set_range(lo, hi)

    def _can_reuse(self, ema: Ema) -> bool:
        """can_erealloc: the allocator's own reserves only while it adds one."""
        return self._meta.adding_reserve or not self._is_meta(ema)

    def _realloc_from_reserve(self, root: RegionList, bounds: RootBounds, overlapped: list[Ema],
                              start: int, end: int, alloc_flags: int, si_flags: int,
                              handler: FaultHandler | None, private: Any,
                              saved: list[_Saved]) -> Ema | None:
        """ema_realloc_from_reserve_range: carve [start, end) out of RESERVE regions."""
        prev_end = overlapped[0].start
        for ema in overlapped:
            if not self._can_reuse(ema) or ema.start != prev_end or not (
                    ema.alloc_flags & RESERVE):
                return None
            prev_end = ema.end
        if not bounds.in_root_range(start, end - start):  # Deviation: stay in the root's range
            return None
        saved.extend((e.start, e.end, e.alloc_flags, e.si_flags, e.handler, e.private)
                     for e in overlapped)
        ops = self._ops
        first, last = overlapped[0], overlapped[-1]
        try:
            if start > first.start:
                upper = ops.split(root, first, start, False)
                if last is first:
                    last = upper
                first = upper
            if end < last.end:
                ops.split(root, last, end, False)
        except EmmError:
            saved.clear()
            return None
        cur: Ema | None = first
        while cur is not None and cur.start < end:
            nxt = cur.next
            ops.destroy(root, cur)
            cur = nxt
        node = ops.new(root, start, end, alloc_flags, si_flags, handler, private)
        if node is None:
            saved.clear()
        return node

    def _restore_reserves(self, root: RegionList, saved: Sequence[_Saved]) -> None:
        """Put back the reserves an alloc carved up before its ocall failed."""
        lo, hi = saved[0][0], saved[-1][1]
        for ema in root.overlapping(lo, hi):
            self._ops.destroy(root, ema)
        fresh = []
        for s, e, alloc_flags, si_flags, handler, private in saved:
            ema = Ema(s, e, alloc_flags, si_flags, handler, private)
            root.insert(ema)
            fresh.append(ema)
        for ema in fresh:
            payload = self._meta.malloc(SIZEOF_EMA)
            if payload is None:
                root.remove(ema)
            else:
                ema.payload = payload
                ema.is_meta = self._meta.in_meta_area(payload)
                self.meta_touch(payload, SIZEOF_EMA)

    # ----------------------------------------------------- range-based calls

    def _covered(self, root: RegionList, start: int, end: int, holes: bool,
                 guard_meta: bool, check: _RegionCheck | None) -> Sequence[Ema]:
        """The regions a range call acts on, checked region by region in the reference's order.

        Positional arguments (a keyword call is not inlined by the interpreter,
        and every range call makes this one): `holes` refuses gaps between the
        regions, `guard_meta` refuses the allocator's own regions, `check` is
        the call's own test of each region.

        EINVAL: nothing overlaps; the range starts in free space (Deviation).
        Then, per region in address order: with `holes`, a gap before it is
        EINVAL; under a public call, a metadata region is EACCES (Deviation);
        then the call's own `check`. With `holes`, a range running past the
        last region is EINVAL once every region has passed.
        """
        first = root.by_start.get(start)
        overlapped: Sequence[Ema]
        if first is not None and end <= first.end:
            # the usual call: inside the region it names, found without a search;
            # one region holding the whole range has no hole to look for
            overlapped = (first,)
            holes = False
        else:
            overlapped = root.overlapping(start, end)
            if not overlapped:
                raise EmmError(errno.EINVAL, f"no region overlaps {start:#x}-{end:#x}")
            first = overlapped[0]
            if first.start > start:
                raise EmmError(errno.EINVAL, f"range {start:#x}-{end:#x} starts in free "
                               f"space (the first region starts at {first.start:#x})")
        prev_end = first.start
        for ema in overlapped:
            if holes and ema.start != prev_end:
                raise EmmError(errno.EINVAL, f"range {start:#x}-{end:#x} has a hole at "
                               f"{prev_end:#x}-{ema.start:#x}")
            if guard_meta and ema.is_meta:
                raise _metadata_refusal(ema)
            if check is not None:
                refusal = check(ema, start, end)
                if refusal is not None:
                    raise EmmError(*refusal)
            prev_end = ema.end
        if holes and prev_end < end:
            raise EmmError(errno.EINVAL, f"range {start:#x}-{end:#x} runs past the last "
                           f"region, which ends at {prev_end:#x}")
        return overlapped

    def _readable_for_trim(self, root: RegionList, ema: Ema, lo: int, hi: int) -> Ema:
        """A PROT_NONE region gets READ first (EACCEPT needs a readable mapping).

        Returns the record now covering [lo, hi). Deviation: the reference goes
        on with its stale pointer to the unsplit lower part; and a TCS page
        goes straight to TRIM. Errors here are ignored, as in the reference.
        """
        if ema.si_flags & PROT_MASK != PROT_NONE or (
                ema.si_flags & PAGE_TYPE_MASK == PAGE_TYPE_TCS):
            return ema
        with contextlib.suppress(EmmError):
            self._ops.modify_permissions(root, ema, lo, hi, PROT_READ)
        found = root.find(lo)
        assert found is not None
        return found

    def _modify_type(self, rts: bool, addr: int, size: int, page_type: int) -> None:
        if page_type != PAGE_TYPE_TCS:
            raise EmmError(errno.EPERM, f"page type {page_type:#x} is not PAGE_TYPE_TCS "
                           "(the only type a page can be changed to)")
        if size != PAGE_SIZE:
            raise EmmError(errno.EINVAL, f"size {size:#x} is not one page (a TCS is one "
                           "page)")
        end = _check_range(addr, size)
        lock = self._api_lock
        lock.acquire()
        try:
            root = self._rts if rts else self._user
            overlapped = self._covered(root, addr, end, False, not rts, None)
            self._ops.change_to_tcs(root, overlapped[0], addr)
        finally:
            lock.release()

    def _commit_data(self, rts: bool, addr: int, size: int, data: int, prot: int) -> None:
        end = _check_range(addr, size)
        if data < 0 or data & _PAGE_MASK:
            raise EmmError(errno.EINVAL, f"data address {data:#x} is not page aligned"
                           if data >= 0 else f"data address {data:#x} is negative")
        if prot & ~PROT_MASK:
            raise EmmError(errno.EINVAL, f"prot {prot:#x} has bits other than R/W/X")
        if prot & PROT_EXEC and not prot & PROT_READ:  # Deviation: X without R
            raise EmmError(errno.EINVAL, f"prot {prot_letters(prot)} has X without R")
        if prot & PROT_WRITE and not prot & PROT_READ:  # Deviation: W without R
            raise EmmError(errno.EINVAL, f"prot {prot_letters(prot)} has W without R "
                           "(EACCEPTCOPY refuses such a SECINFO)")
        if not self._rt.is_within_enclave(data, size):
            raise EmmError(errno.EINVAL, f"data {data:#x} + size {size:#x} is not inside "
                           "the enclave (EACCEPTCOPY copies from enclave memory)")
        lock = self._api_lock
        lock.acquire()
        try:
            root = self._rts if rts else self._user
            overlapped = self._covered(root, addr, end, True, not rts, _check_commit_data)
            ops = self._ops
            try:
                for ema in overlapped:
                    lo, hi = _clip(addr, end, ema)
                    ops.commit_data(ema, lo, hi, data + lo - addr, prot)
                for ema in overlapped:
                    ops.modify_permissions(root, ema, addr, end, prot)
            except EmmError:
                self._roll_back_commit(root, addr, end)
                raise
        finally:
            lock.release()

    def _roll_back_commit(self, root: RegionList, addr: int, end: int) -> None:
        """Deviation: a failed commit_data trims what the range now holds.

        Every page of [addr, end) was uncommitted when the call began; pages it
        copied (or that faults committed meanwhile) are trimmed again exactly as
        `uncommit` trims them, so no
        accepted page outlives the call unrecorded or with a prot the region does
        not have (the reference leaves them). If the trim's own ocall fails, the
        pages stay committed and recorded.
        """
        for ema in root.overlapping(addr, end):
            if ema.bitmap is None:
                continue
            lo, hi = _clip(addr, end, ema)
            if not ema.bitmap.any_set(lo, hi):
                continue
            prot = ema.si_flags & PROT_MASK
            with contextlib.suppress(EmmError):
                target = self._readable_for_trim(root, ema, lo, hi)
                self._ops.uncommit_real(target, lo, hi, prot)

    # ---------------------------------------------------------- fault handler

    def handle_page_fault(self, pfinfo: PfInfo) -> int:
        """sgx_mm_enclave_pfhandler: CONTINUE_SEARCH / CONTINUE_EXECUTION, or abort."""
        lock = self._lock
        if lock is None:
            return EXCEPTION_CONTINUE_SEARCH
        lock.acquire()
        held = True
        try:
            page = pfinfo.maddr & _PAGE_BASE
            ema = self._user.find(page) or self._rts.find(page)
            if ema is None:
                return EXCEPTION_CONTINUE_SEARCH
            handler = ema.handler
            if handler is not None:
                private = ema.private
                held = False
                lock.release()
                return handler(pfinfo, private)
            # the #PF handler's permission test: only the R/W bits, from PFEC.W/R
            allowed = ema.si_flags & (PROT_WRITE if pfinfo.errcd & 0x2 else PROT_READ)
            bm = ema.bitmap
            if bm is not None and bm.test(page):  # ema_page_committed
                return EXCEPTION_CONTINUE_EXECUTION if allowed else EXCEPTION_CONTINUE_SEARCH
            if ema.alloc_flags & COMMIT_ON_DEMAND:
                if not allowed:
                    return EXCEPTION_CONTINUE_SEARCH
                self._fault_commit(ema, page)
                return EXCEPTION_CONTINUE_EXECUTION
            raise EnclaveAbort(
                f"#PF at {pfinfo.maddr:#x} in a region that cannot fault",
                cause=(f"a #PF ({'write' if pfinfo.rw else 'read'}) at {pfinfo.maddr:#x} hit "
                       f"uncommitted page {page:#x} of {_region(ema)}, which does not commit "
                       "on demand"))
        finally:
            if held:
                lock.release()

    def _fault_commit(self, ema: Ema, page: int) -> None:
        """Commit the uncommitted `page` of `ema` (it has a bitmap) as its #PF asks."""
        ops = self._ops
        bm = ema.bitmap
        assert bm is not None
        # clipped to the region: its own ints where the page starts or ends it (see
        # commit_page)
        lo, hi = _clip(page, page + PAGE_SIZE, ema)
        rc = ops.commit_page(bm, lo, hi)
        if rc:
            raise EnclaveAbort(
                f"EACCEPT of faulting page {page:#x} failed",
                cause=(f"{sgx_result_name(rc)} ({rc}) from EACCEPT at {page:#x} while "
                       f"committing it on demand in {_region(ema)}: the OS did not EAUG "
                       "the page the fault asked for"))
        ops.match_region_prot(ema, page)  # Deviation: the page gets the region's prot


__all__ = ["EnclaveMemoryManager", "Region"]

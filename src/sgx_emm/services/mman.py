"""POSIX memory mapping inside the enclave (`enc.mman`), on the manager's public API.

Library OSes (Gramine, Occlum) give enclave code mmap/munmap/mprotect/madvise;
on EDMM hardware they are built on the manager the way this module builds them:

- `mmap` of anonymous memory: PROT_READ|PROT_WRITE becomes a COMMIT_ON_DEMAND
  region (each page committed by its first touch; MAP_POPULATE commits now),
  PROT_NONE a RESERVE region, any other protection COMMIT_NOW followed by
  `modify_permissions` (the manager can change the permissions of committed
  pages only); as on x86, write or execute permission implies read.
- MAP_FIXED replaces whatever this module mapped in the range (munmap first);
  MAP_FIXED_NOREPLACE fails with EEXIST instead; a hint without either is tried
  first, then the manager places the mapping anywhere.
- `munmap` and `mprotect` act on any page range, splitting mappings as needed;
  unmapping a range that holds nothing is not an error. mprotect of on-demand
  pages commits them first (their contents must survive the change).
- `madvise(MADV_DONTNEED)` uncommits (the next touch reads zeros, as Linux's
  anonymous memory does); MADV_WILLNEED commits.

Errors are `OSError` with the errno POSIX names: EINVAL (bad alignment, length,
flags or prot), ENOMEM (no room, or a range not mapped), EEXIST
(MAP_FIXED_NOREPLACE over a mapping), EACCES (W^X: write and execute together
while `wx` is enforced), ENODEV (file mappings: there are no files here).
Arguments are checked before anything changes, so a refused call leaves the
mappings as they were.
"""

from __future__ import annotations

import bisect
import errno
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sgx_emm.errors import EmmError
from sgx_emm.flags import (
    COMMIT_NOW,
    COMMIT_ON_DEMAND,
    FIXED,
    PAGE_SIZE,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_READ_WRITE,
    PROT_WRITE,
    RESERVE,
)
from sgx_emm.services.entry import current

if TYPE_CHECKING:
    from sgx_emm.services.host import Host

MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_NORESERVE = 0x4000
MAP_POPULATE = 0x8000
MAP_FIXED_NOREPLACE = 0x100000
_KNOWN_FLAGS = (MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | MAP_NORESERVE
                | MAP_POPULATE | MAP_FIXED_NOREPLACE)

MADV_NORMAL = 0
MADV_WILLNEED = 3
MADV_DONTNEED = 4

_RWX = PROT_READ | PROT_WRITE | PROT_EXEC


@dataclass(frozen=True, slots=True)
class Mapping:
    """One run of pages mapped with the same protection.

    `lazy`: its pages are committed on first touch (an on-demand region, mapped
    read-write; it stays one after mprotect, so MADV_DONTNEED works on it);
    `reserved`: a PROT_NONE mapping that was never committed (a RESERVE region).
    """

    start: int
    end: int
    prot: int
    lazy: bool
    reserved: bool

    def part(self, start: int, end: int) -> Mapping:
        return Mapping(max(start, self.start), min(end, self.end), self.prot, self.lazy,
                       self.reserved)


def _fail(err: int, message: str) -> OSError:
    return OSError(err, message)


class Mman:
    """mmap, munmap, mprotect and madvise; see the module doc.

    `wx=True` refuses any mapping or protection change that would make pages
    writable and executable at once (EACCES).
    """

    def __init__(self, enc: Host, *, wx: bool = False) -> None:
        self._enc = enc
        self.wx = wx
        self._lock = threading.RLock()
        self._starts: list[int] = []
        self._maps: dict[int, Mapping] = {}

    # ------------------------------------------------------------ queries
    def mappings(self) -> list[Mapping]:
        """The live mappings, in address order."""
        with self._lock:
            return [self._maps[s] for s in self._starts]

    def _overlapping(self, start: int, end: int) -> list[Mapping]:
        i = bisect.bisect_right(self._starts, start) - 1
        i = max(i, 0)
        out = []
        while i < len(self._starts):
            m = self._maps[self._starts[i]]
            if m.start >= end:
                break
            if m.end > start:
                out.append(m)
            i += 1
        return out

    def _covered(self, start: int, end: int) -> list[Mapping]:
        """The mappings of [start, end), which must be mapped throughout (else ENOMEM)."""
        parts = self._overlapping(start, end)
        at = start
        for m in parts:
            if m.start > at:
                break
            at = m.end
        if at < end:
            raise _fail(errno.ENOMEM, f"[{start:#x}, {end:#x}) is not mapped throughout "
                        f"(nothing at {at:#x})")
        return parts

    # ------------------------------------------------------------ books
    def _put(self, m: Mapping) -> None:
        bisect.insort(self._starts, m.start)
        self._maps[m.start] = m

    def _cut(self, start: int, end: int) -> None:
        """Forget [start, end) in the books, keeping the parts of mappings outside it."""
        for m in self._overlapping(start, end):
            del self._maps[m.start]
            self._starts.pop(bisect.bisect_left(self._starts, m.start))
            if m.start < start:
                self._put(Mapping(m.start, start, m.prot, m.lazy, m.reserved))
            if m.end > end:
                self._put(Mapping(end, m.end, m.prot, m.lazy, m.reserved))

    # ------------------------------------------------------------ checks
    def _check_prot(self, prot: int) -> int:
        if isinstance(prot, bool) or not isinstance(prot, int):
            raise TypeError(f"prot: expected an int, got {type(prot).__name__}")
        if prot & ~_RWX:
            raise _fail(errno.EINVAL, f"prot {prot:#x} has bits other than "
                        "PROT_READ|PROT_WRITE|PROT_EXEC")
        if self.wx and prot & PROT_WRITE and prot & PROT_EXEC:
            raise _fail(errno.EACCES, "W^X is enforced: pages cannot be writable and "
                        "executable at once")
        return prot | PROT_READ if prot else PROT_NONE

    @staticmethod
    def _range(addr: int, length: int, what: str) -> tuple[int, int]:
        for name, value in (("addr", addr), ("length", length)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{what}: {name} must be an int, got {type(value).__name__}")
        if addr % PAGE_SIZE:
            raise _fail(errno.EINVAL, f"{what}: addr {addr:#x} is not page aligned")
        if length <= 0:
            raise _fail(errno.EINVAL, f"{what}: length {length} must be positive")
        end = addr + -(-length // PAGE_SIZE) * PAGE_SIZE
        if addr < 0 or end > 1 << 64:
            raise _fail(errno.ENOMEM, f"{what}: [{addr:#x}, +{length:#x}) leaves the "
                        "address space")
        return addr, end

    # ------------------------------------------------------------ mmap
    def mmap(self, addr: int | None, length: int, prot: int,
             flags: int = MAP_PRIVATE | MAP_ANONYMOUS, fd: int = -1, offset: int = 0) -> int:
        """Map `length` bytes (rounded up to pages) of zeroed memory; returns the address."""
        current(self._enc, "mman.mmap")
        if isinstance(length, bool) or not isinstance(length, int):
            raise TypeError(f"mmap: length must be an int, got {type(length).__name__}")
        if isinstance(flags, bool) or not isinstance(flags, int):
            raise TypeError(f"mmap: flags must be an int, got {type(flags).__name__}")
        if length <= 0:
            raise _fail(errno.EINVAL, f"mmap: length {length} must be positive")
        if flags & ~_KNOWN_FLAGS:
            raise _fail(errno.EINVAL, f"mmap: unknown flags {flags & ~_KNOWN_FLAGS:#x}")
        if bool(flags & MAP_SHARED) == bool(flags & MAP_PRIVATE):
            raise _fail(errno.EINVAL, "mmap: give exactly one of MAP_SHARED and MAP_PRIVATE")
        if not flags & MAP_ANONYMOUS or fd != -1 or offset:
            raise _fail(errno.ENODEV, "mmap: only anonymous mappings (MAP_ANONYMOUS, fd -1, "
                        "offset 0): the enclave has no files")
        prot = self._check_prot(prot)
        fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)
        size = -(-length // PAGE_SIZE) * PAGE_SIZE
        if fixed and addr is None:
            raise _fail(errno.EINVAL, "mmap: MAP_FIXED needs an address")
        if addr is not None:
            start, end = self._range(addr if fixed else addr & ~(PAGE_SIZE - 1), size, "mmap")
        with self._lock:
            if fixed:
                if start < self._enc.user_base or end > self._enc.user_end:
                    raise _fail(errno.ENOMEM, f"mmap: [{start:#x}, {end:#x}) is outside the "
                                "range the enclave maps in")
                if flags & MAP_FIXED_NOREPLACE and self._overlapping(start, end):
                    raise _fail(errno.EEXIST, f"mmap: MAP_FIXED_NOREPLACE and "
                                f"[{start:#x}, {end:#x}) holds a mapping")
                if flags & MAP_FIXED:
                    self._unmap(start, end)
            got = self._map(addr if addr is None or fixed else start, size, prot,
                            bool(fixed), bool(flags & MAP_POPULATE))
            return got

    def _map(self, addr: int | None, size: int, prot: int, fixed: bool, populate: bool) -> int:
        emm = self._enc.emm
        if prot == PROT_NONE:
            mode, lazy = RESERVE, False
        elif prot == PROT_READ_WRITE and not populate:
            mode, lazy = COMMIT_ON_DEMAND, True
        else:
            mode, lazy = COMMIT_NOW, False
        try:
            start = emm.alloc(addr, size, mode | (FIXED if fixed else 0))
        except EmmError as e:
            if e.errno == errno.EEXIST:
                raise _fail(errno.ENOMEM, f"mmap: [{addr:#x}, +{size:#x}) holds memory "
                            "this module did not map") from None
            raise _fail(e.errno or errno.ENOMEM, f"mmap: {e}") from None
        try:
            if mode == COMMIT_NOW and prot != PROT_READ_WRITE:
                emm.modify_permissions(start, size, prot)
        except EmmError as e:
            emm.dealloc(start, size)
            raise _fail(e.errno or errno.ENOMEM, f"mmap: {e}") from None
        self._put(Mapping(start, start + size, prot, lazy, mode == RESERVE))
        return start

    # ------------------------------------------------------------ munmap
    def munmap(self, addr: int, length: int) -> None:
        """Unmap every page of the range (pages not mapped are skipped)."""
        current(self._enc, "mman.munmap")
        start, end = self._range(addr, length, "munmap")
        with self._lock:
            self._unmap(start, end)

    def _unmap(self, start: int, end: int) -> None:
        emm = self._enc.emm
        for m in self._overlapping(start, end):
            part = m.part(start, end)
            try:
                emm.dealloc(part.start, part.end - part.start)
            except EmmError as e:
                raise _fail(e.errno or errno.EINVAL, f"munmap: {e}") from None
            self._cut(part.start, part.end)

    # ------------------------------------------------------------ mprotect
    def mprotect(self, addr: int, length: int, prot: int) -> None:
        """Change the protection of mapped pages; ENOMEM if part of the range is unmapped."""
        current(self._enc, "mman.mprotect")
        start, end = self._range(addr, length, "mprotect")
        prot = self._check_prot(prot)
        emm = self._enc.emm
        with self._lock:
            for m in self._covered(start, end):
                part = m.part(start, end)
                if part.prot == prot:
                    continue
                size = part.end - part.start
                try:
                    if part.reserved:
                        # never committed: nothing to keep, map it anew
                        emm.dealloc(part.start, size)
                        self._cut(part.start, part.end)
                        self._map(part.start, size, prot, True, False)
                        continue
                    if part.lazy and part.prot == PROT_READ_WRITE:
                        # contents must survive; only a mapping still read-write can
                        # have untouched pages (the first mprotect committed them all)
                        emm.commit(part.start, size)
                    emm.modify_permissions(part.start, size, prot)
                except EmmError as e:
                    raise _fail(e.errno or errno.ENOMEM, f"mprotect: {e}") from None
                self._cut(part.start, part.end)
                self._put(Mapping(part.start, part.end, prot, part.lazy, False))

    # ------------------------------------------------------------ madvise
    def madvise(self, addr: int, length: int, advice: int) -> None:
        """MADV_DONTNEED (uncommit; mappings made read-write), MADV_WILLNEED (commit),
        MADV_NORMAL (nothing)."""
        current(self._enc, "mman.madvise")
        start, end = self._range(addr, length, "madvise")
        if advice not in (MADV_NORMAL, MADV_WILLNEED, MADV_DONTNEED):
            raise _fail(errno.EINVAL, f"madvise: advice {advice!r} is not MADV_NORMAL, "
                        "MADV_WILLNEED or MADV_DONTNEED")
        emm = self._enc.emm
        with self._lock:
            parts = [m.part(start, end) for m in self._covered(start, end)]
            if advice == MADV_DONTNEED:
                bad = [p for p in parts if not p.reserved and not p.lazy]
                if bad:
                    raise _fail(errno.EINVAL, f"madvise: MADV_DONTNEED at {bad[0].start:#x}: "
                                "only mappings made read-write (committed on demand) can be "
                                "dropped; their pages come back as zeros on the next touch")
            for p in parts:
                if p.reserved or advice == MADV_NORMAL:
                    continue
                try:
                    if advice == MADV_DONTNEED:
                        emm.uncommit(p.start, p.end - p.start)
                    elif p.lazy:
                        emm.commit(p.start, p.end - p.start)
                except EmmError as e:
                    raise _fail(e.errno or errno.ENOMEM, f"madvise: {e}") from None

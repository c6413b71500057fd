"""The process's address space: VMAs and page tables.

One `AddressSpace` per simulated process. VMAs are kept address-ordered in a
`VmaIndex` (O(log n) lookup, range walks touch only overlapped VMAs); page
tables are two-level like x86's last levels: a dict of 512-entry `array('q')`
chunks keyed by `page >> 9`, so memory grows with touched 2 MiB areas, not with
the address-space size. A PTE packs `slot << 3 | prot`; 0 is "not present" (a
PROT_NONE mapping has no present PTE, as on x86). A present PTE is always
readable: x86 has no write-only or execute-only pages.

The EPCM half of the access check lives in cpu.py; this module answers the
page-table half and computes nothing else.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sgx_emm.flags import PAGE_SHIFT

CHUNK_SHIFT = 9
CHUNK_PAGES = 1 << CHUNK_SHIFT
CHUNK_MASK = CHUNK_PAGES - 1
PTE_PROT_MASK = 0x7
_EMPTY_CHUNK = array("q", bytes(8 * CHUNK_PAGES))


@dataclass(slots=True)
class Vma:
    """[start, end) mapped from `owner` (an enclave fd) with `prot`."""

    start: int
    end: int
    prot: int
    owner: Any

    def __repr__(self) -> str:
        return f"Vma({self.start:#x}-{self.end:#x}, prot={self.prot})"


def covers(vmas: list[Vma], start: int, end: int) -> bool:
    """True if `vmas` (address-ordered, as `vmas_overlapping` gives them for [start,
    end)) cover [start, end) without a hole."""
    cursor = start
    for vma in vmas:
        if vma.start > cursor:
            return False
        cursor = vma.end
    return cursor >= end


def pte_prot(vma_prot: int) -> int:
    """PTE permissions a VMA's prot gives: any access right implies read on x86."""
    return (vma_prot | 0x1) & PTE_PROT_MASK if vma_prot else 0


#: VMAs per sublist of a `VmaIndex`: split at twice this, merged below half
_LOAD = 512


class VmaIndex:
    """Non-overlapping VMAs ordered by start: sorted sublists of about `_LOAD` starts,
    their VMAs in step, and each sublist's last start, as in a B-tree's last two
    levels. Every operation is one Python call whose searches are C bisects: the
    kernel looks VMAs up on every mmap, mprotect and first touch.

    Complexity: add, remove, `overlapping` O(log n + LOAD + k) (k VMAs returned);
    memory one slot per VMA and three per sublist."""

    __slots__ = ("_starts", "_vmas", "_maxes")

    def __init__(self) -> None:
        self._starts: list[list[int]] = []
        self._vmas: list[list[Vma]] = []
        self._maxes: list[int] = []

    def __iter__(self) -> Iterator[Vma]:
        for sub in self._vmas:
            yield from sub

    def add(self, vma: Vma) -> None:
        """Insert `vma`, which overlaps none of the others."""
        start = vma.start
        maxes = self._maxes
        if not maxes:
            self._starts.append([start])
            self._vmas.append([vma])
            maxes.append(start)
            return
        pos = bisect_right(maxes, start)
        if pos == len(maxes):           # past every start: append to the last sublist
            pos -= 1
            self._starts[pos].append(start)
            self._vmas[pos].append(vma)
            maxes[pos] = start
        else:
            starts = self._starts[pos]
            i = bisect_right(starts, start)
            starts.insert(i, start)
            self._vmas[pos].insert(i, vma)
        if len(self._starts[pos]) > 2 * _LOAD:
            self._split(pos)

    def _split(self, pos: int) -> None:
        starts, vmas = self._starts[pos], self._vmas[pos]
        self._starts[pos:pos + 1] = [starts[:_LOAD], starts[_LOAD:]]
        self._vmas[pos:pos + 1] = [vmas[:_LOAD], vmas[_LOAD:]]
        self._maxes[pos:pos + 1] = [starts[_LOAD - 1], starts[-1]]

    def remove(self, vma: Vma) -> None:
        """Remove `vma` (a VMA of the index). Raises: ValueError if it is not one."""
        start = vma.start
        maxes = self._maxes
        pos = bisect_left(maxes, start)
        starts = self._starts[pos] if pos < len(maxes) else []
        i = bisect_left(starts, start)
        if i == len(starts) or self._vmas[pos][i] is not vma:
            raise ValueError(f"{vma!r} is not in the index")
        del starts[i]
        del self._vmas[pos][i]
        if starts:
            maxes[pos] = starts[-1]
            if len(starts) < _LOAD // 2 and len(maxes) > 1:     # merge with a neighbour
                left = pos - 1 if pos else pos
                self._starts[left:left + 2] = [self._starts[left] + self._starts[left + 1]]
                self._vmas[left:left + 2] = [self._vmas[left] + self._vmas[left + 1]]
                self._maxes[left:left + 2] = [self._maxes[left + 1]]
                if len(self._starts[left]) > 2 * _LOAD:
                    self._split(left)
        else:
            del self._starts[pos]
            del self._vmas[pos]
            del maxes[pos]

    def overlapping(self, start: int, end: int) -> list[Vma]:
        """VMAs meeting [start, end), in address order; for an empty range (end <=
        start), the VMA holding `start`, if any. One walk down from the last VMA
        starting before the range's end: VMAs do not overlap, so the first one
        ending at or before `start`, or starting at or before it, is the last to
        look at."""
        key = end if end > start else start + 1
        maxes = self._maxes
        pos = bisect_left(maxes, key)       # the first sublist reaching `key`
        if pos == len(maxes):
            if not pos:
                return []
            pos -= 1
        i = bisect_left(self._starts[pos], key)     # starts[:i] begin before `key`
        out: list[Vma] = []
        while True:
            vmas = self._vmas[pos]
            while i:
                i -= 1
                vma = vmas[i]
                if vma.end <= start:
                    out.reverse()
                    return out
                out.append(vma)
                if vma.start <= start:
                    out.reverse()
                    return out
            if not pos:
                out.reverse()
                return out
            pos -= 1
            i = len(self._vmas[pos])


class AddressSpace:
    """VMAs and page tables of one process."""

    def __init__(self) -> None:
        self._vmas = VmaIndex()
        self.chunks: dict[int, array[int]] = {}
        self._last: Vma | None = None   # like the kernel's per-mm VMA cache

    # --- VMAs ---
    def find_vma(self, addr: int) -> Vma | None:
        """The VMA containing addr. O(log n); O(1) when it is the last one found."""
        last = self._last
        if last is not None and last.start <= addr < last.end:
            return last
        found = self._vmas.overlapping(addr, addr)
        if found:
            self._last = found[0]
            return found[0]
        return None

    def vmas_overlapping(self, start: int, end: int) -> list[Vma]:
        """VMAs meeting [start, end), in address order. O(log n + k); O(1) when the
        last VMA found holds the whole range (a syscall on one mapping, the usual
        case, then walks no tree)."""
        last = self._last
        if last is not None and last.start <= start < last.end and end <= last.end:
            return [last]
        return self._vmas.overlapping(start, end)

    def all_vmas(self) -> list[Vma]:
        return list(self._vmas)

    def is_covered(self, start: int, end: int) -> bool:
        """True if VMAs cover [start, end) without a hole."""
        return covers(self.vmas_overlapping(start, end), start, end)

    def protect(self, vma: Vma, start: int, end: int, prot: int) -> None:
        """Give [start, end), a part of `vma` (a VMA of this space), the protection
        `prot`, splitting `vma` at the ends as needed (mprotect_fixup). A `vma`
        lying wholly inside the range changes in place: the same VMA a carve and
        an insert would rebuild, without two tree updates. PTEs are the caller's."""
        if vma.start == start and vma.end == end:
            vma.prot = prot
            return
        for piece in self.carve(start, end):
            self._vmas.add(Vma(piece.start, piece.end, prot, piece.owner))

    def carve(self, start: int, end: int) -> list[Vma]:
        """Remove [start, end) from the VMA list, splitting at the ends; returns the
        removed pieces (what munmap and MAP_FIXED drop)."""
        removed: list[Vma] = []
        self._last = None
        for vma in self.vmas_overlapping(start, end):
            self._vmas.remove(vma)
            if vma.start < start:
                self._vmas.add(Vma(vma.start, start, vma.prot, vma.owner))
            if vma.end > end:
                self._vmas.add(Vma(end, vma.end, vma.prot, vma.owner))
            removed.append(Vma(max(vma.start, start), min(vma.end, end), vma.prot, vma.owner))
        return removed

    def insert(self, vma: Vma) -> None:
        """Add a VMA over a range that `carve` cleared; merges nothing (Linux may merge,
        nothing observable here depends on it). It becomes the `find_vma` cache: the
        first touch of a new mapping looks it up next."""
        self._vmas.add(vma)
        self._last = vma

    # --- page tables ---
    def pte(self, page: int) -> int:
        chunk = self.chunks.get(page >> CHUNK_SHIFT)
        return chunk[page & CHUNK_MASK] if chunk is not None else 0

    def set_pte(self, page: int, slot: int, prot: int) -> None:
        prot = (prot | 0x1) & PTE_PROT_MASK if prot else 0     # pte_prot, inline
        if not prot:
            self.clear_pte(page)
            return
        key = page >> CHUNK_SHIFT
        chunk = self.chunks.get(key)
        if chunk is None:
            chunk = self.chunks[key] = array("q", _EMPTY_CHUNK)
        chunk[page & CHUNK_MASK] = (slot << 3) | prot

    def clear_pte(self, page: int) -> None:
        chunk = self.chunks.get(page >> CHUNK_SHIFT)
        if chunk is not None:
            chunk[page & CHUNK_MASK] = 0

    def zap(self, start: int, end: int) -> None:
        """Drop every PTE of [start, end) (byte addresses, page aligned)."""
        first = start >> PAGE_SHIFT
        if (end >> PAGE_SHIFT) - first == 1:    # one page (a one-page mmap or trim): its PTE
            chunk = self.chunks.get(first >> CHUNK_SHIFT)
            if chunk is not None:
                chunk[first & CHUNK_MASK] = 0
            return
        self._walk(first, end >> PAGE_SHIFT, None)

    def reprotect(self, start: int, end: int, prot: int) -> None:
        """Give present PTEs of [start, end) the permissions of `prot` (mprotect)."""
        self._walk(start >> PAGE_SHIFT, end >> PAGE_SHIFT, pte_prot(prot))

    def _walk(self, first: int, last: int, prot: int | None) -> None:
        """Zap (prot None or 0) or re-protect present PTEs of pages [first, last)."""
        if first >= last:
            return
        key = first >> CHUNK_SHIFT
        if key == (last - 1) >> CHUNK_SHIFT:    # one chunk (a call on a few pages): no key walk
            chunk = self.chunks.get(key)
            if chunk is not None:
                self._walk_chunk(key, chunk, first - (key << CHUNK_SHIFT),
                                 last - (key << CHUNK_SHIFT), prot)
            return
        keys = range(key, ((last - 1) >> CHUNK_SHIFT) + 1)
        if len(keys) > len(self.chunks):
            keys = sorted(k for k in self.chunks if keys.start <= k < keys.stop)  # type: ignore[assignment]
        for key in keys:
            chunk = self.chunks.get(key)
            if chunk is None:
                continue
            lo = max(first, key << CHUNK_SHIFT) - (key << CHUNK_SHIFT)
            hi = min(last, (key + 1) << CHUNK_SHIFT) - (key << CHUNK_SHIFT)
            self._walk_chunk(key, chunk, lo, hi, prot)

    def _walk_chunk(self, key: int, chunk: array[int], lo: int, hi: int,
                    prot: int | None) -> None:
        """`_walk` within one page-table chunk: entries [lo, hi) of chunk `key`."""
        if not prot:
            if lo == 0 and hi == CHUNK_PAGES:
                del self.chunks[key]
            elif hi - lo == 1:
                chunk[lo] = 0
            else:
                chunk[lo:hi] = array("q", bytes(8 * (hi - lo)))
            return
        for i in range(lo, hi):
            entry = chunk[i]
            if entry:
                chunk[i] = (entry & ~PTE_PROT_MASK) | prot

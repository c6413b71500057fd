"""EMA records and the per-root, address-ordered region list.

Models the reference's `ema_t` and its doubly linked, address-ordered root
lists. The links are kept (walks over a range touch only
the overlapped regions, O(1) per step), and a sorted index of start addresses
answers "which region holds this address" in O(log n) instead of the
reference's linear search. The list also keeps the `GapIndex` of free gaps
between neighbours current, so placement never walks the list.

`Region` / `CommittedView` are the frozen snapshots handed to outside code.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, overload

from sgx_emm.emm.bitmap import CommitBitmap
from sgx_emm.emm.placement import GapIndex
from sgx_emm.emm.rt import FaultHandler
from sgx_emm.emm.sorted_ints import SortedInts
from sgx_emm.flags import PAGE_SHIFT, PAGE_SIZE, PAGE_TYPE_MASK, PROT_MASK

#: Vacated starts allowed in a region list's start map beyond one per region.
_VACATED_SLACK = 1024


class Ema:
    """One enclave memory area: the mutable record the manager works on.

    `payload`, `map_struct` and `map_data` are the metadata-allocator addresses
    of the C objects this record stands for (the `ema_t`, its `bit_array` and
    the bit data); they decide which blocks are freed when, exactly as in the
    reference. `is_meta` says the record lies in the allocator's static meta area,
    i.e. the region is one of the allocator's own reserves (set with `payload`;
    the range calls test it on every region they act on).
    """

    # Slot order is memory order: the fields every range call and fault reads come
    # first, so that they share the record's first cache lines.
    __slots__ = ("start", "end", "alloc_flags", "si_flags", "bitmap", "is_meta", "handler",
                 "private", "payload", "map_struct", "map_data", "prev", "next")

    def __init__(self, start: int, end: int, alloc_flags: int, si_flags: int,
                 handler: FaultHandler | None = None, private: Any = None) -> None:
        self.start = start
        self.end = end
        self.alloc_flags = alloc_flags
        self.si_flags = si_flags
        self.bitmap: CommitBitmap | None = None
        self.handler = handler
        self.private = private
        self.payload: int | None = None
        self.is_meta = False
        self.map_struct: int | None = None
        self.map_data: int | None = None
        self.prev: Ema | None = None
        self.next: Ema | None = None

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def pages(self) -> int:
        return (self.end - self.start) >> PAGE_SHIFT

    @property
    def prot(self) -> int:
        return self.si_flags & PROT_MASK

    @property
    def page_type(self) -> int:
        return self.si_flags & PAGE_TYPE_MASK

    def committed(self, addr: int) -> bool:
        """The reference's ema_page_committed: False without a bitmap."""
        bm = self.bitmap
        return bm is not None and bm.test(addr)

    def clone_attrs(self, start: int, end: int) -> Ema:
        """A record with this one's attributes over another range (ema_clone)."""
        return Ema(start, end, self.alloc_flags, self.si_flags, self.handler, self.private)

    def __repr__(self) -> str:
        return (f"Ema({self.start:#x}-{self.end:#x} alloc={self.alloc_flags:#x} "
                f"si={self.si_flags:#x} {self.bitmap!r})")


class RegionList:
    """The regions of one root, ordered by address, with a gap index.

    Lookup by address O(log n); insert/remove O(log n); neighbours O(1).
    `by_start` maps each region's first address to it (read-only outside
    this class): most calls name a region's start, so a dict probe answers
    before the ordered index is searched. A removed region's start stays in
    it, mapped to None (a vacated start): a freed range is usually handed out
    again at the same address, and then its entry is rewritten in place,
    where a delete and a new insert would use up the dict's entry array and
    make it rebuild its whole table every few tens of thousands of
    changes, a walk over every entry that with many regions misses the
    caches all the way. Vacated starts are swept out when they outnumber the
    regions (amortized O(1) per remove), so the map stays within twice the
    regions plus a constant. Every key was once a region's start, which the
    range check's lock-free fast path relies on. A region placed in a gap starts
    where its lower neighbour ends, and the gap index keeps that neighbour
    with the gap: one entry per gap, not per region, so with many regions
    packed tight it stays small (and in the cache), where a map of every
    region's end grew with them and cost a random probe per insert and remove.

    The ordered index of starts is brought up to date only when it is
    searched: inserts and removes note the start in `_added` / `_dropped`
    (a set operation, where an ordered insert is a Python call and a list
    shift), and `_sorted_starts` applies what is pending first. A workload
    that names region starts (or ends) never searches it; one that does pays
    the same O(log n) per change as before, once.
    """

    __slots__ = ("_starts", "_added", "_dropped", "by_start", "_count", "first", "last",
                 "gaps")

    def __init__(self) -> None:
        self._starts = SortedInts()
        #: starts not yet in `_starts`, and starts in `_starts` no longer in the list
        self._added: set[int] = set()
        self._dropped: set[int] = set()
        self.by_start: dict[int, Ema | None] = {}
        self._count = 0  # regions; by_start also holds vacated starts
        self.first: Ema | None = None
        self.last: Ema | None = None
        self.gaps: GapIndex[Ema] = GapIndex()

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Ema]:
        node = self.first
        while node is not None:
            yield node
            node = node.next

    def _floor(self, addr: int) -> Ema | None:
        """The region with the highest start <= `addr`, or None. O(log n).

        Most calls name a region's first page, so an exact start is tried in
        the dict before the ordered index is searched.
        """
        by_start = self.by_start
        node = by_start.get(addr)
        if node is not None:
            return node
        start = self._sorted_starts().floor(addr)
        return None if start is None else by_start[start]  # (a live start: never None)

    def _sorted_starts(self) -> SortedInts:
        """The ordered index of starts, with the pending changes applied."""
        starts = self._starts
        if self._added or self._dropped:
            for start in self._dropped:
                starts.remove(start)
            for start in self._added:
                starts.add(start)
            self._added.clear()
            self._dropped.clear()
        return starts

    def find(self, addr: int) -> Ema | None:
        """The region holding `addr`, or None."""
        by_start = self.by_start
        node = by_start.get(addr)  # the usual case, without a call
        if node is None:  # not a live start: the index (`_floor` would probe the dict again)
            start = self._sorted_starts().floor(addr)
            if start is None:
                return None
            node = by_start[start]
            if node is None:  # (the index holds live starts only)
                return None
        return node if addr < node.end else None

    def first_overlap(self, start: int, end: int) -> Ema | None:
        """The lowest region overlapping [start, end) (search_ema_range's `first`)."""
        node = self._floor(start)
        if node is None:
            node = self.first
        elif node.end <= start:
            node = node.next
        if node is None or node.start >= end:
            return None
        return node

    def overlapping(self, start: int, end: int) -> list[Ema]:
        """Every region overlapping [start, end), ascending; O(log n + k)."""
        node = self.by_start.get(start)
        if node is not None and end <= node.end:
            return [node]  # the usual call: inside the region it names
        if node is None:
            node = self.first_overlap(start, end)
        out: list[Ema] = []
        while node is not None and node.start < end:
            out.append(node)
            node = node.next
        return out

    def insert(self, ema: Ema) -> None:
        """Link a region into its address slot (it must overlap nothing)."""
        start, end = ema.start, ema.end
        gaps = self.gaps
        prev = gaps.below.get(start)
        if prev is not None:  # it starts where its lower neighbour's gap starts: that closes
            gaps.set(start, 0, None)
        else:
            last = self.last
            # above the last region (no gap is recorded there), else a search
            prev = last if last is not None and last.end <= start else self._floor(start)
            if prev is not None:  # the gap above `prev` keeps what lies below `start`
                gaps.set(prev.end, start - prev.end, prev)
        nxt = prev.next if prev is not None else self.first
        if start in self._dropped:
            self._dropped.remove(start)
        else:
            self._added.add(start)
        self.by_start[start] = ema  # (rewrites a vacated start in place)
        self._count += 1
        ema.prev = prev
        ema.next = nxt
        if prev is not None:
            prev.next = ema
        else:
            self.first = ema
        if nxt is not None:
            nxt.prev = ema
            if nxt.start - end >= PAGE_SIZE:  # smaller gaps are not recorded
                gaps.set(end, nxt.start - end, ema)
        else:
            self.last = ema

    def remove(self, ema: Ema) -> None:
        """Unlink a region; its range becomes free."""
        prev, nxt = ema.prev, ema.next
        start, end = ema.start, ema.end
        if start in self._added:
            self._added.remove(start)
        else:
            self._dropped.add(start)
        by_start = self.by_start
        by_start[start] = None  # vacated, not deleted (see the class docstring)
        count = self._count = self._count - 1
        if len(by_start) > (count << 1) + _VACATED_SLACK:
            self._sweep_vacated()
        gaps = self.gaps
        if nxt is not None:
            if nxt.start - end >= PAGE_SIZE:  # a gap is recorded only from a page
                gaps.set(end, 0, None)
            nxt.prev = prev
        else:
            self.last = prev
        if prev is not None:
            prev.next = nxt
            if nxt is not None:  # the gap above `prev` now reaches `nxt` (a page at least)
                gaps.set(prev.end, nxt.start - prev.end, prev)
            else:
                gaps.set(prev.end, 0, None)
        else:
            self.first = nxt
        ema.prev = ema.next = None

    def _sweep_vacated(self) -> None:
        """Drop the vacated starts from `by_start`, in place (lock-free readers of the
        map keep reading the same dict)."""
        by_start = self.by_start
        for start in [s for s, node in by_start.items() if node is None]:
            del by_start[start]

    def split(self, ema: Ema, addr: int, new: Ema, new_lower: bool) -> None:
        """Cut `ema` at `addr`; `new` takes the lower part if `new_lower`, else the upper.

        Gaps do not change: the two parts stay adjacent.
        """
        if new_lower:
            new.start, new.end = ema.start, addr
            self.by_start[ema.start] = new
            ema.start = addr
            new.prev, new.next = ema.prev, ema
            if ema.prev is not None:
                ema.prev.next = new
            else:
                self.first = new
            ema.prev = new
            self.by_start[addr] = ema
        else:
            new.start, new.end = addr, ema.end
            self.gaps.hand_over(ema.end, new)  # the gap above is now above the upper part
            ema.end = addr
            new.prev, new.next = ema, ema.next
            if ema.next is not None:
                ema.next.prev = new
            else:
                self.last = new
            ema.next = new
            self.by_start[addr] = new
        if addr in self._dropped:
            self._dropped.remove(addr)
        else:
            self._added.add(addr)
        self._count += 1


class CommittedView:
    """Read-only per-page commit state of a region snapshot.

    Supports len(), indexing (ints and slices), iteration of bools, count().
    Holds the run boundaries only, so a snapshot of a huge region is small.
    """

    __slots__ = ("_pages", "_bounds")

    def __init__(self, pages: int, bounds: tuple[int, ...]) -> None:
        self._pages = pages
        self._bounds = bounds  # run boundaries, as page offsets from the region start

    def __len__(self) -> int:
        return self._pages

    @overload
    def __getitem__(self, index: int) -> bool: ...

    @overload
    def __getitem__(self, index: slice) -> list[bool]: ...

    def __getitem__(self, index: int | slice) -> bool | list[bool]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._pages))]
        if index < 0:
            index += self._pages
        if not 0 <= index < self._pages:
            raise IndexError("page index out of range")
        return bisect_right(self._bounds, index) & 1 == 1

    def __iter__(self) -> Iterator[bool]:
        return (self[i] for i in range(self._pages))

    def page_runs(self) -> list[tuple[int, int]]:
        """The committed runs as [first, last) page indices. O(runs)."""
        b = self._bounds
        return [(b[k], b[k + 1]) for k in range(0, len(b), 2)]

    def runs(self) -> Iterator[tuple[bool, int]]:
        """(committed, pages) runs covering the region, in order; O(runs)."""
        pos = 0
        b = self._bounds
        for k in range(0, len(b), 2):
            s, e = b[k], b[k + 1]
            if s > pos:
                yield False, s - pos
            yield True, e - s
            pos = e
        if pos < self._pages:
            yield False, self._pages - pos

    def count(self, value: bool = True) -> int:
        b = self._bounds
        ones = sum(b[k + 1] - b[k] for k in range(0, len(b), 2))
        return ones if value else self._pages - ones

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CommittedView):
            return (self._pages, self._bounds) == (other._pages, other._bounds)
        if isinstance(other, list | tuple):
            return list(self) == [bool(x) for x in other]
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self._pages, self._bounds))

    def __repr__(self) -> str:
        return f"CommittedView({self.count()}/{self._pages} pages)"


@dataclass(frozen=True, slots=True)
class Region:
    """A snapshot of one region, as `EnclaveMemoryManager.regions()` returns it."""

    start: int
    size: int
    alloc_flags: int
    si_flags: int
    committed: CommittedView
    is_meta: bool = False
    has_handler: bool = False
    #: False for a committing region whose bitmap is missing (only after a bug)
    has_bitmap: bool = True

    @property
    def end(self) -> int:
        return self.start + self.size

    @property
    def prot(self) -> int:
        return self.si_flags & PROT_MASK

    @property
    def page_type(self) -> int:
        return self.si_flags & PAGE_TYPE_MASK

    def __repr__(self) -> str:
        """Addresses and flag words in hex, as C programmers read them."""
        extra = "".join(f", {name}=True" for name in ("is_meta", "has_handler")
                        if getattr(self, name))
        if not self.has_bitmap:
            extra += ", has_bitmap=False"
        return (f"Region(start={self.start:#x}, size={self.size:#x}, "
                f"alloc_flags={self.alloc_flags:#x}, si_flags={self.si_flags:#x}, "
                f"committed={self.committed!r}{extra})")


def snapshot(ema: Ema, is_meta: bool) -> Region:
    base = ema.start
    bounds = (tuple((b - base) >> PAGE_SHIFT for b in ema.bitmap.bounds)
              if ema.bitmap is not None else ())
    view = CommittedView(ema.pages, bounds)
    return Region(ema.start, ema.size, ema.alloc_flags, ema.si_flags, view,
                  is_meta, ema.handler is not None,
                  ema.bitmap is not None or bool(ema.alloc_flags & 0x01))  # 0x01: RESERVE

"""Address choice for new regions: `find_free_region` and `find_free_region_at`.

Follows the specified placement rules (the reference's ema.c rules, 64-bit wrap-around
included). The reference walks every region pair to find the first gap that
fits; we answer the same question from a `GapIndex` that keeps the free gaps
between neighbouring regions bucketed by size, so the lowest fitting gap is
found without touching the regions in between. `find_free_region_linear` is the
reference's rule written out plainly; tests prove the two equal.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sgx_emm.emm.sorted_ints import LOAD, SortedInts
from sgx_emm.flags import PAGE_SHIFT, PAGE_SIZE

U64 = (1 << 64) - 1

#: Gaps of 1..64 pages have a class each; larger ones share power-of-two classes.
_EXACT_CLASSES = 64
_NUM_CLASSES = 128


def _size_class(pages: int) -> int:
    """The class of a gap of `pages` pages (written out inline in GapIndex's hot paths)."""
    if pages <= _EXACT_CLASSES:
        return pages - 1
    return 57 + (pages - 1).bit_length()


def _class_floor(cls: int) -> int:
    """Smallest page count in class `cls`."""
    if cls < _EXACT_CLASSES:
        return cls + 1
    return (1 << (cls - 58)) + 1


def round_up(x: int, align: int) -> int:
    """C's ROUND_TO on size_t: wraps modulo 2**64."""
    return (x + align - 1) & ~(align - 1) & U64


def round_down(x: int, align: int) -> int:
    """C's TRIM_TO."""
    return x & ~(align - 1) & U64


#: A size class's gap starts are kept in a plain sorted list (insort / del in C,
#: no Python call) until it grows past this; then in a `SortedInts`, whose
#: inserts and deletes stay O(log n) however many gaps the class holds.
_SMALL_CLASS = 2 * LOAD

_ClassList = list[int] | SortedInts
#: What lies below a gap (the region list's record of the region the gap follows).
_Below = TypeVar("_Below")

#: Each size class's bit in `GapIndex._mask`, and the mask that clears it.
_BIT = tuple(1 << cls for cls in range(_NUM_CLASSES))
_CLEAR = tuple(~bit for bit in _BIT)


class GapIndex(Generic[_Below]):
    """Free gaps between neighbouring regions of one root, by size class.

    Each gap also keeps what lies below it (`below`, by gap start, read-only
    outside): the region whose end the gap starts at, which a region placed at
    the gap's start links to. It is kept with the gap, in the one call that
    opens, resizes and closes gaps, so it holds one entry per gap, few when
    regions are packed tight.

    `first_fit(size, accept)` returns what `accept` makes of the lowest-address
    gap of at least `size` bytes that it accepts. Cost: O(c log n) per gap
    offered to `accept`, with c the number of non-empty size classes (at most
    128, a handful in practice); with page alignment the first gap offered is
    always accepted. Adding or removing a gap is O(log n) (a class list of up
    to `_SMALL_CLASS` starts is a plain list: a bounded shift, done in C).
    """

    __slots__ = ("_lists", "_length", "_mask", "below")

    def __init__(self) -> None:
        self._lists: list[_ClassList] = [[] for _ in range(_NUM_CLASSES)]
        self._length: dict[int, int] = {}
        self._mask = 0
        self.below: dict[int, _Below] = {}

    def __len__(self) -> int:
        return len(self._length)

    def items(self) -> list[tuple[int, int]]:
        """(start, length) of every gap, ascending; O(n), for tests and dumps."""
        return sorted(self._length.items())

    def set(self, start: int, length: int, below: _Below | None) -> None:
        """Make the gap at `start` `length` bytes long (under a page: no gap), above
        `below` (the region ending at `start`; None where the gap closes).

        The neighbour updates of an insert or remove: a gap opens, closes, or
        changes length, mostly within its size class (then only the length is
        rewritten). Written out in one call, as it runs on every alloc and free;
        the class mask changes only when a class list empties or stops being
        empty, through the precomputed bit of the class.
        """
        lengths = self._length
        lists = self._lists
        if length >= PAGE_SIZE:  # the size class, written out (see _size_class)
            pages = length >> PAGE_SHIFT
            cls = pages - 1 if pages <= _EXACT_CLASSES else 57 + (pages - 1).bit_length()
        else:
            cls = -1  # no gap (a gap closing: no shift)
        old = lengths.get(start)
        if old is not None:
            old_pages = old >> PAGE_SHIFT
            old_cls = (old_pages - 1 if old_pages <= _EXACT_CLASSES
                       else 57 + (old_pages - 1).bit_length())
            if cls == old_cls:
                lengths[start] = length
                return
            lst = lists[old_cls]
            if type(lst) is SortedInts:  # (not isinstance: this runs on every alloc and free)
                lst.remove(start)
            else:
                del lst[bisect_left(lst, start)]
            if not lst:
                self._mask &= _CLEAR[old_cls]
            if cls < 0:
                del lengths[start]
                del self.below[start]
                return
        elif cls < 0:
            return
        lengths[start] = length
        assert below is not None, "a gap needs what lies below it"
        self.below[start] = below
        lst = lists[cls]
        if not lst:
            self._mask |= _BIT[cls]
        if type(lst) is SortedInts:
            lst.add(start)
        else:
            insort(lst, start)
            if len(lst) > _SMALL_CLASS:
                lists[cls] = SortedInts.from_sorted(lst)

    def hand_over(self, start: int, below: _Below) -> None:
        """The gap at `start`, if any, now lies above `below` (a split region's upper part)."""
        if start in self.below:
            self.below[start] = below

    def first_fit(self, size: int,
                  accept: Callable[[int, int], int | None] | None = None) -> int | None:
        """What `accept` makes of the lowest gap of at least `size` bytes it accepts.

        Without `accept` the lowest such gap's start is the answer (every gap
        that is long enough is accepted).
        """
        if size == PAGE_SIZE:  # one page, the usual request: every gap fits
            cls = full_from = 0
            partial = False
            fitting = self._mask  # (the bit arithmetic below is never specialized)
        else:
            pages = (size + PAGE_SIZE - 1) >> PAGE_SHIFT
            if pages <= _EXACT_CLASSES:  # an exact class: every gap in it fits
                cls = full_from = pages - 1
                partial = False
            else:
                cls = _size_class(pages)
                partial = _class_floor(cls) < pages  # class `cls` holds smaller and larger gaps
                full_from = cls + 1 if partial else cls
            fitting = self._mask >> full_from  # bit k: class full_from + k, all of whose gaps fit
        lists = self._lists
        # fitting == 1 (the request's own class, the commonest) spares the bit arithmetic
        if accept is None and not partial and (fitting == 1 or not fitting & (fitting - 1)):
            # at most one such class (the usual case): its lowest gap is the answer
            if not fitting:
                return None
            lst = lists[full_from if fitting == 1 else full_from + fitting.bit_length() - 1]
            return lst.min() if type(lst) is SortedInts else lst[0]
        fitting <<= full_from
        length = self._length
        after = -1
        while True:
            best = -1
            m = fitting
            while m:
                low = m & -m
                m ^= low
                lst = lists[low.bit_length() - 1]
                assert lst  # the mask names non-empty classes only
                s = lst[0] if after < 0 and isinstance(lst, list) else _first_after(lst, after)
                if s is not None and (best < 0 or s < best):
                    best = s
            if partial and (self._mask >> cls) & 1:
                lst = lists[cls]
                for s in _iter_after(lst, after):
                    if best >= 0 and s >= best:
                        break
                    if length[s] >= size:
                        best = s
                        break
            if best < 0:
                return None
            if accept is None:
                return best
            found = accept(best, length[best])
            if found is not None:
                return found
            after = best


def _first_after(lst: _ClassList, after: int) -> int | None:
    """The smallest start > `after` in a class list (its first when `after` < 0)."""
    if isinstance(lst, list):
        if after < 0:
            return lst[0]
        i = bisect_right(lst, after)
        return lst[i] if i < len(lst) else None
    return lst.min() if after < 0 else lst.after(after)


def _iter_after(lst: _ClassList, after: int) -> Iterator[int]:
    """The starts > `after` in a class list, ascending."""
    if isinstance(lst, list):
        return iter(lst[bisect_right(lst, after):] if after >= 0 else lst)
    return iter(lst) if after < 0 else lst.iter_after(after)


@dataclass(frozen=True, slots=True)
class RootBounds:
    """What placement needs to know about a root besides its regions."""

    is_rts: bool
    user_base: int
    user_end: int
    within_enclave: Callable[[int, int], bool]

    def in_user_range(self, start: int, size: int) -> bool:
        end = start + size
        return end <= U64 and start >= self.user_base and end <= self.user_end

    def in_rts_range(self, start: int, size: int) -> bool:
        end = start + size
        return end <= U64 and (start >= self.user_end or end <= self.user_base)

    def in_root_range(self, start: int, size: int) -> bool:
        if self.is_rts:
            return self.in_rts_range(start, size)
        return self.in_user_range(start, size)


def _empty_root(bounds: RootBounds, size: int, align: int) -> int | None:
    if bounds.is_rts:
        if bounds.user_base >= size:
            tmp = round_down(bounds.user_base - size, align)
            if bounds.within_enclave(tmp, size):
                return tmp
        tmp = round_up(bounds.user_end, align)
        if tmp + size <= U64 and bounds.within_enclave(tmp, size):
            return tmp
        return None
    tmp = round_up(bounds.user_base, align)
    return tmp if bounds.in_user_range(tmp, size) else None


def _outside(bounds: RootBounds, first_start: int, last_end: int, size: int,
             align: int) -> int | None:
    """Rules 3 and 4: above the last region, else below the first."""
    tmp = round_up(last_end, align)
    if bounds.within_enclave(tmp, size) and bounds.in_root_range(tmp, size):
        return tmp
    if first_start < size:
        return None
    tmp = round_down(first_start - size, align)
    if not bounds.is_rts:
        return tmp if bounds.in_user_range(tmp, size) else None
    if bounds.within_enclave(tmp, size) and bounds.in_rts_range(tmp, size):
        return tmp
    return None


def find_free_region(gaps: GapIndex[Any], first_start: int | None, last_end: int,
                     bounds: RootBounds, size: int, align: int) -> int | None:
    """The reference's address for a region of `size` aligned to `align`, or None.

    `first_start` is None for an empty root (then `last_end` is unused).
    """
    if first_start is None:
        return _empty_root(bounds, size, align)
    is_rts = bounds.is_rts
    if align == PAGE_SIZE and not is_rts:
        # Gap starts are region ends, so page aligned, and every gap first_fit
        # offers is long enough: the user root accepts the first one.
        found = gaps.first_fit(size)
        if found is not None:
            return found
        return _outside(bounds, first_start, last_end, size, align)

    def accept(gap_start: int, gap_len: int) -> int | None:
        cand = round_up(gap_start, align)
        nxt = gap_start + gap_len
        if cand <= nxt and nxt - cand >= size and (
            not is_rts or bounds.in_rts_range(cand, size)
        ):
            return cand
        return None

    found = gaps.first_fit(size, accept)
    if found is not None:
        return found
    return _outside(bounds, first_start, last_end, size, align)


def find_free_region_linear(spans: Iterable[tuple[int, int]], bounds: RootBounds,
                            size: int, align: int) -> int | None:
    """The reference's walk over every neighbour pair; `spans` = (start, end) ascending."""
    regions = list(spans)
    if not regions:
        return _empty_root(bounds, size, align)
    for (_, cur_end), (nxt_start, _) in zip(regions, regions[1:], strict=False):
        cand = round_up(cur_end, align)
        if cand <= nxt_start and nxt_start - cand >= size and (
            not bounds.is_rts or bounds.in_rts_range(cand, size)
        ):
            return cand
    return _outside(bounds, regions[0][0], regions[-1][1], size, align)


def free_at(bounds: RootBounds, addr: int, size: int, overlaps: bool) -> bool:
    """`find_free_region_at`: inside the enclave, inside the root's range, no overlap."""
    if not bounds.within_enclave(addr, size):
        return False
    if not bounds.in_root_range(addr, size):
        return False
    return not overlaps

"""A sorted set of integers with floor / successor queries, for the manager's indexes.

The region list (start addresses) and the gap index (gap starts per size
class) each keep one or more of these. It is the two-level layout that
`sortedcontainers.SortedList` documents - a list of sorted sublists of about
`LOAD` items plus the list of their maxima - cut down to the operations the
manager needs and with every operation in a single Python call, because these
run several times on every alloc and dealloc. The bisects run in C.

Complexity: add / remove / floor / after are O(log n) plus an O(LOAD) list
shift; min() is O(1), len() O(n / LOAD). Memory: one list slot per item plus one per
sublist.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator
from typing import final

#: Target sublist length: a sublist is split at twice this, merged below half.
LOAD = 512
_SPLIT_AT = LOAD << 1
_MERGE_AT = LOAD >> 1


@final  # (exact type tests on hot paths, which mypy narrows for final classes only)
class SortedInts:
    """Distinct integers in ascending order."""

    __slots__ = ("_lists", "_maxes")

    def __init__(self) -> None:
        self._lists: list[list[int]] = []
        self._maxes: list[int] = []

    @classmethod
    def from_sorted(cls, items: list[int]) -> SortedInts:
        """A set holding `items`, which must be ascending and distinct. O(n)."""
        new = cls()
        new._lists = [items[k:k + LOAD] for k in range(0, len(items), LOAD)]
        new._maxes = [sub[-1] for sub in new._lists]
        return new

    def __len__(self) -> int:
        """O(n / LOAD): no count is kept (add and remove are the hot operations)."""
        return sum(map(len, self._lists))

    def __bool__(self) -> bool:
        return bool(self._maxes)

    def __iter__(self) -> Iterator[int]:
        for sub in self._lists:
            yield from sub

    def __contains__(self, value: int) -> bool:
        maxes = self._maxes
        pos = bisect_left(maxes, value)
        if pos == len(maxes):
            return False
        sub = self._lists[pos]
        i = bisect_left(sub, value)
        return sub[i] == value

    def min(self) -> int | None:
        """The smallest item, or None. O(1)."""
        return self._lists[0][0] if self._maxes else None

    def add(self, value: int) -> None:
        """Insert `value` (it must not be present)."""
        maxes = self._maxes
        if not maxes:
            self._lists.append([value])
            maxes.append(value)
            return
        pos = bisect_right(maxes, value)
        lists = self._lists
        if pos == len(maxes):
            pos -= 1
            sub = lists[pos]
            sub.append(value)
            maxes[pos] = value
        else:
            sub = lists[pos]
            insort(sub, value)
        if len(sub) > _SPLIT_AT:
            half = sub[LOAD:]
            del sub[LOAD:]
            maxes[pos] = sub[-1]
            lists.insert(pos + 1, half)
            maxes.insert(pos + 1, half[-1])

    def remove(self, value: int) -> None:
        """Delete `value`; KeyError if absent."""
        maxes = self._maxes
        pos = bisect_left(maxes, value)
        lists = self._lists
        try:
            sub = lists[pos]
        except IndexError:
            raise KeyError(value) from None
        i = bisect_left(sub, value)
        if sub[i] != value:
            raise KeyError(value)
        del sub[i]
        if len(sub) > _MERGE_AT:
            maxes[pos] = sub[-1]
            return
        if len(lists) > 1:
            # merge the small sublist into a neighbour, re-splitting if too long
            if not pos:
                pos = 1
            prev = lists[pos - 1]
            prev.extend(lists[pos])
            del lists[pos]
            del maxes[pos]
            if len(prev) > _SPLIT_AT:
                half = prev[LOAD:]
                del prev[LOAD:]
                lists.insert(pos, half)
                maxes.insert(pos, half[-1])
            maxes[pos - 1] = prev[-1]
        elif sub:
            maxes[0] = sub[-1]
        else:
            del lists[0]
            del maxes[0]

    def floor(self, value: int) -> int | None:
        """The largest item <= `value`, or None."""
        maxes = self._maxes
        if not maxes:
            return None
        pos = bisect_right(maxes, value)
        if pos == len(maxes):
            return maxes[-1]
        sub = self._lists[pos]
        i = bisect_right(sub, value)
        if i:
            return sub[i - 1]
        if pos:
            return maxes[pos - 1]
        return None

    def after(self, value: int) -> int | None:
        """The smallest item > `value`, or None."""
        maxes = self._maxes
        pos = bisect_right(maxes, value)
        if pos == len(maxes):
            return None
        sub = self._lists[pos]
        return sub[bisect_right(sub, value)]

    def iter_after(self, value: int) -> Iterator[int]:
        """Items > `value`, ascending."""
        maxes = self._maxes
        pos = bisect_right(maxes, value)
        lists = self._lists
        if pos == len(maxes):
            return
        sub = lists[pos]
        yield from sub[bisect_right(sub, value):]
        for k in range(pos + 1, len(lists)):
            yield from lists[k]


__all__ = ["LOAD", "SortedInts"]

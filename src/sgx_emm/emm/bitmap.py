"""Per-region commit bitmap: which pages of an EMA have been EACCEPTed.

Models the reference's `bit_array` (one bit per page) but
stores *runs* instead of bits: a sorted tuple of boundaries
``[s0, e0, s1, e1, ...]`` where every ``[s_i, e_i)`` is a maximal run of
committed pages. The manager keeps the boundaries as byte addresses (page
aligned): they are what every caller has in hand, so no call shifts an
address into a page number and back, and a split never has to renumber the
upper half. The class itself only orders integers; any unit works.

Why runs: memory must not grow with untouched pages, a COMMIT_NOW region of a
million pages is one run, and the operations the manager needs (test one page,
test a range all/any, set/clear a range, list the committed runs of a range,
split) are all O(log r + k) with r runs and k runs touched, independent of the
region size. Bisect on a tuple runs in C, so the common one-run case
costs about as much as an integer bit test.

Why a tuple, replaced on every change, rather than a list changed in place:
a tuple holds its items inline, so reading a bitmap touches two objects (the
bitmap and its tuple) where a list adds a third (its separately allocated item
array), and an empty bitmap shares the one empty tuple. With tens of thousands
of regions every call's bitmap is cold in the caches, and each object is one
more cache miss; a change rebuilds a tuple of a few items, which costs about
what the in-place slice assignment did.

The C-side *sizes* of the bitmap (for the metadata allocator) are not kept
here; see `ema_ops`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator


class CommitBitmap:
    """Committed pages of one region as a sorted tuple of run boundaries.

    Invariant: ``_b`` is strictly increasing and of even length; page ``p`` is
    committed iff ``bisect_right(_b, p)`` is odd.
    """

    __slots__ = ("_b",)

    def __init__(self, bounds: tuple[int, ...] = ()) -> None:
        self._b = bounds

    @classmethod
    def full(cls, lo: int, hi: int) -> CommitBitmap:
        """All pages of ``[lo, hi)`` committed (COMMIT_NOW, mm_init_ema). O(1)."""
        return cls((lo, hi) if lo < hi else ())

    def copy(self) -> CommitBitmap:
        return CommitBitmap(self._b)  # (immutable: shared)

    @property
    def bounds(self) -> tuple[int, ...]:
        """The run boundaries, for snapshots."""
        return self._b

    def test(self, page: int) -> bool:
        """Is ``page`` committed? O(log r)."""
        return bisect_right(self._b, page) & 1 == 1

    def run_at(self, page: int) -> tuple[int, int] | None:
        """The committed run holding `page`, or None. O(log r)."""
        b = self._b
        i = bisect_right(b, page)
        return (b[i - 1], b[i]) if i & 1 else None

    def all_set(self, lo: int, hi: int) -> bool:
        """Every page of ``[lo, hi)`` committed (True for an empty range). O(log r)."""
        if lo >= hi:
            return True
        b = self._b
        if len(b) == 2:  # one run (a one-page region, mostly): inside it or not
            return b[0] <= lo and hi <= b[1]
        i = bisect_right(b, lo)
        return i & 1 == 1 and b[i] >= hi

    def any_set(self, lo: int, hi: int) -> bool:
        """Some page of ``[lo, hi)`` committed. O(log r)."""
        if lo >= hi:
            return False
        b = self._b
        i = bisect_right(b, lo)
        if i & 1:
            return True
        return i < len(b) and b[i] < hi

    def set_range(self, lo: int, hi: int) -> None:
        """Mark ``[lo, hi)`` committed, merging with touching runs. O(log r + k)."""
        b = self._b
        if not b:  # nothing committed yet (most commits: one page of a fresh region)
            if lo < hi:
                self._b = (lo, hi)
            return
        if lo >= hi:
            return
        i = bisect_left(b, lo)
        j = bisect_right(b, hi)
        # lo opens a run unless one is open there (odd i); hi closes it likewise
        if i & 1:
            self._b = b[:i] + ((hi,) if j & 1 == 0 else ()) + b[j:]
        else:
            self._b = b[:i] + ((lo, hi) if j & 1 == 0 else (lo,)) + b[j:]

    def clear_range(self, lo: int, hi: int) -> None:
        """Mark ``[lo, hi)`` uncommitted, cutting the runs it crosses. O(log r + k)."""
        b = self._b
        if len(b) == 2 and lo <= b[0] and b[1] <= hi:
            self._b = ()  # the range covers the one run (most trims: a one-page region)
            return
        if lo >= hi:
            return
        i = bisect_left(b, lo)  # boundaries below lo; odd: a run is open at lo
        j = bisect_right(b, hi)  # boundaries up to hi; odd: a run is open at hi
        if i & 1:
            self._b = b[:i] + ((lo, hi) if j & 1 else (lo,)) + b[j:]
        else:
            self._b = b[:i] + ((hi,) if j & 1 else ()) + b[j:]

    def runs(self, lo: int, hi: int) -> Iterator[tuple[int, int]]:
        """Maximal committed runs inside ``[lo, hi)``, ascending, clipped."""
        if lo >= hi:
            return
        b = self._b
        i = bisect_right(b, lo)
        if i & 1:
            i -= 1
        n = len(b)
        while i < n and b[i] < hi:
            yield max(b[i], lo), min(b[i + 1], hi)
            i += 2

    def runs_list(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """`runs` as a list, built without a generator (the manager's hot paths)."""
        b = self._b
        if not b or lo >= hi:  # nothing committed (half the trims asked for)
            return []
        if len(b) == 2 and lo <= b[0] and b[1] <= hi:
            return [(b[0], b[1])]  # the range covers the one run (a one-page region)
        i = bisect_right(b, lo)
        if i & 1:
            i -= 1
        j = bisect_left(b, hi)  # boundaries below hi
        if j & 1:
            j += 1  # the run open at hi ends at b[j]; clip it below
        if i == j:
            return []
        if j - i == 2:  # the common case: one run
            s, e = b[i], b[i + 1]
            return [((s if s > lo else lo), (e if e < hi else hi))]
        out = [(b[k], b[k + 1]) for k in range(i, j, 2)]
        if out:
            s, e = out[0]
            if s < lo:
                out[0] = (lo, e)
            s, e = out[-1]
            if e > hi:
                out[-1] = (s, hi)
        return out

    def holes_list(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """`holes` as a list, walked over the boundaries directly (commit's hot path);
        the empty list at once when all of [lo, hi) is set."""
        if lo >= hi:
            return []
        b = self._b
        i = bisect_right(b, lo)
        if i & 1:  # lo is inside the run [b[i-1], b[i])
            cur = b[i]
            if cur >= hi:
                return []
            i += 1
        else:
            cur = lo
        out = []
        n = len(b)
        while i < n and b[i] < hi:  # the next run starts before hi
            out.append((cur, b[i]))
            cur = b[i + 1]
            i += 2
        if cur < hi:
            out.append((cur, hi))
        return out

    def holes(self, lo: int, hi: int) -> Iterator[tuple[int, int]]:
        """Maximal uncommitted runs inside ``[lo, hi)``, ascending."""
        cur = lo
        for s, e in list(self.runs(lo, hi)):
            if s > cur:
                yield cur, s
            cur = e
        if cur < hi:
            yield cur, hi

    def count(self, lo: int, hi: int) -> int:
        """Committed positions in ``[lo, hi)`` (bytes, when the boundaries are addresses).
        O(log r + k)."""
        return sum(e - s for s, e in self.runs(lo, hi))

    def split(self, page: int) -> CommitBitmap:
        """Keep the pages below ``page`` here; return the rest as a new bitmap. O(r)."""
        b = self._b
        i = bisect_right(b, page)
        lower = b[:i]
        upper = b[i:]
        if i & 1:  # `page` is inside a run: cut it in two
            if lower[-1] == page:  # the run starts at `page`: nothing stays below
                lower = lower[:-1]
            else:
                lower += (page,)
            upper = (page, *upper)
        self._b = lower
        return CommitBitmap(upper)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CommitBitmap) and self._b == other._b

    def __hash__(self) -> int:
        return hash(self._b)

    def __repr__(self) -> str:
        b = self._b
        runs = ", ".join(f"[{b[k]:#x},{b[k + 1]:#x})" for k in range(0, len(b), 2))
        return f"CommitBitmap({runs})"

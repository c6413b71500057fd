"""The manager's metadata allocator (the reference's `emalloc.c`), modelled without memory.

The C manager keeps its region records in enclave memory that it carves out of the
user range with this allocator, so the allocator decides where user regions land.
We reproduce its address choices byte for byte, as intel/sgx-emm does them at
commit dc85099 (2025), but hold only bookkeeping: blocks are header slots in a
table per reserve, free lists are insertion-ordered dicts, reserves are bump
pointers.

Each reserve keeps its block headers in a table with one slot per 8 bytes (a
list of ints): the size of the block that starts there, negative while it is free, 0
where no block starts. That is the reference's own layout (a size word with an
"allocated" bit in front of every block), and it answers "which block is this, is
it free, what follows it" with one read of a slot next to its neighbours', where
a map of every block scattered them over a hash table: with tens of thousands of
regions each of those probes was a few cache misses, and a region's free and
alloc make about eight of them.

Block layout as in the reference: an 8-byte header, the caller's payload after it;
block size = request + 8 rounded up to 8, at least 16. Free blocks of 16..2056 bytes
sit in one LIFO list per size (step 8); larger ones in one best-fit list. A freed
block swallows the free blocks to its right, one after another; a free block ending
at its reserve's bump pointer gives the space back to the reserve instead. Merged
blocks land in the list of their new size, which the exact-size requests of region
records (80, 32, 16 bytes) never ask for: under churn the reserves fill up and new
ones are added, as in the reference.

Caller holds the manager's recursive lock, as with the C allocator ("single thread
only; caller holds mm_lock"): the allocator re-enters the manager to add reserves,
and that re-entry happens under the same lock.
"""

from __future__ import annotations

import contextlib
import errno
from bisect import bisect_right
from dataclasses import dataclass
from itertools import repeat
from typing import Protocol

from sgx_emm.errors import EmmError, EnclaveAbort
from sgx_emm.flags import COMMIT_ON_DEMAND, FIXED, PAGE_SIZE, RESERVE

#: Every block starts with an 8-byte header (size | allocated bit).
HEADER_SIZE = 8
#: Block sizes are multiples of this; also the step between exact-size lists.
BLOCK_ALIGN = 8
#: Smallest block: header plus room for the free-list link.
MIN_BLOCK_SIZE = 0x10
#: Number of exact-size free lists (16, 24, ..., 2056 bytes).
NUM_EXACT_LISTS = 0x100
#: Largest block kept in an exact-size list; larger ones go to the best-fit list.
MAX_EXACT_SIZE = MIN_BLOCK_SIZE + BLOCK_ALIGN * (NUM_EXACT_LISTS - 1)
#: The static area that holds the records of the reserves themselves.
META_AREA_SIZE = 0x10000
#: First reserve increment, and the value it returns to after the initial reserve.
INITIAL_RESERVE_SIZE = 0x10000
#: Reserve increments double up to this cap.
MAX_RESERVE_SIZE = 0x10000000
#: Unmapped guard on each side of a reserve's committed-on-demand region.
GUARD_SIZE = 0x8000
#: `mm_reserve_t` (base, size, used, next) at the start of every reserve region.
RESERVE_HEADER_SIZE = 32
_PAGE_MASK = PAGE_SIZE - 1
#: Below every address: the reserve lookup's placeholder base.
_BELOW_ALL = -(1 << 128)


class MetaHost(Protocol):
    """What the allocator needs from the manager that embeds it."""

    def meta_alloc_region(self, addr: int | None, size: int, flags: int) -> int:
        """`sgx_mm_alloc` on the user root; returns the start; raises EmmError."""
        ...

    def meta_commit(self, addr: int, size: int) -> None:
        """`sgx_mm_commit` of a metadata range; raises EmmError."""
        ...

    def meta_touch(self, addr: int, size: int) -> None:
        """Metadata was written at [addr, addr+size): commit the pages not yet committed.

        The reference gets this from its own #PF handler on the first write.
        """
        ...


@dataclass(frozen=True, slots=True)
class Reserve:
    """A snapshot of one reserve: blocks are carved from [base, base+size) by bump."""

    base: int
    size: int
    used: int


class _ReserveState:
    """The live `mm_reserve_t`: blocks are carved from [base, limit) at `bump`.

    `base` is just past its 32-byte header. The reference keeps (base, size,
    used); we keep the two addresses its hot paths compare against instead, so
    that a malloc or a free adds no offsets to find them. `touched_to` is the end
    of the last page a block header was touched on (at most `limit`; `base` before
    the first): memory below it has all been written, so a block that ends below
    it needs no header touch and fits, and malloc's common case is one comparison.

    `heads` is the header table: slot k stands for address `base + 8k` and holds
    the size of the block that starts there in 8-byte units (small ints, which
    Python shares), negated while the block is free, and 0 where no block starts:
    inside a block, in an 8-byte tail no block owns, at or above `bump`. It has a
    slot for every address of [base, covered], the last one included, so the slot
    where a block ends can always be read. `covered` stays at or above both `bump`
    and `touched_to`, and grows to the end of a page or to twice its distance from
    `base`, whichever is more: the table's memory follows the reserve's used part,
    not its size, and a growing table is copied a few times in all rather than
    once a page. A list and not an `array`: an array converts every int it stores
    by parsing a format string, a few hundred instructions a write, and a region's
    free and alloc write seven slots.
    """

    __slots__ = ("base", "bump", "limit", "touched_to", "heads", "covered")

    def __init__(self, base: int, size: int) -> None:
        self.base = base
        self.limit = base + size
        self.bump = base
        self.touched_to = base
        self.heads = [0]
        self.covered = base

    def cover(self, end: int) -> None:
        """Give the header table a slot for every address up to `end` (<= limit)."""
        covered = self.covered
        want = min(max((end + _PAGE_MASK) & ~_PAGE_MASK, 2 * covered - self.base), self.limit)
        if want > covered:
            # (no list of zeros built and copied: the table is sized once, then filled)
            self.heads.extend(repeat(0, (want - covered) >> 3))
            self.covered = want

    def snapshot(self) -> Reserve:
        return Reserve(self.base, self.limit - self.base, self.bump - self.base)


def block_size_for(size: int) -> int:
    """Block size that `malloc(size)` takes: size + header, rounded to 8, at least 16.

    Raises ValueError for a negative size, which malloc refuses.
    """
    if size < 0:
        raise ValueError(f"negative allocation size {size:#x}")
    bsize = (size + HEADER_SIZE + BLOCK_ALIGN - 1) & ~(BLOCK_ALIGN - 1)
    return max(bsize, MIN_BLOCK_SIZE)


def _exact_index(bsize: int) -> int:
    """The exact-size list of blocks of `bsize` bytes (16 -> 0, 24 -> 1, ...)."""
    return (bsize - MIN_BLOCK_SIZE) >> 3  # BLOCK_ALIGN is 8


#: Largest request whose block has an exact-size list (requests 0 .. 2048 bytes).
#: The hot paths test `0 <= size <= _MAX_EXACT_REQUEST` with two int comparisons:
#: a `size in range(...)` test costs three times as much (it also takes a remainder).
_MAX_EXACT_REQUEST = MAX_EXACT_SIZE - HEADER_SIZE
#: The block size of each request up to `_MAX_EXACT_REQUEST`: a tuple lookup costs
#: less than the rounding and the minimum it replaces on the paths that run for
#: every region record and bitmap.
_EXACT_FIT: tuple[int, ...] = tuple(block_size_for(n) for n in range(_MAX_EXACT_REQUEST + 1))


#: The requests of a region's record and bitmap struct (the reference's
#: sizeof(ema_t) and sizeof(bit_array) on x86-64), which `bump_region` makes
#: together with the region's bit data, and their block sizes.
REGION_RECORD_SIZE = 72
BITMAP_STRUCT_SIZE = 24
_RECORD_BLOCK = block_size_for(REGION_RECORD_SIZE)
_STRUCT_BLOCK = block_size_for(BITMAP_STRUCT_SIZE)
_RECORD_AND_STRUCT_BLOCKS = _RECORD_BLOCK + _STRUCT_BLOCK  # where the bit data starts
#: The same in header table slots (8-byte units).
_RECORD_UNITS = _RECORD_BLOCK >> 3
_STRUCT_UNITS = _STRUCT_BLOCK >> 3
_RECORD_AND_STRUCT_UNITS = _RECORD_AND_STRUCT_BLOCKS >> 3


def _round_up(value: int, align: int) -> int:
    return (value + align - 1) & ~(align - 1)


class MetaAllocator:
    """`emalloc` / `efree` with the reference's placement, leaks and reserve growth.

    The default follows the reference as it is today: a freed block merges with
    every free block to its right (intel/sgx-emm 893dcbc, 2023), and `init` takes
    the size of the first reserve, after which the increment starts again at
    64 KiB (eb4d16c, 2023).

    `legacy_2022=True` models the pre-2023 reference instead, whose merge never
    happened: its `neighbor_right` passed the block's end address where a size
    belongs, so the test always failed and freed blocks were re-used exactly, and
    churn with a constant number of live regions never added a reserve.

    `leaky=True` (default) keeps the reference's free-list rules. `leaky=False`
    is a documented deviation in which merged free blocks are re-usable; exactly
    these three things differ, nothing else:

    1. a request whose exact-size list is empty is served by splitting the smallest
       free exact-list block at least 16 bytes larger (the rest goes back to its
       list), then by the best-fit list, before the reserve's bump pointer; the
       reference goes straight to the best-fit list (large requests) or the bump
       pointer, so a merged 128-byte block never serves an 80-byte EMA again;
    2. a best-fit block whose rest would be under 16 bytes is handed out whole;
       the reference writes the smaller size into its header and the 8-byte tail
       belongs to no block ever again;
    3. when a freed block hands space back to the bump pointer, free blocks of any
       size that end there follow it; the reference pulls back only blocks of the
       best-fit list (`merge_large_blocks_to_reserve`).

    An 8-byte tail that no block owns (point 2 above, in the leaky model) ends a
    merge here. The reference reads whatever stale bytes lie there as a block
    header; we cannot know them, and treat the tail as in use.

    `merge_right` is the older spelling of the same choice: `merge_right=False`
    is `legacy_2022=True`.

    Complexity: exact-size lists O(1); the best-fit list is walked linearly (it
    holds only blocks over 2056 bytes, which are rare); reserves are walked newest
    first as the reference does, and found by address in O(log r). Nothing walks
    all blocks. Memory: a header slot per 8 bytes of each reserve's used part
    (up to twice that while a table waits to fill), leaked blocks included,
    since the reference never takes them back.
    """

    def __init__(self, host: MetaHost, *, meta_area_base: int, leaky: bool = True,
                 legacy_2022: bool = False, merge_right: bool | None = None) -> None:
        if merge_right is not None:
            if legacy_2022 and merge_right:
                raise ValueError("legacy_2022=True never merges; merge_right=True contradicts it")
            legacy_2022 = not merge_right
        self._host = host
        self._meta_base = meta_area_base
        self._meta_used = 0
        #: Payload addresses of blocks in the static meta area: `is_emalloc_reserve`
        #: is a test against this range, which the manager makes inline for every
        #: region record (read-only; the meta area never moves).
        self.meta_payloads = range(meta_area_base + HEADER_SIZE,
                                   meta_area_base + META_AREA_SIZE + HEADER_SIZE)
        self._leaky = leaky
        self._legacy_2022 = legacy_2022
        self._adding_reserve = False
        self._increment = INITIAL_RESERVE_SIZE
        # Reserves newest first (allocation order), and sorted by base (lookup).
        # Both start with a placeholder that has no room and owns no block, so that
        # the hot paths need no "no reserve yet" test: a malloc from it finds no
        # room and takes the slow path, and a block found in it is outside every
        # reserve. The placeholder lies below every address, with its bump at its base.
        no_reserve = _ReserveState(_BELOW_ALL, 0)
        self._newest = no_reserve
        self._reserves: list[_ReserveState] = []
        self._bases: list[int] = [_BELOW_ALL]
        self._by_base: list[_ReserveState] = [no_reserve]  # in the order of _bases
        # Which blocks are allocated, and the size of each, is in the reserves' header
        # tables; a free block is also in exactly one list.
        # Free blocks by end address, for `_pull_back_to_reserve`. The reference pulls
        # back only best-fit blocks, so the leaky model indexes only those; the
        # non-leaky deviation pulls back (and splits) every free block.
        self._free_at_end: dict[int, int] = {}
        # Exact lists: insertion-ordered dicts whose last key is the list head and
        # whose values are the blocks' reserves (so that taking the head finds its
        # header slot without a search), found by block size (no index arithmetic on
        # the hot paths); the sizes that are no block size share one dict that is
        # never written.
        never_a_block_size: dict[int, _ReserveState] = {}
        self._exact: list[dict[int, _ReserveState]] = (
            [never_a_block_size] * (MAX_EXACT_SIZE + 1))
        for bsize in range(MIN_BLOCK_SIZE, MAX_EXACT_SIZE + 1, BLOCK_ALIGN):
            self._exact[bsize] = {}
        # Bit i set iff exact list i holds a block; kept (and read) only by the
        # non-leaky deviation, which splits the smallest larger exact block.
        self._exact_nonempty = 0
        self._large: dict[int, int] = {}  # addr -> size; last item is the head

    # ------------------------------------------------------------------ public

    @property
    def adding_reserve(self) -> bool:
        """True while a reserve is being added: blocks then come from the meta area."""
        return self._adding_reserve

    @property
    def leaky(self) -> bool:
        return self._leaky

    @property
    def legacy_2022(self) -> bool:
        """True when modelling the pre-2023 reference, whose freed blocks never merge."""
        return self._legacy_2022

    @property
    def meta_area_base(self) -> int:
        return self._meta_base

    @property
    def meta_used(self) -> int:
        """Bytes of the meta area handed out (never given back)."""
        return self._meta_used

    @property
    def reserve_increment(self) -> int:
        """Size the next reserve will have at least (`reserve_size_increment`)."""
        return self._increment

    def init(self, initial_size: int = INITIAL_RESERVE_SIZE) -> None:
        """Add the initial reserve (`emalloc_init_reserve`); the increment then resets.

        Raises EmmError(ENOMEM) when the reserve cannot be added, as the reference
        returns ENOMEM.
        """
        if initial_size < 0:
            raise ValueError(f"negative reserve size {initial_size:#x}")
        if not self._add_reserve(initial_size):
            raise EmmError(errno.ENOMEM, "cannot add the initial metadata reserve")
        self._increment = INITIAL_RESERVE_SIZE

    def malloc(self, size: int) -> int | None:
        """`emalloc(size)`: the payload address, or None when no memory can be had.

        Runs several times per region created, so the two common cases are
        written out here in one Python call: the head of the request's
        exact-size list, and the newest reserve's bump pointer. Splitting,
        best fit and adding a reserve stay in helpers.
        """
        if self._adding_reserve:
            return self._alloc_from_meta(block_size_for(size))
        if size <= _MAX_EXACT_REQUEST and size >= 0:
            bsize = _EXACT_FIT[size]
            lst = self._exact[bsize]
            if lst:  # the list head is its newest entry (LIFO)
                block, owner = lst.popitem()
                owner.heads[(block - owner.base) >> 3] = bsize >> 3
                if not self._leaky:  # the deviation's extra books (see _unlist)
                    del self._free_at_end[block + bsize]
                    if not lst:
                        self._exact_nonempty &= ~(1 << _exact_index(bsize))
                return block + HEADER_SIZE
            if not self._leaky:
                taken = self._take_free_block(bsize)
                if taken is not None:
                    return taken + HEADER_SIZE
        else:
            bsize = block_size_for(size)  # ValueError for a negative size
            taken = self._take_free_block(bsize)
            if taken is not None:
                return taken + HEADER_SIZE
        reserve = self._newest
        block = reserve.bump
        end = block + bsize
        if end > reserve.touched_to:  # the block leaves the touched pages: rare
            return self._bump_touching(reserve, block, bsize)
        reserve.bump = end  # (the table covers the touched pages)
        reserve.heads[(block - reserve.base) >> 3] = bsize >> 3
        return block + HEADER_SIZE

    def _bump_touching(self, reserve: _ReserveState, block: int, bsize: int) -> int | None:
        """malloc's bump when the block ends past its reserve's touched pages: it may
        not fit (then older reserves, newest first, then a new one), and its header
        may need a touch.

        The header write is emalloc's only write; it faults in a page past the
        committed part. The caller touches the payload bytes it writes, in its
        own order. Every 8-byte word of a handed-out block holds a written byte,
        so all memory below a bump pointer has been touched: recycled blocks,
        split tails and free-list links need no touch. Nor does a header below
        its reserve's `touched_to`: every page there has been written, so it is
        committed (metadata pages are never uncommitted), and a touch would do
        nothing.
        """
        end = block + bsize
        if end > reserve.limit:
            found = self._reserve_with_room(bsize)
            if found is None:
                return None
            reserve, block = found, found.bump
            end = block + bsize
        reserve.bump = end
        # the table runs ahead of the touched pages too, for malloc's fast path
        reserve.cover(max(end, (block & ~_PAGE_MASK) + PAGE_SIZE))
        reserve.heads[(block - reserve.base) >> 3] = bsize >> 3
        if block >= reserve.touched_to:
            self._host.meta_touch(block, HEADER_SIZE)
            reserve.touched_to = min((block & ~_PAGE_MASK) + PAGE_SIZE, reserve.limit)
        return block + HEADER_SIZE

    def bump_region(self, data_size: int, touched_lo: int,
                    touched_hi: int) -> tuple[int, int, int] | None:
        """A new region's three blocks in one call: `malloc(REGION_RECORD_SIZE)`,
        `malloc(BITMAP_STRUCT_SIZE)`, `malloc(data_size)`, when all three come from
        the newest reserve's bump pointer and lie in [touched_lo, touched_hi),
        memory the caller knows is committed (so none of the touches of the three
        mallocs and of the caller's writes can have an effect). Returns the three
        payloads, or None with nothing changed: the caller then makes the mallocs
        one by one.

        Taking the bitmap's blocks with the record, before the manager's alloc
        ocall rather than after it, gives them the same addresses: nothing between
        the two touches the allocator. A failed ocall frees the three as one run,
        which leaves the allocator as freeing the record alone would have.
        """
        # not while a reserve is being added (blocks then come from the meta area),
        # nor in the non-leaky deviation (it splits listed blocks before it bumps)
        if (self._adding_reserve or not self._leaky or data_size > _MAX_EXACT_REQUEST
                or data_size < 0):
            return None
        size3 = _EXACT_FIT[data_size]
        exact = self._exact
        if exact[_RECORD_BLOCK] or exact[_STRUCT_BLOCK] or exact[size3]:
            return None  # a block would come from a list
        reserve = self._newest
        block = reserve.bump
        end = block + (_RECORD_AND_STRUCT_BLOCKS + size3)
        if end > reserve.limit or block < touched_lo or end > touched_hi:
            return None
        reserve.bump = end
        if end > reserve.covered:
            reserve.cover(end)
        heads = reserve.heads
        k = (block - reserve.base) >> 3
        heads[k] = _RECORD_UNITS
        heads[k + _RECORD_UNITS] = _STRUCT_UNITS
        heads[k + _RECORD_AND_STRUCT_UNITS] = size3 >> 3
        record = block + HEADER_SIZE
        return record, record + _RECORD_BLOCK, record + _RECORD_AND_STRUCT_BLOCKS

    def free(self, payload: int) -> None:
        """`efree(payload)`; EnclaveAbort where the reference aborts.

        Meta-area blocks are ignored while a reserve is being added and fatal at
        any other time; a block that no reserve handed out (or already free) is
        fatal (the reference aborts when no reserve's used part holds it, and
        corrupts its lists on a double free; we abort on both). The work is
        `free_region`'s for a region whose only block is this one, so that one
        body serves both.
        """
        self.free_region(None, None, payload)

    def free_region(self, data: int | None, struct: int | None, record: int | None) -> None:
        """ema_destroy's frees: bit data, `bit_array`, `ema_t`, in that order (None: the
        region has no such block), as one free when that gives the same result.

        A region's record, bitmap struct and bit data usually come from one bump
        pointer back to back, so each block freed ends where the one freed before
        it begins. Then each free merges the previous one into itself, and the
        allocator ends up exactly as after one free of the whole run: the merged
        blocks listed in between are unlisted again, leaving every list in its
        old order, and only the free that reaches the bump pointer gives space
        back to it. That one free is made here; otherwise (blocks elsewhere, the
        never-merging legacy model) the blocks are freed one by one, each as a
        run of one block through the same code. The common case (merge with
        free right neighbours, then list the run or give it back to the bump
        pointer) runs in this one Python call, on the header slots of one reserve.
        """
        if record is None:
            if data is not None or struct is not None:
                self._free_each(data, struct, record)
            return
        start = record - HEADER_SIZE
        end_slot = 0  # the header slot where the freed run ends; 0 until it is known
        found = self._slot(start)
        if found is not None:
            reserve, k = found
            heads = reserve.heads
            first = heads[k]  # > 0: allocated
            if data is None and struct is None:  # one block (`free`, or no bitmap)
                if first > 0:
                    heads[k] = 0
                    end_slot = k + first
            elif (data is not None and struct is not None and not self._legacy_2022
                    and first > 0 and struct - record == first << 3):
                # back to back: each block's size leads to the next one's slot (the
                # table's last slot is past the bump pointer, so every read is in it)
                j = k + first
                mid = heads[j]
                if mid > 0 and data - struct == mid << 3:
                    m = j + mid
                    last = heads[m]
                    if last > 0:
                        heads[k] = heads[j] = heads[m] = 0
                        end_slot = m + last
        if not end_slot:
            if data is None and struct is None:
                self._free_unallocated(record)
            else:
                self._free_each(data, struct, record)
            return
        end = start + ((end_slot - k) << 3)
        if not self._legacy_2022:
            # Merge free right neighbours up to the first block in use or the bump
            # (no block starts at or past a bump pointer, and its slot is 0; an
            # 8-byte tail lost by the best-fit list has a 0 slot too and stops it).
            while (right := heads[end_slot]) < 0:
                heads[end_slot] = 0
                self._unlist(end, -right << 3)
                end -= right << 3
                end_slot -= right
        if end == reserve.bump:
            reserve.bump = start
            self._pull_back_to_reserve(reserve)
            return
        self._put_free(reserve, k, start, end - start)

    def in_meta_area(self, payload: int) -> bool:
        """`is_emalloc_reserve`: the block lies in the static meta area."""
        return payload in self.meta_payloads

    def can_erealloc(self, payload: int) -> bool:
        """The reference's `can_erealloc`: may alloc re-use the region this record tracks?

        Records of the allocator's own reserves (meta area) may not be re-used,
        except while the reserve is being added (its FIXED alloc over its own
        RESERVE region).
        """
        return self._adding_reserve or payload not in self.meta_payloads

    def reserves(self) -> list[Reserve]:
        """Snapshots of the reserves, newest first (the order blocks are sought in)."""
        return [r.snapshot() for r in self._reserves]

    def block_size(self, payload: int) -> int | None:
        """Size of the allocated reserve block at `payload`, or None."""
        found = self._slot(payload - HEADER_SIZE)
        if found is None:
            return None
        reserve, k = found
        units = reserve.heads[k]
        return units << 3 if units > 0 else None

    def free_blocks(self) -> list[tuple[int, int]]:
        """(address, size) of every free block, by address (diagnostics; O(n log n))."""
        out = [(block, bsize) for bsize in range(MIN_BLOCK_SIZE, MAX_EXACT_SIZE + 1, BLOCK_ALIGN)
               for block in self._exact[bsize]]
        out.extend(self._large.items())
        return sorted(out)

    # --------------------------------------------------------------- internals

    def _slot(self, block: int) -> tuple[_ReserveState, int] | None:
        """The reserve and header slot of an address in a reserve's used part, or None
        (`find_used_in_reserve`: the reserve with the highest base <= the address;
        a reserve's base is 8-aligned, so an aligned address has a slot of its own)."""
        reserve = self._by_base[bisect_right(self._bases, block) - 1]
        if block >= reserve.bump or block & 7:
            return None
        return reserve, (block - reserve.base) >> 3

    def _free_block_size(self, block: int) -> tuple[_ReserveState, int]:
        """The reserve and size of a listed free block."""
        found = self._slot(block)
        assert found is not None, f"listed free block {block:#x} is in no reserve's used part"
        reserve, k = found
        units = reserve.heads[k]
        assert units < 0, f"listed free block {block:#x} is not free in its header table"
        return reserve, -units << 3

    def _free_each(self, data: int | None, struct: int | None, record: int | None) -> None:
        """`free_region`'s blocks freed one by one, in its order (each as a region of
        one block: `free` without its extra call)."""
        for payload in (data, struct, record):
            if payload is not None:
                self.free_region(None, None, payload)

    def _free_unallocated(self, payload: int) -> None:
        """efree of a block no reserve has handed out (or already free).

        Meta-area blocks are freed by the manager's own clean-up while a reserve
        is being added, and ignored; anything else is fatal.
        """
        if payload in self.meta_payloads:
            if self._adding_reserve:
                return
            raise EnclaveAbort(f"efree of meta-area block {payload:#x} outside add_reserve")
        raise EnclaveAbort(f"efree of unknown metadata block {payload:#x}")

    def _alloc_from_meta(self, bsize: int) -> int | None:
        if self._meta_used + bsize > META_AREA_SIZE:
            return None
        block = self._meta_base + self._meta_used
        self._meta_used += bsize
        return block + HEADER_SIZE

    def _take_free_block(self, bsize: int) -> int | None:
        """After the exact-size list came up empty: a block split off a larger free
        one (exact lists first in the non-leaky deviation, then best fit), already
        marked allocated, or None."""
        if bsize <= MAX_EXACT_SIZE:
            found = self._smallest_splittable_exact(bsize)
            if found is not None:
                return self._hand_out(found, bsize)
        best = self._best_fit_large(bsize)
        if best is None:
            return None
        return self._hand_out(best, bsize)

    def _hand_out(self, block: int, bsize: int) -> int:
        """Unlist a free block and allocate `bsize` bytes of it."""
        reserve, have = self._free_block_size(block)
        self._unlist(block, have)
        k = (block - reserve.base) >> 3
        rest = have - bsize
        if rest >= MIN_BLOCK_SIZE:
            self._put_free(reserve, k + (bsize >> 3), block + bsize, rest)
        elif rest and not self._leaky:
            bsize = have  # deviation 2: keep the short tail inside the block
        # Leaky: a short tail (8 bytes) is left in no block (its slot stays 0), as the
        # reference does.
        reserve.heads[k] = bsize >> 3
        return block

    def _smallest_splittable_exact(self, bsize: int) -> int | None:
        """Head of the smallest non-empty exact list with blocks >= bsize + 16."""
        first = _exact_index(bsize) + MIN_BLOCK_SIZE // BLOCK_ALIGN
        candidates = self._exact_nonempty >> first
        if not candidates:
            return None
        index = first + (candidates & -candidates).bit_length() - 1
        return next(reversed(self._exact[MIN_BLOCK_SIZE + BLOCK_ALIGN * index]))

    def _best_fit_large(self, bsize: int) -> int | None:
        """Smallest fitting block, first from the head on ties (the reference's walk)."""
        best: int | None = None
        best_size = 0
        for block, size in reversed(self._large.items()):
            if size >= bsize and (best is None or size < best_size):
                best, best_size = block, size
        return best

    def _reserve_with_room(self, bsize: int) -> _ReserveState | None:
        """The newest reserve with room for `bsize` (reserves are walked newest first);
        when none has any, a reserve is added and returned (None if that fails)."""
        for reserve in self._reserves:
            if reserve.limit - reserve.bump >= bsize:
                return reserve
        if not self._add_reserve(_round_up(bsize + RESERVE_HEADER_SIZE, INITIAL_RESERVE_SIZE)):
            return None
        reserve = self._newest
        if reserve.limit - reserve.bump < bsize:  # the reference's "should never happen"
            return None
        return reserve

    def _add_reserve(self, wanted: int) -> bool:
        """`add_reserve`: RESERVE guard range, FIXED on-demand middle, commit `wanted`."""
        if self._adding_reserve:
            return True
        self._increment = max(self._increment, wanted)
        increment = self._increment
        self._adding_reserve = True
        try:
            try:
                base = self._host.meta_alloc_region(None, increment + 2 * GUARD_SIZE,
                                                    int(RESERVE))
                region = self._host.meta_alloc_region(base + GUARD_SIZE, increment,
                                                      int(COMMIT_ON_DEMAND | FIXED))
            except EmmError:
                return False
            with contextlib.suppress(EmmError):  # the reference ignores its result
                self._host.meta_commit(region, wanted)
            self._new_reserve(region, increment)
            self._increment = min(increment * 2, MAX_RESERVE_SIZE)
            return True
        finally:
            self._adding_reserve = False

    def _new_reserve(self, region: int, increment: int) -> None:
        self._host.meta_touch(region, RESERVE_HEADER_SIZE)
        reserve = _ReserveState(region + RESERVE_HEADER_SIZE, increment - RESERVE_HEADER_SIZE)
        self._reserves.insert(0, reserve)
        self._newest = reserve
        i = bisect_right(self._bases, reserve.base)
        self._bases.insert(i, reserve.base)
        self._by_base.insert(i, reserve)

    def _pull_back_to_reserve(self, reserve: _ReserveState) -> None:
        """`merge_large_blocks_to_reserve`: give free blocks at the bump back to it.

        Only indexed blocks are found (`_free_at_end`): in the leaky model those of
        the best-fit list, the only ones the reference looks at.
        """
        heads, base = reserve.heads, reserve.base
        while (block := self._free_at_end.get(reserve.bump)) is not None:
            k = (block - base) >> 3
            self._unlist(block, -heads[k] << 3)
            heads[k] = 0
            reserve.bump = block

    def _put_free(self, reserve: _ReserveState, k: int, block: int, size: int) -> None:
        """`put_free_block`: mark the block (header slot `k` of `reserve`) free and
        prepend it to its exact list or to the best-fit list."""
        reserve.heads[k] = -(size >> 3)
        if size <= MAX_EXACT_SIZE:
            self._exact[size][block] = reserve
            if not self._leaky:  # the deviation's extra books (see __init__)
                self._free_at_end[block + size] = block
                self._exact_nonempty |= 1 << _exact_index(size)
        else:
            self._large[block] = size
            self._free_at_end[block + size] = block

    def _unlist(self, block: int, size: int) -> None:
        """Take a free block of `size` bytes out of its lists (its header slot is the
        caller's to rewrite)."""
        if size <= MAX_EXACT_SIZE:
            lst = self._exact[size]
            del lst[block]
            if not self._leaky:
                del self._free_at_end[block + size]
                if not lst:
                    self._exact_nonempty &= ~(1 << _exact_index(size))
        else:
            del self._large[block]
            del self._free_at_end[block + size]


__all__ = [
    "BITMAP_STRUCT_SIZE",
    "BLOCK_ALIGN",
    "GUARD_SIZE",
    "HEADER_SIZE",
    "INITIAL_RESERVE_SIZE",
    "MAX_EXACT_SIZE",
    "MAX_RESERVE_SIZE",
    "META_AREA_SIZE",
    "MIN_BLOCK_SIZE",
    "REGION_RECORD_SIZE",
    "RESERVE_HEADER_SIZE",
    "MetaAllocator",
    "MetaHost",
    "Reserve",
    "block_size_for",
]

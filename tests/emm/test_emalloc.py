"""The metadata allocator: block sizes, free lists, merging and reserve growth.

A fake manager hands out address space by a simple bump, so every address the
allocator returns can be asserted exactly. Like the real manager it allocates a
region record (80-byte block) for every region, and a bitmap (32-byte header +
data) for non-RESERVE ones, through the allocator it serves.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sgx_emm import Enclave
from sgx_emm.emm.emalloc import (
    GUARD_SIZE,
    HEADER_SIZE,
    INITIAL_RESERVE_SIZE,
    MAX_EXACT_SIZE,
    MAX_RESERVE_SIZE,
    META_AREA_SIZE,
    RESERVE_HEADER_SIZE,
    MetaAllocator,
    Reserve,
    block_size_for,
)
from sgx_emm.errors import EmmError, EnclaveAbort
from sgx_emm.flags import COMMIT_ON_DEMAND, FIXED, PAGE_SIZE, RESERVE

META_BASE = 0x1000_0000
USER_BASE = 0x4000_0000
EMA = 72  # sizeof(ema_t): an 80-byte block
BITMAP = 24  # sizeof(bit_array): a 32-byte block


@dataclass
class FakeHost:
    """Records every call; allocates address space by bump from USER_BASE."""

    next_addr: int = USER_BASE
    fail_alloc: set[int] = field(default_factory=set)  # 1-based indices of failing allocs
    fail_commit: bool = False
    calls: list[tuple[str, int | None, int, int]] = field(default_factory=list)
    records: list[int] = field(default_factory=list)  # metadata payloads it allocated
    seen_adding: list[bool] = field(default_factory=list)
    allocator: MetaAllocator | None = None
    record_size: int = EMA
    n_allocs: int = 0

    def meta_alloc_region(self, addr: int | None, size: int, flags: int) -> int:
        self.calls.append(("alloc", addr, size, flags))
        self.n_allocs += 1
        if self.n_allocs in self.fail_alloc:
            raise EmmError(errno.ENOMEM)
        assert self.allocator is not None
        self.seen_adding.append(self.allocator.adding_reserve)
        payloads = [self.allocator.malloc(self.record_size)]
        if not flags & RESERVE:
            payloads.append(self.allocator.malloc(BITMAP))
            payloads.append(self.allocator.malloc(-(-size // PAGE_SIZE // 8)))
        if any(p is None for p in payloads):
            raise EmmError(errno.ENOMEM)
        self.records += [p for p in payloads if p is not None]
        if addr is None:
            addr = self.next_addr
            self.next_addr += size
        return addr

    def meta_commit(self, addr: int, size: int) -> None:
        self.calls.append(("commit", addr, size, 0))
        if self.fail_commit:
            raise EmmError(errno.EINVAL)

    def meta_touch(self, addr: int, size: int) -> None:
        self.calls.append(("touch", addr, size, 0))

    def touches(self) -> list[tuple[int, int]]:
        return [(a or 0, s) for kind, a, s, _ in self.calls if kind == "touch"]


def make(leaky: bool = True, *, init: bool = True, host: FakeHost | None = None,
         legacy_2022: bool = False) -> tuple[MetaAllocator, FakeHost]:
    host = host or FakeHost()
    alloc = MetaAllocator(host, meta_area_base=META_BASE, leaky=leaky,
                          legacy_2022=legacy_2022)
    host.allocator = alloc
    if init:
        alloc.init()
    return alloc, host


def first_reserve_base() -> int:
    """Where the initial reserve's blocks start with the fake host's bump."""
    return USER_BASE + GUARD_SIZE + RESERVE_HEADER_SIZE


# ---------------------------------------------------------------- block sizes

@pytest.mark.parametrize(("request_size", "block"), [
    (0, 16), (1, 16), (8, 16), (9, 24), (16, 24), (24, 32), (72, 80),
    (2048, 2056), (2049, 2064), (4088, 4096),
])
def test_block_size_is_request_plus_header_rounded_to_8_min_16(request_size: int,
                                                               block: int) -> None:
    assert block_size_for(request_size) == block


def test_consecutive_blocks_are_laid_out_by_their_block_size() -> None:
    alloc, _ = make()
    base = first_reserve_base()
    got = [alloc.malloc(n) for n in (EMA, BITMAP, 1, 9, 0)]
    assert got == [base + 8, base + 88, base + 120, base + 136, base + 160]
    assert [alloc.block_size(p) for p in got if p is not None] == [80, 32, 16, 24, 16]
    assert alloc.reserves()[0].used == 80 + 32 + 16 + 24 + 16


def test_negative_size_is_refused_and_changes_nothing() -> None:
    alloc, host = make()
    before = (alloc.reserves(), len(host.calls))
    with pytest.raises(ValueError):
        alloc.malloc(-1)
    assert (alloc.reserves(), len(host.calls)) == before


# ----------------------------------------------------------- exact-size lists

def test_exact_size_list_hands_blocks_back_last_freed_first() -> None:
    alloc, _ = make()
    a, b, c, d = (alloc.malloc(EMA) for _ in range(4))
    assert a and b and c and d
    alloc.free(a)  # right neighbour b is allocated: no merge
    alloc.free(c)  # right neighbour d is allocated: no merge
    used = alloc.reserves()[0].used
    assert alloc.malloc(EMA) == c
    assert alloc.malloc(EMA) == a
    assert alloc.malloc(EMA) == d + 80  # lists empty: bump pointer
    assert alloc.reserves()[0].used == used + 80


def test_exact_list_serves_only_its_own_size() -> None:
    alloc, _ = make()
    a, guard = alloc.malloc(EMA), alloc.malloc(EMA)
    assert a and guard
    alloc.free(a)
    # An 80-byte free block does not serve a 32-byte or an 88-byte request.
    assert alloc.malloc(BITMAP) == guard + 80
    assert alloc.malloc(EMA + 8) == guard + 80 + 32
    assert alloc.free_blocks() == [(a - HEADER_SIZE, 80)]


# ------------------------------------------------------------ the 128-byte leak

def _region_record(alloc: MetaAllocator) -> tuple[int, int, int]:
    ema, ba, data = alloc.malloc(EMA), alloc.malloc(BITMAP), alloc.malloc(1)
    assert ema and ba and data
    return ema, ba, data


def _free_region_record(alloc: MetaAllocator, rec: tuple[int, int, int]) -> None:
    ema, ba, data = rec
    for payload in (data, ba, ema):  # ema_destroy: bit_array_delete, then the EMA
        alloc.free(payload)


def test_freed_region_record_merges_into_one_128_byte_block_never_reused() -> None:
    alloc, _ = make()
    rec = _region_record(alloc)
    guard = alloc.malloc(EMA)
    assert guard
    _free_region_record(alloc, rec)
    ema = rec[0]
    assert alloc.free_blocks() == [(ema - HEADER_SIZE, 128)]
    # The next record comes from the bump pointer, not from the merged block.
    again = _region_record(alloc)
    assert again == (guard + 80, guard + 160, guard + 192)
    assert alloc.free_blocks() == [(ema - HEADER_SIZE, 128)]
    # Only a request of exactly 128 bytes gets it.
    assert alloc.malloc(120) == ema


def test_churn_with_constant_live_regions_adds_reserves_when_leaky() -> None:
    alloc, _ = make()
    live = [_region_record(alloc), _region_record(alloc)]
    for _ in range(1000):
        _free_region_record(alloc, live.pop(0))
        live.append(_region_record(alloc))
    assert len(alloc.reserves()) > 1


def test_churn_with_constant_live_regions_stays_in_one_reserve_when_not_leaky() -> None:
    alloc, _ = make(leaky=False)
    live = [_region_record(alloc), _region_record(alloc)]
    for _ in range(1000):
        _free_region_record(alloc, live.pop(0))
        live.append(_region_record(alloc))
    assert len(alloc.reserves()) == 1
    assert alloc.reserves()[0].used <= 3 * 128


def test_non_leaky_splits_the_merged_block_for_the_next_record() -> None:
    alloc, _ = make(leaky=False)
    rec = _region_record(alloc)
    guard = alloc.malloc(EMA)
    _free_region_record(alloc, rec)
    assert _region_record(alloc) == rec
    assert alloc.free_blocks() == []
    assert guard is not None and alloc.reserves()[0].used == 208


def test_merge_swallows_several_free_right_neighbours() -> None:
    alloc, _ = make()
    a, b, c, d = (alloc.malloc(EMA) for _ in range(4))
    assert a and b and c and d
    alloc.free(c)
    alloc.free(b)  # absorbs c
    assert alloc.free_blocks() == [(b - HEADER_SIZE, 160)]
    alloc.free(a)  # absorbs b+c
    assert alloc.free_blocks() == [(a - HEADER_SIZE, 240)]
    assert alloc.malloc(232) == a


def test_pre_2023_allocator_keeps_freed_blocks_apart() -> None:
    """`legacy_2022=True`: the reference before 893dcbc never merged, so a freed
    record's three blocks are re-used exactly by the next record."""
    alloc, _ = make(legacy_2022=True)
    assert alloc.legacy_2022
    rec = _region_record(alloc)
    alloc.malloc(EMA)
    _free_region_record(alloc, rec)
    assert len(alloc.free_blocks()) == 3
    assert _region_record(alloc) == rec


def test_the_default_follows_the_reference_today() -> None:
    host = FakeHost()
    assert not MetaAllocator(host, meta_area_base=META_BASE).legacy_2022


@pytest.mark.parametrize(("merge_right", "legacy"), [(True, False), (False, True)])
def test_merge_right_is_the_older_spelling_of_the_same_choice(merge_right: bool,
                                                               legacy: bool) -> None:
    alloc = MetaAllocator(FakeHost(), meta_area_base=META_BASE, merge_right=merge_right)
    assert alloc.legacy_2022 is legacy


def test_merge_right_contradicting_legacy_2022_is_refused() -> None:
    with pytest.raises(ValueError, match="contradicts"):
        MetaAllocator(FakeHost(), meta_area_base=META_BASE, legacy_2022=True,
                      merge_right=True)


# ------------------------------------------------------ large list: best fit

def _large_blocks(alloc: MetaAllocator, *sizes: int) -> list[int]:
    """Allocate blocks of the given sizes, each followed by a 16-byte separator."""
    out = []
    for size in sizes:
        payload = alloc.malloc(size - HEADER_SIZE)
        assert payload and alloc.malloc(1)
        out.append(payload)
    return out


def test_large_list_takes_the_smallest_fitting_block_and_splits_the_rest() -> None:
    alloc, _ = make()
    a, b, c = _large_blocks(alloc, 4096, 3072, 8192)
    for p in (a, b, c):
        alloc.free(p)
    used = alloc.reserves()[0].used
    assert alloc.malloc(2560 - HEADER_SIZE) == b  # 3072 is the best fit
    assert alloc.block_size(b) == 2560
    tail = b - HEADER_SIZE + 2560
    assert (tail, 512) in alloc.free_blocks()  # the rest went to the 512 list
    assert alloc.malloc(512 - HEADER_SIZE) == tail + HEADER_SIZE
    assert alloc.malloc(4096 - HEADER_SIZE) == a  # exact fit: no split
    assert alloc.block_size(a) == 4096
    assert alloc.reserves()[0].used == used


def test_large_list_prefers_the_most_recently_freed_on_equal_sizes() -> None:
    alloc, _ = make()
    a, b = _large_blocks(alloc, 3072, 3072)
    alloc.free(a)
    alloc.free(b)
    assert alloc.malloc(3000) == b
    assert alloc.malloc(3000) == a


def test_large_list_never_serves_a_larger_request() -> None:
    alloc, _ = make()
    (a,) = _large_blocks(alloc, 3072)
    alloc.free(a)
    used = alloc.reserves()[0].used
    got = alloc.malloc(4096)
    assert got == first_reserve_base() + used + HEADER_SIZE
    assert alloc.free_blocks() == [(a - HEADER_SIZE, 3072)]


def test_best_fit_rest_under_16_bytes_is_lost_when_leaky() -> None:
    alloc, _ = make()
    (a,) = _large_blocks(alloc, 3072)
    alloc.free(a)
    assert alloc.malloc(3064 - HEADER_SIZE) == a
    assert alloc.block_size(a) == 3064  # the 8-byte tail belongs to no block
    assert alloc.free_blocks() == []
    alloc.free(a)  # its right neighbour is the lost tail: nothing to merge
    assert alloc.free_blocks() == [(a - HEADER_SIZE, 3064)]


def test_best_fit_rest_under_16_bytes_stays_in_the_block_when_not_leaky() -> None:
    alloc, _ = make(leaky=False)
    (a,) = _large_blocks(alloc, 3072)
    alloc.free(a)
    assert alloc.malloc(3064 - HEADER_SIZE) == a
    assert alloc.block_size(a) == 3072
    alloc.free(a)
    assert alloc.free_blocks() == [(a - HEADER_SIZE, 3072)]


# ---------------------------------------------------------- the bump pointer

def test_freeing_the_last_block_moves_the_bump_pointer_back() -> None:
    alloc, _ = make()
    a, b = alloc.malloc(EMA), alloc.malloc(BITMAP)
    assert a and b
    alloc.free(b)
    assert alloc.reserves()[0].used == 80
    assert alloc.free_blocks() == []
    assert alloc.malloc(BITMAP) == b


def test_bump_pointer_back_pulls_large_free_blocks_ending_there() -> None:
    alloc, _ = make()
    small, big, last = alloc.malloc(EMA), alloc.malloc(4088), alloc.malloc(EMA)
    assert small and big and last
    alloc.free(big)  # right neighbour allocated: goes to the large list
    alloc.free(last)  # at the bump: moves back over itself and then over `big`
    assert alloc.reserves()[0].used == 80
    assert alloc.free_blocks() == []


def test_bump_pointer_back_leaves_exact_size_blocks_when_leaky() -> None:
    alloc, _ = make()
    a, b, c = (alloc.malloc(EMA) for _ in range(3))
    assert a and b and c
    alloc.free(b)
    alloc.free(c)
    assert alloc.reserves()[0].used == 160  # b stays in the 80 list
    assert alloc.free_blocks() == [(b - HEADER_SIZE, 80)]
    assert alloc.malloc(EMA) == b


def test_bump_pointer_back_takes_exact_size_blocks_when_not_leaky() -> None:
    alloc, _ = make(leaky=False)
    a, b, c = (alloc.malloc(EMA) for _ in range(3))
    assert a and b and c
    alloc.free(b)
    alloc.free(c)
    assert alloc.reserves()[0].used == 80
    assert alloc.free_blocks() == []


def test_merged_block_reaching_the_bump_pointer_gives_it_all_back() -> None:
    alloc, _ = make()
    a, b, c = (alloc.malloc(EMA) for _ in range(3))
    assert a and b and c
    alloc.free(c)
    alloc.free(b)
    alloc.free(a)
    assert alloc.reserves()[0].used == 0
    assert alloc.free_blocks() == []


# --------------------------------------------------------------- reserves

def test_init_adds_the_initial_reserve_through_the_manager() -> None:
    alloc, host = make()
    region = USER_BASE + GUARD_SIZE
    assert [c for c in host.calls if c[0] != "touch"] == [
        ("alloc", None, 0x10000 + 2 * GUARD_SIZE, RESERVE),
        ("alloc", region, 0x10000, COMMIT_ON_DEMAND | FIXED),
        ("commit", region, 0x10000, 0),
    ]
    assert host.touches() == [(region, RESERVE_HEADER_SIZE)]  # the mm_reserve_t header
    assert alloc.reserves() == [Reserve(region + 32, 0x10000 - 32, 0)]
    assert alloc.reserve_increment == INITIAL_RESERVE_SIZE
    assert not alloc.adding_reserve


def test_a_larger_initial_reserve_resets_the_increment_afterwards() -> None:
    alloc, host = make(init=False)
    alloc.init(0x30000)
    assert host.calls[0] == ("alloc", None, 0x30000 + 2 * GUARD_SIZE, RESERVE)
    assert host.calls[2] == ("commit", USER_BASE + GUARD_SIZE, 0x30000, 0)
    assert alloc.reserves()[0].size == 0x30000 - 32
    assert alloc.reserve_increment == INITIAL_RESERVE_SIZE


def test_region_records_of_reserves_come_from_the_meta_area() -> None:
    alloc, host = make()
    assert host.seen_adding == [True, True]
    # RESERVE: 80; COMMIT_ON_DEMAND of 16 pages: 80 + 32 + 16, bumped in order.
    assert host.records == [META_BASE + 8, META_BASE + 88, META_BASE + 168, META_BASE + 200]
    assert alloc.meta_used == 80 + 80 + 32 + 16
    assert all(alloc.in_meta_area(p) for p in host.records)
    assert not alloc.can_erealloc(host.records[0])
    # Records of user regions come from the reserve.
    user = alloc.malloc(EMA)
    assert user is not None and not alloc.in_meta_area(user) and alloc.can_erealloc(user)


def test_a_block_that_does_not_fit_adds_a_reserve_and_newest_is_used_first() -> None:
    alloc, host = make()
    big = alloc.malloc(0x8000 - HEADER_SIZE)
    assert big == first_reserve_base() + HEADER_SIZE
    n = len(host.calls)
    second = alloc.malloc(0x8000 - HEADER_SIZE)  # 0x7fe0 left: does not fit
    base2 = USER_BASE + 0x10000 + 2 * GUARD_SIZE
    region2 = base2 + GUARD_SIZE
    assert [c for c in host.calls[n:] if c[0] != "touch"] == [
        ("alloc", None, 0x10000 + 2 * GUARD_SIZE, RESERVE),
        ("alloc", region2, 0x10000, COMMIT_ON_DEMAND | FIXED),
        ("commit", region2, 0x10000, 0),  # round_up(0x8000 + 32, 0x10000)
    ]
    assert second == region2 + RESERVE_HEADER_SIZE + HEADER_SIZE
    assert alloc.reserve_increment == 0x20000
    # Newest reserve first, then older ones with room.
    assert alloc.malloc(0x7FE0 - HEADER_SIZE) == second + 0x8000  # fills it exactly
    older = alloc.malloc(EMA)
    assert older == big + 0x8000
    assert [r.used for r in alloc.reserves()] == [0x10000 - 32, 0x8000 + 80]


def _fixed_sizes(host: FakeHost) -> list[int]:
    return [size for kind, _, size, flags in host.calls if kind == "alloc" and flags & FIXED]


def test_reserve_increment_doubles_after_each_reserve() -> None:
    alloc, host = make()
    for _ in range(15 + 15 + 31 + 63 + 1):  # fills reserves of 64K, 64K, 128K, 256K
        assert alloc.malloc(0x1000 - HEADER_SIZE) is not None
    assert _fixed_sizes(host) == [0x10000, 0x10000, 0x20000, 0x40000, 0x80000]
    commits = [size for kind, _, size, _ in host.calls if kind == "commit"]
    assert commits == [0x10000] * 5  # round_up(block + 32, 64K), not the increment
    assert alloc.reserve_increment == 0x100000
    assert [r.used for r in alloc.reserves()] == [0x1000, 0x3F000, 0x1F000, 0xF000, 0xF000]


def test_reserve_increment_is_at_least_the_request_and_capped() -> None:
    alloc, host = make()
    assert alloc.malloc(MAX_RESERVE_SIZE) is not None
    assert _fixed_sizes(host)[-1] == MAX_RESERVE_SIZE + 0x10000
    assert alloc.reserve_increment == MAX_RESERVE_SIZE
    assert alloc.malloc(0x20000) is not None  # fits in no reserve
    assert _fixed_sizes(host)[-1] == MAX_RESERVE_SIZE
    assert alloc.reserve_increment == MAX_RESERVE_SIZE


def test_the_header_of_a_fresh_reserve_block_is_touched() -> None:
    alloc, host = make()
    n = len(host.calls)
    a = alloc.malloc(EMA)
    assert a is not None
    assert host.calls[n:] == [("touch", a - HEADER_SIZE, HEADER_SIZE, 0)]
    alloc.malloc(EMA)
    alloc.free(a)
    n = len(host.calls)
    assert alloc.malloc(EMA) == a  # recycled: already touched when first handed out
    assert host.calls[n:] == []


def test_failed_first_alloc_gives_enomem_and_no_reserve() -> None:
    alloc, host = make(init=False, host=FakeHost(fail_alloc={1}))
    with pytest.raises(EmmError) as err:
        alloc.init()
    assert err.value.errno == errno.ENOMEM
    assert alloc.reserves() == [] and not alloc.adding_reserve


def test_failed_fixed_alloc_gives_enomem_and_no_reserve() -> None:
    alloc, host = make(init=False, host=FakeHost(fail_alloc={2}))
    with pytest.raises(EmmError):
        alloc.init()
    assert alloc.reserves() == [] and not alloc.adding_reserve
    assert all(c[0] == "alloc" for c in host.calls)  # nothing committed


def test_failed_reserve_makes_malloc_return_none_and_keeps_state() -> None:
    alloc, host = make(host=FakeHost(fail_alloc={3}))
    used = alloc.reserves()
    assert alloc.malloc(0x10000) is None
    assert alloc.reserves() == used and not alloc.adding_reserve
    assert alloc.reserve_increment == 0x20000  # raised to the request, not doubled
    assert alloc.malloc(EMA) == first_reserve_base() + HEADER_SIZE


def test_a_failed_commit_is_ignored_as_in_the_reference() -> None:
    alloc, _ = make(init=False, host=FakeHost(fail_commit=True))
    alloc.init()
    assert len(alloc.reserves()) == 1


def test_exhausted_meta_area_makes_the_reserve_fail() -> None:
    alloc, _ = make(init=False, host=FakeHost(record_size=META_AREA_SIZE))
    with pytest.raises(EmmError) as err:
        alloc.init()
    assert err.value.errno == errno.ENOMEM
    assert alloc.meta_used == 0


def test_negative_initial_size_is_refused() -> None:
    alloc, host = make(init=False)
    with pytest.raises(ValueError):
        alloc.init(-1)
    assert host.calls == [] and alloc.reserves() == []


# --------------------------------------------------------------- aborts

def test_freeing_a_meta_block_outside_adding_reserve_aborts() -> None:
    alloc, host = make()
    with pytest.raises(EnclaveAbort):
        alloc.free(host.records[0])
    assert alloc.meta_used == 208


def test_freeing_a_meta_block_while_adding_a_reserve_is_ignored() -> None:
    freed: list[int] = []

    class SplittingHost(FakeHost):
        def meta_alloc_region(self, addr: int | None, size: int, flags: int) -> int:
            got = super().meta_alloc_region(addr, size, flags)
            if flags & FIXED:  # the manager frees the RESERVE record it re-uses
                assert self.allocator is not None
                self.allocator.free(self.records[0])
                freed.append(self.records[0])
            return got

    alloc, _ = make(host=SplittingHost())
    assert freed and alloc.meta_used == 208
    assert len(alloc.reserves()) == 1


@pytest.mark.parametrize("where", ["unknown", "twice", "outside", "misaligned", "inside",
                                   "negative", "past the reserve"])
def test_freeing_an_unknown_block_aborts_and_changes_nothing(where: str) -> None:
    alloc, _ = make()
    a, b = alloc.malloc(EMA), alloc.malloc(EMA)
    assert a and b
    target = {"unknown": b + 80, "twice": a, "outside": 0x10, "misaligned": b + 4,
              "inside": b + 8, "negative": -0x1000,
              "past the reserve": first_reserve_base() + INITIAL_RESERVE_SIZE}[where]
    if where == "twice":
        alloc.free(a)
    before = (alloc.reserves(), alloc.free_blocks())
    with pytest.raises(EnclaveAbort):
        alloc.free(target)
    assert (alloc.reserves(), alloc.free_blocks()) == before


def test_a_huge_reserve_costs_memory_for_its_used_part_only() -> None:
    """The books of a reserve grow with the blocks carved from it, not with its size:
    a 256 MiB reserve with a few blocks in it takes well under a megabyte."""
    import tracemalloc

    alloc, _ = make(init=False)
    tracemalloc.start()
    try:
        alloc.init(MAX_RESERVE_SIZE)
        blocks = [alloc.malloc(EMA) for _ in range(100)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert all(blocks) and alloc.reserves()[0].size >= MAX_RESERVE_SIZE - RESERVE_HEADER_SIZE
    assert peak < 1 << 20
    for payload in blocks:  # and every block is still found
        assert alloc.block_size(payload) == 80


@pytest.mark.parametrize(("options", "legacy"), [
    ({}, False), ({"emalloc_legacy_2022": True}, True), ({"emalloc_merge_right": False}, True),
    ({"emalloc_merge_right": True}, False)])
def test_enclave_create_passes_the_allocator_choice_to_the_manager(
        options: dict[str, bool], legacy: bool) -> None:
    enc = Enclave.create(threads=1, **options)
    meta = enc.emm.meta_allocator
    assert isinstance(meta, MetaAllocator) and meta.legacy_2022 is legacy


# ------------------------------------------- one-call paths of a region's blocks

def _state(alloc: MetaAllocator, records: list[tuple[int, int, int]]) -> object:
    return (alloc.free_blocks(), alloc.reserves(),
            [[alloc.block_size(p) for p in rec] for rec in records])


@settings(max_examples=60, deadline=None)
@given(leaky=st.booleans(), legacy=st.booleans(),
       ops=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 50), st.integers(0, 600)),
                    max_size=120))
def test_free_region_and_bump_region_leave_the_state_the_single_calls_leave(
        leaky: bool, legacy: bool, ops: list[tuple[int, int, int]]) -> None:
    """Regions made with `bump_region` and destroyed with
    `free_region` get the same addresses and leave the same free blocks, reserves
    and block sizes as with one `malloc` / `free` per block; the header touches
    the one-call paths skip all lie in the range the caller said is committed,
    and no other touch differs."""
    lo, hi = USER_BASE, USER_BASE + 0x28000  # "committed": the first reserve and a bit
    fast, fast_host = make(leaky, legacy_2022=legacy)
    slow, slow_host = make(leaky, legacy_2022=legacy)
    live: list[tuple[tuple[int, int, int], tuple[int, int, int]]] = []
    for kind, pick, size in ops:
        if kind <= 1 or not live:  # a region: record, then bitmap struct and data
            rec_s = slow.malloc(EMA)
            blocks = fast.bump_region(size, lo, hi) if kind == 0 else None
            if blocks is not None:
                rec_f, *pair = blocks
            else:
                rec_f = fast.malloc(EMA)
                pair = [fast.malloc(BITMAP), fast.malloc(size)]  # type: ignore[list-item]
            got = (slow.malloc(BITMAP), slow.malloc(size))
            assert (rec_f, *pair) == (rec_s, *got)
            if None in got:
                break  # the fake host's address space ran out the same way on both
            live.append(((rec_f, *pair), (rec_s, *got)))  # type: ignore[arg-type]
        elif kind == 2:  # destroy one: bit data, bit_array, record
            (rec_f, st_f, data_f), (rec_s, st_s, data_s) = live.pop(pick % len(live))
            fast.free_region(data_f, st_f, rec_f)
            for payload in (data_s, st_s, rec_s):
                slow.free(payload)
        else:  # a lone block in between, so that regions are not always back to back
            a, b = fast.malloc(size), slow.malloc(size)
            assert a == b
            if a is not None and pick % 2:
                fast.free(a)
                slow.free(a)
        assert _state(fast, [f for f, _ in live]) == _state(slow, [s for _, s in live])
    outside = [t for t in slow_host.touches() if not lo <= t[0] < hi]
    assert [t for t in fast_host.touches() if not lo <= t[0] < hi] == outside


def test_free_region_of_blocks_not_back_to_back_frees_them_one_by_one() -> None:
    alloc, _ = make()
    rec = alloc.malloc(EMA)
    gap = alloc.malloc(EMA)
    struct, data = alloc.malloc(BITMAP), alloc.malloc(1)
    assert rec and gap and struct and data and alloc.malloc(EMA)  # not at the bump
    alloc.free_region(data, struct, rec)
    assert alloc.free_blocks() == [(rec - HEADER_SIZE, 80), (struct - HEADER_SIZE, 48)]


def test_free_region_of_an_unknown_block_aborts_as_free_does() -> None:
    alloc, _ = make()
    rec, struct = alloc.malloc(EMA), alloc.malloc(BITMAP)
    assert rec and struct
    with pytest.raises(EnclaveAbort, match="unknown metadata block"):
        alloc.free_region(struct + 0x1000, struct, rec)


def test_free_region_whose_record_is_already_free_frees_the_bitmap_then_aborts() -> None:
    """The record is not in the books: nothing is one run, and the blocks taken out
    for the run test go back before the frees, one by one, reach the record."""
    alloc, _ = make()
    rec = alloc.malloc(EMA)
    struct, data = alloc.malloc(BITMAP), alloc.malloc(1)
    assert rec and struct and data and alloc.malloc(EMA)  # not at the bump
    alloc.free(rec)
    with pytest.raises(EnclaveAbort, match="unknown metadata block"):
        alloc.free_region(data, struct, rec)
    assert alloc.block_size(struct) is None and alloc.block_size(data) is None
    assert alloc.free_blocks() == [(rec - HEADER_SIZE, 80), (struct - HEADER_SIZE, 48)]


@pytest.mark.parametrize("listed", [EMA, BITMAP, 1])
def test_bump_region_declines_when_a_block_would_come_from_a_list(listed: int) -> None:
    alloc, _ = make()
    lo, hi = USER_BASE, USER_BASE + 0x40000
    block = alloc.malloc(listed)
    assert block and alloc.malloc(EMA)  # keeps the freed block off the bump
    alloc.free(block)  # an 80-, 32- or 16-byte block heads its exact list
    used = alloc.reserves()[0].used
    assert alloc.bump_region(1, lo, hi) is None
    assert alloc.reserves()[0].used == used and alloc.free_blocks() == [
        (block - HEADER_SIZE, block_size_for(listed))]


def test_bump_region_declines_what_three_mallocs_would_not_take_from_the_bump() -> None:
    alloc, _ = make()
    lo, hi = USER_BASE, USER_BASE + 0x40000
    assert alloc.malloc(EMA)
    used = alloc.reserves()[0].used
    assert alloc.bump_region(1, lo, lo + 0x100) is None  # not in committed memory
    assert alloc.bump_region(-1, lo, hi) is None  # malloc raises ValueError
    assert alloc.bump_region(MAX_EXACT_SIZE, lo, hi) is None  # from the best-fit list
    assert alloc.reserves()[0].used == used
    blocks = alloc.bump_region(1, lo, hi)
    assert blocks is not None
    record, struct, data = blocks
    assert (struct - record, data - struct) == (80, 32)
    assert [alloc.block_size(p) for p in blocks] == [80, 32, 16]
    assert alloc.reserves()[0].used == used + 128


def test_bump_region_declines_in_the_deviation() -> None:
    alloc, _ = make(leaky=False)
    assert alloc.bump_region(1, 0, 1 << 64) is None

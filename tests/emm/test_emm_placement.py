"""The fast first fit (GapIndex over RegionList) equals the reference's linear walk."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sgx_emm.emm.placement import RootBounds, find_free_region, find_free_region_linear
from sgx_emm.emm.regions import _VACATED_SLACK, Ema, RegionList

PAGE = 0x1000
ENCLAVE = (0x100000, 0x100000 + 0x400 * PAGE)
USER = (0x100000 + 0x100 * PAGE, 0x100000 + 0x300 * PAGE)


def within(addr: int, size: int) -> bool:
    return ENCLAVE[0] <= addr and addr + size <= ENCLAVE[1]


BOUNDS = {rts: RootBounds(rts, USER[0], USER[1], within) for rts in (False, True)}

slot = st.integers(0, 0x3FF)
actions = st.lists(st.tuples(st.booleans(), slot, st.integers(1, 24)), max_size=60)
queries = st.lists(st.tuples(st.integers(1, 40) | st.integers(60, 300),
                             st.sampled_from([12, 12, 13, 14, 16, 20])),
                   min_size=1, max_size=8)


def build(rts: bool, steps: list[tuple[bool, int, int]]) -> RegionList:
    """Insert or remove regions at random, keeping them disjoint and in the root's range."""
    bounds = BOUNDS[rts]
    lst = RegionList()
    for add, page, pages in steps:
        start, size = ENCLAVE[0] + page * PAGE, pages * PAGE
        if add:
            if not within(start, size) or not bounds.in_root_range(start, size):
                continue
            if lst.first_overlap(start, start + size) is None:
                lst.insert(Ema(start, start + size, 4, 0x203))
        else:
            victim = lst.find(start)
            if victim is not None:
                lst.remove(victim)
    return lst


def gaps_of(lst: RegionList) -> list[tuple[int, int]]:
    spans = [(e.start, e.end) for e in lst]
    return [(a_end, b_start - a_end)
            for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False)
            if b_start > a_end]


@settings(max_examples=400)
@given(st.booleans(), actions, queries)
def test_fast_first_fit_equals_the_linear_rule(rts: bool, steps: list[tuple[bool, int, int]],
                                               asks: list[tuple[int, int]]) -> None:
    lst = build(rts, steps)
    assert lst.gaps.items() == gaps_of(lst)  # the index tracks the list exactly
    bounds = BOUNDS[rts]
    for pages, shift in asks:
        size, align = pages * PAGE, 1 << shift
        first, last = lst.first, lst.last
        fast = find_free_region(lst.gaps, first.start if first else None,
                                last.end if last else 0, bounds, size, align)
        slow = find_free_region_linear(((e.start, e.end) for e in lst), bounds, size, align)
        assert fast == slow


def test_large_gaps_share_classes_and_still_fit_exactly() -> None:
    lst = RegionList()
    base = USER[0]
    # gaps of 70 and 100 pages (same size class), then a 200-page gap
    for start, pages in [(0, 1), (71, 1), (172, 1), (373, 1)]:
        a = base + start * PAGE
        lst.insert(Ema(a, a + pages * PAGE, 4, 0x203))
    bounds = BOUNDS[False]
    got = [find_free_region(lst.gaps, lst.first.start if lst.first else None,
                            lst.last.end if lst.last else 0, bounds, p * PAGE, PAGE)
           for p in (70, 71, 100, 101)]
    assert got == [base + PAGE, base + 72 * PAGE, base + 72 * PAGE, base + 173 * PAGE]


def test_split_keeps_the_gap_index() -> None:
    lst = RegionList()
    a = USER[0]
    lst.insert(Ema(a, a + 4 * PAGE, 4, 0x203))
    lst.insert(Ema(a + 8 * PAGE, a + 9 * PAGE, 4, 0x203))
    first = lst.first
    assert first is not None
    lst.split(first, a + PAGE, Ema(0, 0, 4, 0x203), new_lower=False)
    assert [(e.start, e.end) for e in lst] == [(a, a + PAGE), (a + PAGE, a + 4 * PAGE),
                                               (a + 8 * PAGE, a + 9 * PAGE)]
    assert lst.gaps.items() == [(a + 4 * PAGE, 4 * PAGE)]
    assert lst.find(a + 2 * PAGE) is first.next
    assert lst.find(a + 5 * PAGE) is None and lst.find(a) is first


def test_lookups_across_many_regions_match_a_linear_search() -> None:
    # enough regions for the sorted index to hold several internal sublists
    import random

    rng = random.Random(5)
    lst = RegionList()
    spans: dict[int, int] = {}
    slots = rng.sample(range(40000), 9000)
    for k in slots:
        start = k * 2 * PAGE
        size = rng.choice([PAGE, 2 * PAGE])
        lst.insert(Ema(start, start + size, 4, 0x203))
        spans[start] = start + size
    for k in slots[::3]:
        victim = lst.find(k * 2 * PAGE)
        assert victim is not None
        lst.remove(victim)
        del spans[k * 2 * PAGE]
    ordered = sorted(spans.items())
    assert [(e.start, e.end) for e in lst] == ordered
    for _ in range(3000):
        addr = rng.randrange(-PAGE, 80001 * PAGE)
        want = next(((s, e) for s, e in ordered if s <= addr < e), None)
        got = lst.find(addr)
        assert (None if got is None else (got.start, got.end)) == want
        end = addr + rng.choice([PAGE, 5 * PAGE])
        first = next(((s, e) for s, e in ordered if s < end and e > addr), None)
        node = lst.first_overlap(addr, end)
        assert (None if node is None else (node.start, node.end)) == first
    assert lst.gaps.items() == gaps_of(lst)


def test_a_size_class_with_thousands_of_gaps_still_answers_first_fit() -> None:
    # 1,500 one-page gaps (past the plain-list size of a class), then most closed again
    lst = RegionList()
    base = 0x10_0000_0000
    wide = RootBounds(False, base, base + (1 << 30), lambda a, s: True)
    emas = []
    for k in range(1500):
        a = base + 2 * k * PAGE
        e = Ema(a, a + PAGE, 4, 0x203)
        lst.insert(e)
        emas.append(e)

    def check() -> None:
        assert lst.gaps.items() == gaps_of(lst)
        for pages in (1, 2, 3):
            first, last = lst.first, lst.last
            assert first is not None and last is not None
            fast = find_free_region(lst.gaps, first.start, last.end, wide, pages * PAGE, PAGE)
            slow = find_free_region_linear(((e.start, e.end) for e in lst), wide,
                                           pages * PAGE, PAGE)
            assert fast == slow

    check()
    for e in emas[1:1400:2]:  # two gaps and a region become one larger gap
        lst.remove(e)
    check()
    for e in emas[1:1400:2]:  # and back
        lst.insert(Ema(e.start, e.end, 4, 0x203))
    check()


def test_a_start_freed_and_reused_stays_findable_inside_its_region() -> None:
    # dealloc + alloc at the same start between two searches of the ordered index
    lst = RegionList()
    a = USER[0]
    emas = [Ema(a + k * 4 * PAGE, a + (k + 1) * 4 * PAGE, 4, 0x203) for k in range(5)]
    for e in emas:
        lst.insert(e)
    assert lst.find(a + 9 * PAGE) is emas[2]  # the index is searched (and caught up)
    lst.remove(emas[2])
    assert lst.find(a + 9 * PAGE) is None
    again = Ema(emas[2].start, emas[2].end, 4, 0x203)
    lst.remove(emas[3])
    lst.insert(again)
    assert lst.find(a + 9 * PAGE) is again
    assert lst.find(a + 13 * PAGE) is None
    assert lst.first_overlap(a + 13 * PAGE, a + 17 * PAGE) is emas[4]
    assert lst.gaps.items() == [(a + 12 * PAGE, 4 * PAGE)]


def test_find_inside_a_region_after_it_is_split_or_replaced() -> None:
    # an address inside a region (not its start) is answered by the ordered start
    # index, which must follow splits, removals and a new region at the same start
    lst = RegionList()
    a = USER[0]
    big = Ema(a, a + 8 * PAGE, 4, 0x203)
    lst.insert(big)
    assert lst.find(a + 5 * PAGE) is big
    upper = Ema(0, 0, 4, 0x203)
    lst.split(big, a + 4 * PAGE, upper, new_lower=False)
    assert lst.find(a + 5 * PAGE) is upper and lst.find(a + 2 * PAGE) is big
    assert lst.find(a + 6 * PAGE) is upper
    lst.remove(upper)
    assert lst.find(a + 6 * PAGE) is None
    again = Ema(a + 4 * PAGE, a + 7 * PAGE, 4, 0x203)
    lst.insert(again)
    assert lst.find(a + 6 * PAGE) is again and lst.find(a + 7 * PAGE) is None
    assert lst.find(a + 3 * PAGE) is big


def test_start_map_sweeps_vacated_starts_and_rewrites_a_reused_one() -> None:
    """Regions made and removed at ever new addresses leave at most the slack of
    vacated starts behind; a region at a vacated start takes its entry back, and
    lookups never take a vacated start for a region."""
    lst = RegionList()
    base = 0x4000_0000
    for k in range(3 * _VACATED_SLACK):
        ema = Ema(base + 2 * k * PAGE, base + (2 * k + 1) * PAGE, 4, 0x203)
        lst.insert(ema)
        lst.remove(ema)
        assert len(lst.by_start) <= _VACATED_SLACK + 1 and len(lst) == 0
    gone = base + 2 * (3 * _VACATED_SLACK - 1) * PAGE  # the last one, still vacated
    assert lst.by_start[gone] is None
    assert lst.find(gone) is None and lst.overlapping(gone, gone + PAGE) == []
    assert lst.first_overlap(gone, gone + PAGE) is None
    keys = len(lst.by_start)
    again = Ema(gone, gone + 2 * PAGE, 4, 0x203)
    lst.insert(again)
    assert len(lst.by_start) == keys and len(lst) == 1
    assert lst.find(gone + PAGE) is again and lst.overlapping(gone, gone + PAGE) == [again]
    check_links(lst)


def check_links(lst: RegionList) -> None:
    """Links in both directions, first/last, the start map and the gap index agree."""
    nodes = list(lst)
    assert [(e.start, e.end) for e in nodes] == sorted((e.start, e.end) for e in nodes)
    assert all(a.end <= b.start for a, b in zip(nodes, nodes[1:], strict=False))
    assert [e.prev for e in nodes] == [None, *nodes[:-1]][:len(nodes)]
    assert lst.first is (nodes[0] if nodes else None)
    assert lst.last is (nodes[-1] if nodes else None)
    # the start map holds every region at its start, and vacated starts (None) at most
    # one per region beyond a constant slack
    assert {s: e for s, e in lst.by_start.items() if e is not None} == {
        e.start: e for e in nodes}
    assert len(lst) == len(nodes)
    assert len(lst.by_start) - len(nodes) <= len(nodes) + _VACATED_SLACK
    assert lst.gaps.items() == gaps_of(lst)
    # each gap keeps the region it follows, and nothing else is kept
    gap_starts = {start for start, _ in gaps_of(lst)}
    assert lst.gaps.below == {e.end: e for e in nodes if e.end in gap_starts}


edits = st.lists(st.tuples(st.sampled_from(["add", "remove", "split_low", "split_high"]),
                           st.integers(0, 0x3F), st.integers(1, 6)), max_size=80)


@settings(max_examples=300)
@given(edits)
def test_inserts_find_their_lower_neighbour_after_removes_and_splits(
        steps: list[tuple[str, int, int]]) -> None:
    """An insert at a gap's start, past the last region, below the first or inside a
    gap links to the right neighbours however the list got there (a split hands the
    gap above a region to its upper part)."""
    lst = RegionList()
    base = 0x100000
    for op, page, pages in steps:
        start = base + page * PAGE
        if op == "add":
            end = start + pages * PAGE
            if lst.first_overlap(start, end) is None:
                lst.insert(Ema(start, end, 4, 0x203))
        else:
            victim = lst.find(start)
            if victim is None:
                continue
            if op == "remove":
                lst.remove(victim)
            elif victim.end - victim.start > PAGE:
                cut = victim.start + PAGE * max(1, (victim.end - victim.start) // PAGE // 2)
                lst.split(victim, cut, Ema(0, 0, 4, 0x203), op == "split_low")
        check_links(lst)
    for gap_start, length in lst.gaps.items():  # fill every gap from its start
        lst.insert(Ema(gap_start, gap_start + length, 4, 0x203))
        check_links(lst)
    assert not lst.gaps.items()

"""CommitBitmap against the obvious model: a set of committed page numbers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sgx_emm.emm.bitmap import CommitBitmap

LO, HI = 100, 160  # positions of one region (any unit: the manager uses byte addresses)

ranges = st.tuples(st.integers(LO, HI), st.integers(LO, HI)).map(sorted)
ops = st.lists(st.tuples(st.sampled_from(["set", "clear"]), ranges), max_size=30)


def check(bm: CommitBitmap, model: set[int], lo: int = LO, hi: int = HI) -> None:
    b = bm.bounds
    assert list(b) == sorted(set(b)) and len(b) % 2 == 0  # strictly increasing pairs
    for p in range(lo - 2, hi + 2):
        assert bm.test(p) == (p in model), p


@settings(max_examples=300)
@given(ops, ranges)
def test_operations_match_a_set(steps: list[tuple[str, list[int]]], probe: list[int]) -> None:
    bm, model = CommitBitmap(), set()
    for op, (lo, hi) in steps:
        if op == "set":
            bm.set_range(lo, hi)
            model |= set(range(lo, hi))
        else:
            bm.clear_range(lo, hi)
            model -= set(range(lo, hi))
        check(bm, model)
    lo, hi = probe
    inside = set(range(lo, hi))
    assert bm.all_set(lo, hi) == inside.issubset(model)
    assert bm.any_set(lo, hi) == bool(inside & model)
    assert bm.count(lo, hi) == len(inside & model)
    runs = list(bm.runs(lo, hi))
    assert [p for s, e in runs for p in range(s, e)] == sorted(inside & model)
    assert all(e2 < s2 or s2 > e1 for (_, e1), (s2, e2) in zip(runs, runs[1:], strict=False))
    holes = list(bm.holes(lo, hi))
    assert [p for s, e in holes for p in range(s, e)] == sorted(inside - model)
    assert bm.runs_list(lo, hi) == runs
    assert bm.holes_list(lo, hi) == holes


@settings(max_examples=300)
@given(ops, st.integers(LO + 1, HI - 1))
def test_split_keeps_every_page(steps: list[tuple[str, list[int]]], at: int) -> None:
    bm, model = CommitBitmap(), set()
    for op, (lo, hi) in steps:
        (bm.set_range if op == "set" else bm.clear_range)(lo, hi)
        model = model | set(range(lo, hi)) if op == "set" else model - set(range(lo, hi))
    upper = bm.split(at)
    check(bm, {p for p in model if p < at})
    check(upper, {p for p in model if p >= at})


def test_full_is_one_run_and_costs_nothing_per_page() -> None:
    bm = CommitBitmap.full(0, 1 << 40)
    assert bm.bounds == (0, 1 << 40) and bm.test((1 << 40) - 1) and not bm.test(1 << 40)
    bm.clear_range(5, 6)
    assert bm.bounds == (0, 5, 6, 1 << 40)
    assert CommitBitmap.full(3, 3).bounds == ()


def test_run_at_names_the_run_holding_a_page() -> None:
    bm = CommitBitmap()
    bm.set_range(10, 20)
    bm.set_range(30, 31)
    assert bm.run_at(10) == (10, 20) and bm.run_at(19) == (10, 20)
    assert bm.run_at(20) is None and bm.run_at(9) is None and bm.run_at(30) == (30, 31)


def test_the_inline_bit_data_size_of_a_region_is_bitmap_bytes() -> None:
    """`EmaOps.new` sizes a region's bit data from its byte size without a call;
    it must give what `bitmap_bytes` gives for the region's pages."""
    from sgx_emm.emm.ema_ops import _BITMAP_BYTE_PAGES_LESS_ONE, _BITMAP_BYTE_SHIFT, bitmap_bytes

    for pages in (*range(1, 70), 4095, 4096, 4097, 1 << 20):
        size = pages << 12
        assert (size + _BITMAP_BYTE_PAGES_LESS_ONE) >> _BITMAP_BYTE_SHIFT == bitmap_bytes(pages)


def test_a_copy_keeps_its_runs_when_the_original_changes() -> None:
    """Copies share the immutable run tuple; a change must replace it, never edit it."""
    bm = CommitBitmap.full(LO, HI)
    twin = bm.copy()
    bm.clear_range(LO + 10, LO + 20)
    bm.set_range(HI, HI + 5)
    upper = bm.split(LO + 30)
    assert twin.bounds == (LO, HI)
    assert bm.bounds == (LO, LO + 10, LO + 20, LO + 30)
    assert upper.bounds == (LO + 30, HI + 5)
    assert CommitBitmap() == CommitBitmap() and CommitBitmap().bounds == ()


def test_a_one_page_commit_marks_the_region_with_its_own_ints() -> None:
    """Why it matters: among many regions every int a bitmap holds is one more cache
    miss on each later read, unless it is the region's own start or end, which the
    lookup that found the region has just touched. By call and by fault alike."""
    from sgx_emm.emm import EnclaveMemoryManager
    from sgx_emm.emm.rt import PfInfo
    from sgx_emm.flags import COMMIT_ON_DEMAND, PAGE_SIZE
    from sgx_emm.runtime.null import NullRuntime

    base, size = 0x7F0000000000, 1 << 30
    rt = NullRuntime(base, size, record=False)
    mgr = EnclaveMemoryManager(rt, rt.primitives, meta_area_base=base + 0x100000)
    mgr.init(base + size // 2, base + size)
    by_call = mgr.alloc(None, PAGE_SIZE, COMMIT_ON_DEMAND)
    by_fault = mgr.alloc(None, PAGE_SIZE, COMMIT_ON_DEMAND)
    mgr.commit(by_call, PAGE_SIZE)
    mgr.handle_page_fault(PfInfo(by_fault + 0x18, 0x2))
    for addr in (by_call, by_fault):
        ema = mgr._user.find(addr)
        assert ema is not None and ema.bitmap is not None
        lo, hi = ema.bitmap.bounds
        assert lo is ema.start and hi is ema.end

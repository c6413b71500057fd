"""CommittedView.runs: the run-length form renderers read, against the page list."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sgx_emm.emm.regions import CommittedView


@given(st.integers(1, 40).flatmap(
    lambda pages: st.tuples(st.just(pages),
                            st.lists(st.integers(0, pages), unique=True).map(sorted))))
def test_runs_cover_the_region_in_order(case: tuple[int, list[int]]) -> None:
    pages, cuts = case
    bounds = cuts[: len(cuts) & ~1]  # strictly increasing pairs: [start, end) runs
    view = CommittedView(pages, tuple(bounds))
    expanded = [c for c, n in view.runs() for _ in range(n)]
    assert expanded == list(view)
    runs = list(view.runs())
    assert all(a[0] != b[0] for a, b in zip(runs, runs[1:], strict=False))
    assert all(n > 0 for _, n in runs)

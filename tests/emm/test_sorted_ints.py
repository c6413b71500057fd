"""SortedInts against the obvious model: a Python set, sorted when asked."""

from __future__ import annotations

from bisect import bisect_right

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from sgx_emm.emm import sorted_ints
from sgx_emm.emm.sorted_ints import SortedInts

values = st.integers(0, 3000)


class SortedIntsMachine(RuleBasedStateMachine):
    """Adds and removes in any order, with sublists small enough to split and merge."""

    def __init__(self) -> None:
        super().__init__()
        self.real = SortedInts()
        self.model: set[int] = set()

    @rule(v=values)
    def add(self, v: int) -> None:
        if v not in self.model:
            self.real.add(v)
            self.model.add(v)

    @rule(v=values)
    def remove(self, v: int) -> None:
        if v in self.model:
            self.real.remove(v)
            self.model.discard(v)
        else:
            with pytest.raises(KeyError):
                self.real.remove(v)

    @rule(v=values)
    def queries(self, v: int) -> None:
        ordered = sorted(self.model)
        i = bisect_right(ordered, v)
        assert self.real.floor(v) == (ordered[i - 1] if i else None)
        assert self.real.after(v) == (ordered[i] if i < len(ordered) else None)
        assert list(self.real.iter_after(v)) == ordered[i:]
        assert (v in self.real) == (v in self.model)

    @invariant()
    def same_items(self) -> None:
        assert list(self.real) == sorted(self.model)
        assert len(self.real) == len(self.model)
        assert self.real.min() == (min(self.model) if self.model else None)


@pytest.fixture(autouse=True)
def small_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sorted_ints, "LOAD", 4)


TestSortedInts = SortedIntsMachine.TestCase
TestSortedInts.settings = settings(max_examples=80, stateful_step_count=60, deadline=None)


@settings(max_examples=50, deadline=None)
@given(st.lists(values, unique=True, max_size=400))
def test_bulk_adds_then_removes_keep_order(items: list[int]) -> None:
    s = SortedInts()
    for v in items:
        s.add(v)
    assert list(s) == sorted(items)
    for v in items[::2]:
        s.remove(v)
    assert list(s) == sorted(items[1::2])

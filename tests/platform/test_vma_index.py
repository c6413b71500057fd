"""The kernel's VMA index against a plain list: random maps and unmaps, with tiny
sublists so that splits and merges happen, and every lookup shape (one VMA, several,
holes, empty ranges, the find_vma cache)."""

from __future__ import annotations

import random

import pytest

from sgx_emm.platform import mmu
from sgx_emm.platform.mmu import AddressSpace, Vma, VmaIndex, covers


def _expected(vmas: list[Vma], start: int, end: int) -> list[Vma]:
    if end > start:
        hit = [v for v in vmas if v.start < end and v.end > start]
    else:
        hit = [v for v in vmas if v.start <= start < v.end]
    return sorted(hit, key=lambda v: v.start)


@pytest.mark.parametrize("load", [2, 3, 512])
def test_index_matches_a_list(monkeypatch: pytest.MonkeyPatch, load: int) -> None:
    monkeypatch.setattr(mmu, "_LOAD", load)
    rng = random.Random(load)
    index = VmaIndex()
    live: list[Vma] = []
    for _ in range(3000):
        r = rng.random()
        if r < 0.45:
            start, length = rng.randint(0, 300), rng.randint(1, 5)
            if not _expected(live, start, start + length):
                vma = Vma(start, start + length, 0, None)
                index.add(vma)
                live.append(vma)
        elif r < 0.75 and live:
            vma = live.pop(rng.randrange(len(live)))
            index.remove(vma)
        else:
            start = rng.randint(-2, 310)
            end = rng.randint(start - 3, 315)
            assert index.overlapping(start, end) == _expected(live, start, end)
        assert list(index) == sorted(live, key=lambda v: v.start)


def test_remove_of_a_stranger_is_refused() -> None:
    index = VmaIndex()
    index.add(Vma(0, 1, 0, None))
    with pytest.raises(ValueError, match="not in the index"):
        index.remove(Vma(0, 1, 0, None))        # equal, but not the one added
    with pytest.raises(ValueError, match="not in the index"):
        index.remove(Vma(5, 6, 0, None))
    assert [(v.start, v.end) for v in index] == [(0, 1)]


def test_address_space_lookups_and_cache() -> None:
    mm = AddressSpace()
    vmas = [Vma(s, s + 2, 0, None) for s in (0, 2, 6, 10)]
    for vma in vmas:
        mm.insert(vma)
    assert mm.find_vma(3) is vmas[1] and mm.find_vma(5) is None
    assert mm.vmas_overlapping(2, 4) == [vmas[1]]           # from the cache
    assert mm.vmas_overlapping(1, 7) == vmas[:3]
    assert not covers(mm.vmas_overlapping(1, 7), 1, 7)     # the hole at 4..6
    assert mm.is_covered(0, 4) and not mm.is_covered(3, 7)
    assert mm.vmas_overlapping(4, 4) == [] and mm.vmas_overlapping(6, 6) == [vmas[2]]
    mm.protect(vmas[3], 10, 12, 3)                          # whole VMA: in place
    assert mm.find_vma(11) is vmas[3] and vmas[3].prot == 3
    mm.protect(vmas[2], 7, 8, 1)                            # a middle part: split
    assert [(v.start, v.end, v.prot) for v in mm.vmas_overlapping(6, 8)] == [
        (6, 7, 0), (7, 8, 1)]
    assert [(v.start, v.end) for v in mm.all_vmas()] == [
        (0, 2), (2, 4), (6, 7), (7, 8), (10, 12)]

"""The batched EACCEPT page loop (`eaccept_pages`) against one leaf per page.

The manager's commit and trim loops hand a whole range of pages to the runtime
at once. Whatever the runtime does with it, the outcome must be that of calling
the single-page `eaccept` for each page in order: the same codes, stopping at
the same page, the same events in the same order, the same EPCM afterwards.
"""

from __future__ import annotations

import errno
from typing import Any

import pytest

import sgx_emm
from sgx_emm.emm.rt import PagePrimitives, eaccept_each, eaccept_pages
from sgx_emm.flags import COMMIT_ON_DEMAND, PAGE_SIZE
from sgx_emm.runtime.null import NullRuntime
from sgx_emm.trace import Event

ACCEPT_AUG = 0x20B
SGX_PAGE_ATTRIBUTES_MISMATCH = 19


def test_eaccept_each_stops_at_the_first_code_and_counts_what_was_accepted() -> None:
    seen: list[int] = []

    def leaf(secinfo: int, addr: int) -> int:
        seen.append(addr)
        return 7 if addr == 0x3000 else 0

    done = [-1]
    assert eaccept_each(leaf, ACCEPT_AUG, range(0x1000, 0x6000, PAGE_SIZE), done) == 7
    assert seen == [0x1000, 0x2000, 0x3000] and done == [2]
    done = [-1]
    assert eaccept_each(leaf, ACCEPT_AUG, range(0x5000, 0x3000, -PAGE_SIZE), done) == 0
    assert done == [2]


def test_eaccept_each_reports_progress_when_a_leaf_raises() -> None:
    def leaf(secinfo: int, addr: int) -> int:
        if addr == 0x4000:
            raise RuntimeError("the enclave crashed")
        return 0

    done = [-1]
    with pytest.raises(RuntimeError):
        eaccept_each(leaf, ACCEPT_AUG, range(0x1000, 0x6000, PAGE_SIZE), done)
    assert done == [3]


class _SingleLeaf:
    """Primitives with the single-page leaf only (the null runtime's, unbatched)."""

    def __init__(self, rt: NullRuntime) -> None:
        self.eaccept = rt.primitives.eaccept


def test_primitives_without_a_batch_get_one_leaf_per_page() -> None:
    rt = NullRuntime(0x10_0000_0000, 1 << 30)
    prims = _SingleLeaf(rt)
    assert not isinstance(prims, PagePrimitives)
    rt.inject("EACCEPT", SGX_PAGE_ATTRIBUTES_MISMATCH, match=lambda args: args[1] == 0x10_0000_2000)
    done = [0]
    rc = eaccept_pages(prims, ACCEPT_AUG,  # type: ignore[arg-type]
                       range(0x10_0000_0000, 0x10_0000_4000, PAGE_SIZE), done)
    assert (rc, done) == (SGX_PAGE_ATTRIBUTES_MISMATCH, [2])
    assert rt.counts["EACCEPT"] == 3


@pytest.mark.parametrize("record", [False, True])
def test_the_null_runtimes_batch_is_one_leaf_per_page(record: bool) -> None:
    """Counted at once when nothing is recorded; recorded and injected page by page."""
    rt = NullRuntime(0x10_0000_0000, 1 << 30, record=record)
    assert isinstance(rt.primitives, PagePrimitives)
    pages = range(0x10_0000_0000, 0x10_0000_4000, PAGE_SIZE)
    done = [0]
    assert rt.primitives.eaccept_pages(ACCEPT_AUG, pages, done) == 0
    assert done == [4] and rt.counts["EACCEPT"] == 4
    assert [c.args for c in rt.calls] == ([(ACCEPT_AUG, p) for p in pages] if record else [])
    rt.inject("EACCEPT", SGX_PAGE_ATTRIBUTES_MISMATCH, match=lambda args: args[1] == pages[1])
    assert rt.primitives.eaccept_pages(ACCEPT_AUG, pages, done) == SGX_PAGE_ATTRIBUTES_MISMATCH
    assert done == [1] and rt.counts["EACCEPT"] == 6


def _run(batched: bool, inside: bool, listen: bool) -> dict[str, Any]:
    """Accept 8 on-demand pages, the 6th of which is already accepted, either in
    one `eaccept_pages` call or with one `eaccept` per page."""
    enc = sgx_emm.Enclave.create()
    assert isinstance(enc.primitives, PagePrimitives)
    events: list[tuple[str, str, tuple[tuple[str, Any], ...]]] = []
    with enc.enter():
        addr = enc.manager.alloc(None, 8 * PAGE_SIZE, COMMIT_ON_DEMAND)
        assert enc.primitives.eaccept(ACCEPT_AUG, addr + 5 * PAGE_SIZE) == 0
    enc.trace.reset()
    if listen:
        def record(ev: Event) -> None:
            details = tuple(sorted((k, v) for k, v in ev.details.items()
                                   if isinstance(v, int)))
            events.append((ev.category, ev.name, details))
        enc.trace.subscribe(record)
    pages = range(addr, addr + 8 * PAGE_SIZE, PAGE_SIZE)
    done = [0]

    def go() -> int:
        if batched:
            return enc.primitives.eaccept_pages(ACCEPT_AUG, pages, done)
        return eaccept_each(enc.primitives.eaccept, ACCEPT_AUG, pages, done)

    if inside:
        with enc.enter():
            rc = go()
    else:
        rc = go()
    epc = enc.machine.epc
    return {"rc": rc, "done": done[0], "counts": dict(enc.trace.counts), "events": events,
            "epcm": [epc.describe(s) for s in range(epc.npages) if epc.owner[s] >= 0]}


@pytest.mark.parametrize("inside", [True, False])
@pytest.mark.parametrize("listen", [False, True])
def test_the_enclave_batch_is_one_leaf_per_page(inside: bool, listen: bool) -> None:
    per_page = _run(batched=False, inside=inside, listen=listen)
    batch = _run(batched=True, inside=inside, listen=listen)
    assert per_page["rc"] == SGX_PAGE_ATTRIBUTES_MISMATCH and per_page["done"] == 5
    assert batch == per_page


def test_the_manager_commit_fails_on_the_same_page_either_way() -> None:
    enc = sgx_emm.Enclave.create()
    with enc.enter():
        addr = enc.manager.alloc(None, 8 * PAGE_SIZE, COMMIT_ON_DEMAND)
        assert enc.primitives.eaccept(ACCEPT_AUG, addr + 3 * PAGE_SIZE) == 0
        with pytest.raises(sgx_emm.EmmError) as err:
            enc.manager.commit(addr, 8 * PAGE_SIZE)
    assert err.value.errno == SGX_PAGE_ATTRIBUTES_MISMATCH != errno.EFAULT
    assert f"{addr + 3 * PAGE_SIZE:#x}" in str(err.value)

"""Several threads calling the manager at once: no lost update, no overlap."""

from __future__ import annotations

import threading
from collections.abc import Callable

from emm_support import PAGE, SECINFO_COMMIT, make

from sgx_emm.emm.rt import PfInfo
from sgx_emm.flags import COMMIT_NOW, COMMIT_ON_DEMAND

COD = int(COMMIT_ON_DEMAND)
THREADS = 8


def run_all(work: Callable[[int], None]) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)

    def body(k: int) -> None:
        try:
            barrier.wait()
            work(k)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_concurrent_alloc_dealloc_keeps_regions_disjoint() -> None:
    mgr, _ = make()
    kept: dict[int, list[tuple[int, int]]] = {}

    def work(k: int) -> None:
        mine: list[tuple[int, int]] = []
        for i in range(150):
            size = (1 + i % 3) * PAGE
            a = mgr.alloc(None, size, COD)
            mine.append((a, size))
            mgr.commit(a, PAGE)
            if i % 4 == 3:
                mgr.dealloc(*mine.pop(0))
        kept[k] = mine

    run_all(work)
    regions = mgr.regions()
    spans = sorted((r.start, r.end) for r in regions)
    assert all(e1 <= s2 for (_, e1), (s2, _) in zip(spans, spans[1:], strict=False))
    live = sorted((r.start, r.size) for r in regions if not r.is_meta)
    assert live == sorted(x for v in kept.values() for x in v)
    assert all(r.committed[0] for r in regions if not r.is_meta)


def test_concurrent_commits_and_faults_on_one_region_lose_nothing() -> None:
    mgr, rt = make()
    pages = THREADS * 32
    a = mgr.alloc(None, pages * PAGE, COD)
    rt.reset()

    def work(k: int) -> None:
        for i in range(k, pages, THREADS):
            page = a + i * PAGE
            if i % 2:
                mgr.commit(page, PAGE)
            else:
                assert mgr.handle_page_fault(PfInfo(page, 0x2)) == -1
            # everyone also retries a neighbour: must be a no-op if already done
            mgr.commit(a + ((i + 1) % pages) * PAGE, PAGE)

    run_all(work)
    region = [r for r in mgr.regions() if r.start == a][0]
    assert region.committed.count() == pages
    accepted = sorted(c.args[1] for c in rt.calls if c.args[0] == SECINFO_COMMIT)
    assert accepted == [a + i * PAGE for i in range(pages)]  # each page exactly once


def test_concurrent_permission_changes_end_consistent() -> None:
    mgr, _ = make()
    regions = [mgr.alloc(None, 2 * PAGE, COMMIT_NOW) for _ in range(THREADS)]

    def work(k: int) -> None:
        a = regions[k]
        for _ in range(40):
            mgr.modify_permissions(a, 2 * PAGE, 1)
            mgr.modify_permissions(a + PAGE, PAGE, 3)
            mgr.modify_permissions(a, PAGE, 3)
            mgr.uncommit(a + PAGE, PAGE)
            mgr.commit(a + PAGE, PAGE)

    run_all(work)
    for r in mgr.regions():
        if not r.is_meta:
            assert r.prot == 3 and r.committed.count() == r.size // PAGE

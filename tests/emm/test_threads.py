"""Threads and the manager: several callers at once, with and without a platform.

The first part drives the manager alone (the test runtime of emm_support) from
many Python threads: no lost update, no overlap. The rest runs enclave threads:

each Python thread is inside `enc.enter()` on its own TCS, so its faults take
their own AEX / SSA / dispatcher path while the others run. What must hold:
no deadlock (every join has a timeout and the test fails if a thread is still
alive), no lost update (the final regions and page contents are exactly what
the threads did), and every page is accepted exactly once in the EPCM (the
invariant check finds no page accepted twice and no bitmap out of step).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

import pytest
from emm_support import SECINFO_COMMIT, make
from enclave_state import check_invariants, epcm_at, user_regions

from sgx_emm import Enclave
from sgx_emm import capi as c
from sgx_emm.emm.rt import PfInfo
from sgx_emm.enclave import ThreadContext
from sgx_emm.flags import (
    COMMIT_NOW,
    COMMIT_ON_DEMAND,
    EXCEPTION_CONTINUE_EXECUTION,
    PAGE_SIZE,
    PROT_READ,
    PROT_READ_WRITE,
)
from sgx_emm.trace import HANDLER

PAGE = PAGE_SIZE
THREADS = 4
JOIN_TIMEOUT = 60.0
COD = int(COMMIT_ON_DEMAND)
MANAGER_THREADS = 8


# ---------------------------------------------------------------- the manager alone
def run_all(work: Callable[[int], None]) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(MANAGER_THREADS)

    def body(k: int) -> None:
        try:
            barrier.wait()
            work(k)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(k,)) for k in range(MANAGER_THREADS)]
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
    pages = MANAGER_THREADS * 32
    a = mgr.alloc(None, pages * PAGE, COD)
    rt.reset()

    def work(k: int) -> None:
        for i in range(k, pages, MANAGER_THREADS):
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
    regions = [mgr.alloc(None, 2 * PAGE, COMMIT_NOW) for _ in range(MANAGER_THREADS)]

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


# ---------------------------------------------------------------- enclave threads
@pytest.fixture
def enc() -> Enclave:
    return Enclave.create(size=1 << 30, epc_pages=8192, threads=THREADS)


def run_threads(enc: Enclave, work: Callable[[int, ThreadContext], None]) -> None:
    """`work(k, t)` on THREADS threads, each entered on its own TCS, started together."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)
    tcs_seen: list[int] = []

    def body(k: int) -> None:
        try:
            with enc.enter() as t:
                tcs_seen.append(t.tcs)
                barrier.wait(timeout=JOIN_TIMEOUT)
                work(k, t)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(k,), daemon=True) for k in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=JOIN_TIMEOUT)
    assert not any(th.is_alive() for th in threads), "deadlock: a thread never finished"
    assert errors == [], errors
    assert sorted(tcs_seen) == sorted(enc.tcs_addresses), "threads shared a TCS"
    assert not enc.crashed


def test_all_threads_fault_on_the_same_on_demand_pages(enc: Enclave) -> None:
    pages = 48
    with enc.enter():
        base = enc.emm.alloc(None, pages * PAGE, COD)
    resumed = enc.trace.total(HANDLER, "emm")

    def work(k: int, t: ThreadContext) -> None:
        order = list(range(pages))
        random.Random(k).shuffle(order)
        for i in order:  # each thread writes its own byte of every page
            t.write(base + i * PAGE + k, bytes([0x40 + k]))

    run_threads(enc, work)
    (region,) = user_regions(enc)
    assert list(region.committed) == [True] * pages
    check_invariants(enc)  # one accepted EPC page per address, nothing else
    with enc.enter() as t:
        for i in range(pages):
            assert t.read(base + i * PAGE, THREADS) == bytes(0x40 + k for k in range(THREADS))
    # every page was committed by a fault, some pages by more than one racing thread
    assert enc.trace.total(HANDLER, "emm") - resumed >= pages
    assert all(len(epcm_at(enc, base + i * PAGE)) == 1 for i in range(0, pages, 7))


def test_concurrent_alloc_commit_permissions_dealloc_lose_nothing(enc: Enclave) -> None:
    kept: dict[int, list[tuple[int, int, int]]] = {}

    def work(k: int, t: ThreadContext) -> None:
        rng = random.Random(100 + k)
        mine: list[tuple[int, int, int]] = []
        for i in range(30):
            size = rng.randint(1, 3) * PAGE
            flags = COD if rng.random() < 0.7 else int(COMMIT_NOW)
            addr = enc.emm.alloc(None, size, flags)
            t.write(addr, bytes([k, i]))          # on demand: a fault, else no fault
            if size > PAGE:
                enc.emm.commit(addr + PAGE, size - PAGE)
            prot = PROT_READ_WRITE
            if rng.random() < 0.5:
                enc.emm.modify_permissions(addr, size, PROT_READ)
                prot = PROT_READ
            assert t.read(addr, 2) == bytes([k, i])
            mine.append((addr, size, prot))
            if rng.random() < 0.4:
                victim = mine.pop(rng.randrange(len(mine)))
                enc.emm.dealloc(victim[0], victim[1])
        kept[k] = mine

    run_threads(enc, work)
    live = sorted((r.start, r.size, r.prot) for r in user_regions(enc))
    assert live == sorted(x for v in kept.values() for x in v)
    assert all(all(r.committed) for r in user_regions(enc))
    check_invariants(enc)


def test_commits_and_uncommits_of_disjoint_parts_of_one_region(enc: Enclave) -> None:
    """Threads own interleaved pages of one region and commit / uncommit them."""
    pages = 8 * THREADS
    with enc.enter():
        base = enc.emm.alloc(None, pages * PAGE, COD)
    final: dict[int, bool] = {}
    lock = threading.Lock()

    def work(k: int, t: ThreadContext) -> None:
        rng = random.Random(k)
        mine = [base + i * PAGE for i in range(k, pages, THREADS)]
        state = dict.fromkeys(mine, False)
        for _ in range(40):
            page = rng.choice(mine)
            if rng.random() < 0.5:
                enc.emm.commit(page, PAGE)
                t.write(page, bytes([k + 1]))
                state[page] = True
            else:
                enc.emm.uncommit(page, PAGE)
                state[page] = False
        with lock:
            final.update(state)

    run_threads(enc, work)
    (region,) = user_regions(enc)
    assert [region.committed[(p - base) // PAGE] for p in sorted(final)] == [
        final[p] for p in sorted(final)]
    check_invariants(enc)
    with enc.enter() as t:
        for p, on in final.items():
            if on:
                assert t.read(p, 1) == bytes([((p - base) // PAGE) % THREADS + 1])


def test_custom_handlers_call_the_manager_while_other_threads_do(enc: Enclave) -> None:
    """The manager's lock is released around a custom handler: its calls never block."""
    calls: list[int] = []
    calls_lock = threading.Lock()

    def commit_handler(pfinfo: PfInfo, private: object) -> int:
        page = pfinfo.maddr & ~(PAGE - 1)
        assert c.sgx_mm_commit(page, PAGE) == 0
        with calls_lock:
            calls.append(page)
        return EXCEPTION_CONTINUE_EXECUTION

    regions: dict[int, int] = {}

    def work(k: int, t: ThreadContext) -> None:
        ret, addr = c.sgx_mm_alloc(None, 6 * PAGE, COD, commit_handler, None)
        assert ret == 0
        regions[k] = addr
        for i in range(6):
            t.write(addr + i * PAGE, bytes([k]))
            scratch = enc.emm.alloc(None, PAGE, COD)   # others' manager calls meanwhile
            t.write(scratch, b"s")
            enc.emm.dealloc(scratch, PAGE)

    run_threads(enc, work)
    assert sorted(calls) == sorted(a + i * PAGE for a in regions.values() for i in range(6))
    assert sorted(r.start for r in user_regions(enc)) == sorted(regions.values())
    check_invariants(enc)

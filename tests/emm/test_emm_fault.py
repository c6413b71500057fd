"""The manager's #PF handler: every branch of sgx_mm_enclave_pfhandler."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from emm_support import (
    FIRST_FREE,
    PAGE,
    SECINFO_COMMIT,
    call,
    make,
    seq,
)

from sgx_emm.emm.rt import Mutex, PfInfo
from sgx_emm.errors import EnclaveAbort
from sgx_emm.flags import (
    COMMIT_NOW,
    COMMIT_ON_DEMAND,
    EXCEPTION_CONTINUE_EXECUTION,
    EXCEPTION_CONTINUE_SEARCH,
    PROT_NONE,
    PROT_READ,
    RESERVE,
    SYSTEM,
)
from sgx_emm.runtime.null import NullRuntime

COD = int(COMMIT_ON_DEMAND)
READ, WRITE = 0x0, 0x2  # PFEC W/R bit
SEARCH, EXECUTION = EXCEPTION_CONTINUE_SEARCH, EXCEPTION_CONTINUE_EXECUTION


class DepthLock:
    """A recursive lock that tells how deep the current holder is."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.depth = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = self._lock.acquire(blocking, timeout)
        if got:
            self.depth += 1
        return got

    def release(self) -> None:
        self.depth -= 1
        self._lock.release()


class DepthRuntime(NullRuntime):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock = DepthLock()

    def mutex_create(self) -> Mutex:
        return self.lock


def fault(mgr: Any, addr: int, errcd: int) -> int:
    return int(mgr.handle_page_fault(PfInfo(addr, errcd)))


def test_handler_is_registered_at_init() -> None:
    mgr, rt = make()
    assert rt.pf_handler == mgr.handle_page_fault


def test_unknown_address_continues_the_search() -> None:
    mgr, rt = make()
    assert fault(mgr, FIRST_FREE + 0x123, WRITE) == SEARCH
    assert rt.calls == []


def test_on_demand_page_is_committed_and_execution_continues() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, 2 * PAGE, COD)
    rt.reset()
    assert fault(mgr, a + PAGE + 0x7F8, WRITE) == EXECUTION
    assert seq(rt) == [call("EACCEPT", SECINFO_COMMIT, a + PAGE)]
    assert list(mgr.regions()[-1].committed) == [False, True]
    # now committed: a spurious fault, nothing to do
    rt.reset()
    assert fault(mgr, a + PAGE, READ) == EXECUTION
    assert rt.calls == []


def test_committed_page_without_the_permission_continues_the_search() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, PAGE, COMMIT_NOW)
    mgr.modify_permissions(a, PAGE, int(PROT_READ))
    rt.reset()
    assert fault(mgr, a, WRITE) == SEARCH
    assert fault(mgr, a, READ) == EXECUTION
    mgr.modify_permissions(a, PAGE, int(PROT_NONE))
    assert fault(mgr, a, READ) == SEARCH


def test_on_demand_page_without_the_permission_is_not_committed() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, 2 * PAGE, COD)
    mgr.commit(a, 2 * PAGE)
    mgr.modify_permissions(a, 2 * PAGE, int(PROT_READ))
    mgr.uncommit(a + PAGE, PAGE)
    rt.reset()
    assert fault(mgr, a + PAGE, WRITE) == SEARCH
    assert rt.calls == []


def test_reserve_and_uncommitted_commit_now_pages_abort() -> None:
    mgr, _ = make()
    r = mgr.alloc(None, PAGE, RESERVE)
    with pytest.raises(EnclaveAbort):
        fault(mgr, r, READ)
    n = mgr.alloc(None, PAGE, COMMIT_NOW)
    mgr.uncommit(n, PAGE)
    with pytest.raises(EnclaveAbort):
        fault(mgr, n, READ)
    # the lock was released on the way out
    assert mgr.alloc(None, PAGE, COD) > n


def test_eaccept_failure_while_committing_aborts() -> None:
    mgr, rt = make()
    a = mgr.alloc(None, PAGE, COD)
    rt.inject("EACCEPT", 0x12)
    with pytest.raises(EnclaveAbort):
        fault(mgr, a, READ)


def test_rts_root_is_searched_after_the_user_root() -> None:
    mgr, rt = make()
    s = mgr.mm_alloc(None, PAGE, COD | SYSTEM)
    rt.reset()
    assert fault(mgr, s + 8, READ) == EXECUTION
    assert seq(rt) == [call("EACCEPT", SECINFO_COMMIT, s)]


def test_custom_handler_runs_without_the_lock() -> None:
    from emm_support import BASE, META_AREA, SIZE, USER_BASE, USER_END

    from sgx_emm.emm import EnclaveMemoryManager

    rt = DepthRuntime(BASE, SIZE)
    mgr = EnclaveMemoryManager(rt, rt.primitives, meta_area_base=META_AREA)
    mgr.init(USER_BASE, USER_END)
    seen: list[tuple[int, int, object, int]] = []
    token = object()

    def handler(pfinfo: PfInfo, private: object) -> int:
        seen.append((pfinfo.maddr, pfinfo.errcd, private, rt.lock.depth))
        return EXECUTION

    a = mgr.alloc(None, PAGE, COD, handler, token)
    assert fault(mgr, a + 0x10, WRITE | 0x8000) == EXECUTION
    assert seen == [(a + 0x10, WRITE | 0x8000, token, 0)]
    assert mgr.regions()[-1].has_handler and mgr.regions()[-1].committed.count() == 0

    def longjmp(pfinfo: PfInfo, private: object) -> int:
        raise KeyError("unwound")

    b = mgr.alloc(None, PAGE, COD, longjmp)
    with pytest.raises(KeyError):
        fault(mgr, b, READ)
    assert rt.lock.depth == 0


def test_before_init_the_handler_declines() -> None:
    from emm_support import BASE, META_AREA, SIZE

    from sgx_emm.emm import EnclaveMemoryManager

    rt = NullRuntime(BASE, SIZE)
    mgr = EnclaveMemoryManager(rt, rt.primitives, meta_area_base=META_AREA)
    assert fault(mgr, BASE, READ) == SEARCH

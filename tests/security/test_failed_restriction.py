"""Deviation 24: a permission change that fails after the OS was asked leaves EPCM = books.

The OS may restrict pages and then say it failed (`urts.lie-failure`), or restrict
them and withhold the tracking the EACCEPT needs (`driver.withhold-etrack`,
`threads.withhold-ipi`). The manager reports the error, and extends every page of
the range back with EMODPE (which needs no OS), so the EPCM holds the prot the
region records. Pinned on the attack library (simulated platform) and, call by
call, on the null runtime.
"""

from __future__ import annotations

import errno

import pytest

from sgx_emm.emm import EnclaveMemoryManager
from sgx_emm.errors import EmmError
from sgx_emm.flags import (
    COMMIT_NOW,
    PAGE_SIZE,
    PAGE_TYPE_REG,
    PROT_READ,
    PROT_READ_WRITE,
)
from sgx_emm.hostile import Outcome, attack, run_attack
from sgx_emm.runtime.null import NullRuntime

P = PAGE_SIZE
EL_BASE = 0x7F0000000000
PR = 0x20


@pytest.mark.parametrize(("name", "said"), [
    ("urts.lie-failure", "EFAULT"),
    ("driver.withhold-etrack", "SGX_NOT_TRACKED"),
    ("threads.withhold-ipi", "SGX_NOT_TRACKED"),
])
def test_a_restriction_the_os_half_did_is_reported_and_undone(name: str, said: str) -> None:
    r = run_attack(attack(name))
    assert r.outcome is Outcome.DETECTED and said in r.detail
    assert r.books == "agree"


def null_manager() -> tuple[EnclaveMemoryManager, NullRuntime]:
    rt = NullRuntime(EL_BASE, 1 << 36)
    mgr = EnclaveMemoryManager(rt, rt.primitives, meta_area_base=EL_BASE + 0x100000)
    mgr.init(EL_BASE + (1 << 35), EL_BASE + (1 << 36))
    return mgr, rt


def leaves(rt: NullRuntime) -> list[tuple[str, int, int]]:
    return [(c.name, c.args[0], c.args[1]) for c in rt.calls
            if c.name in ("EACCEPT", "EMODPE")]


def prot_at(mgr: EnclaveMemoryManager, addr: int) -> int:
    region = next(r for r in mgr.regions() if r.start <= addr < r.end)
    return region.si_flags & 7


def test_a_failed_restriction_extends_every_page_back_and_keeps_the_books() -> None:
    mgr, rt = null_manager()
    a = mgr.alloc(None, 4 * P, COMMIT_NOW)
    rt.reset()
    skip = [1]

    def second(_args: tuple[int, ...]) -> bool:
        skip[0] -= 1
        return skip[0] < 0
    rt.inject("EACCEPT", 11, match=second)  # SGX_NOT_TRACKED on the second page
    with pytest.raises(EmmError) as info:
        mgr.modify_permissions(a, 4 * P, PROT_READ)
    assert info.value.result_name == "SGX_NOT_TRACKED"
    r_pr = PROT_READ | PAGE_TYPE_REG | PR
    rw_pr = PROT_READ_WRITE | PAGE_TYPE_REG | PR
    assert leaves(rt) == [("EACCEPT", r_pr, a), ("EACCEPT", r_pr, a + P)] + [
        ("EMODPE", rw_pr, a + i * P) for i in range(4)]
    assert [r.si_flags & 7 for r in mgr.regions() if a <= r.start < a + 4 * P] == [3]


def test_a_failed_ocall_extends_back_to_the_old_prot_only() -> None:
    mgr, rt = null_manager()
    a = mgr.alloc(None, 2 * P, COMMIT_NOW)
    rt.reset()
    rt.inject("modify_ocall", errno.EFAULT)
    with pytest.raises(EmmError) as info:
        mgr.modify_permissions(a, 2 * P, PROT_READ)
    assert info.value.errno == errno.EFAULT and "modify_ocall" in info.value.reason
    rw_pr = PROT_READ_WRITE | PAGE_TYPE_REG | PR
    assert leaves(rt) == [("EMODPE", rw_pr, a), ("EMODPE", rw_pr, a + P)]
    assert prot_at(mgr, a) == PROT_READ_WRITE


def test_a_failed_extension_records_what_the_enclave_already_extended() -> None:
    """R -> RW fails at the second page's EACCEPT: the first page is already RW in
    the EPCM, so every page is made RW and the range is recorded RW."""
    mgr, rt = null_manager()
    a = mgr.alloc(None, 3 * P, COMMIT_NOW)
    mgr.modify_permissions(a, 3 * P, PROT_READ)
    rt.reset()
    skip = [1]

    def second(_args: tuple[int, ...]) -> bool:
        skip[0] -= 1
        return skip[0] < 0
    rt.inject("EACCEPT", 11, match=second)
    with pytest.raises(EmmError):
        mgr.modify_permissions(a, 3 * P, PROT_READ_WRITE)
    rw_pr = PROT_READ_WRITE | PAGE_TYPE_REG | PR
    assert leaves(rt) == [("EMODPE", rw_pr, a), ("EACCEPT", rw_pr, a),
                          ("EMODPE", rw_pr, a + P), ("EACCEPT", rw_pr, a + P)] + [
        ("EMODPE", rw_pr, a + i * P) for i in range(3)]
    assert prot_at(mgr, a) == PROT_READ_WRITE
    mgr.modify_permissions(a, 3 * P, PROT_READ)  # the manager carries on as usual
    assert prot_at(mgr, a + 2 * P) == PROT_READ


def test_a_failed_change_from_prot_none_extends_nothing() -> None:
    mgr, rt = null_manager()
    a = mgr.alloc(None, 2 * P, COMMIT_NOW)
    mgr.modify_permissions(a, 2 * P, 0)
    rt.reset()
    rt.inject("modify_ocall", errno.EFAULT)
    with pytest.raises(EmmError):
        mgr.modify_permissions(a, 2 * P, PROT_READ)
    assert leaves(rt) == []
    assert prot_at(mgr, a) == 0

"""`enc.check()`: the manager's books against the EPCM and the page tables.

Each test makes the hardware and the books disagree in one way (as a hostile OS
or a bug would) and checks that `check()` names that page and that kind, and
that honest runs, paging included, show no difference.
"""

from __future__ import annotations

import pytest

from sgx_emm import Enclave
from sgx_emm.books import DOUBLE, NO_BITMAP, PROT, PTE, STALE, TYPE, UNBACKED, BooksDisagree
from sgx_emm.flags import COMMIT_NOW, COMMIT_ON_DEMAND, PAGE_SIZE, PROT_READ
from sgx_emm.platform import ModifyTypes, RestrictPermissions
from sgx_emm.platform.epcm import F_R, F_VALID, F_W
from sgx_emm.platform.secinfo import PT_REG, PT_TCS, PT_TRIM

P = PAGE_SIZE


@pytest.fixture
def enc() -> Enclave:
    return Enclave.create(size=1 << 30, epc_pages=4096, threads=2)


def kinds(enc: Enclave) -> list[tuple[int, str]]:
    return [(d.addr, d.kind) for d in enc.check()]


def test_a_fresh_enclave_and_an_honest_run_agree(enc: Enclave) -> None:
    assert enc.check() == []
    with enc.enter() as t:
        a = enc.emm.alloc(None, 4 * P, COMMIT_ON_DEMAND)
        t.write(a + P, b"x")
        enc.emm.modify_permissions(a + P, P, PROT_READ)
        enc.emm.uncommit(a + P, P)
        b = enc.emm.alloc(None, 2 * P, COMMIT_NOW)
        enc.emm.dealloc(b, P)
    assert enc.check() == []


def test_a_page_accepted_behind_the_managers_back_is_stale(enc: Enclave) -> None:
    with enc.enter() as t:
        a = enc.emm.alloc(None, 2 * P, COMMIT_ON_DEMAND)
        assert t.eaccept(0x20B, a + P) == 0
    assert kinds(enc) == [(a + P, STALE)]
    diff = enc.check()[0]
    assert "not committed" in diff.books and "REG accepted" in diff.hardware
    assert f"{a + P:#x} stale" in str(diff)


def test_a_page_the_os_trimmed_is_unbacked(enc: Enclave) -> None:
    with enc.enter():
        a = enc.emm.alloc(None, P, COMMIT_NOW)
    enc.fd.modify_types(ModifyTypes(a - enc.base, P, PT_TRIM))
    assert kinds(enc) == [(a, UNBACKED)]
    assert "MODIFIED" in enc.check()[0].hardware


def test_a_restriction_the_manager_did_not_ask_for_is_a_prot_difference(enc: Enclave) -> None:
    with enc.enter():
        a = enc.emm.alloc(None, P, COMMIT_NOW)
    enc.fd.restrict_permissions(RestrictPermissions(a - enc.base, P, PROT_READ))
    # PR is set and the page is still usable, but with R only where the books say RW
    assert kinds(enc) == [(a, PROT)]


def test_a_tcs_where_the_books_have_reg_is_a_type_difference(enc: Enclave) -> None:
    with enc.enter():
        a = enc.emm.alloc(None, P, COMMIT_NOW)
    slot = enc.fd.record(a)[0]
    enc.machine.epc.pt[slot] = PT_TCS
    assert kinds(enc) == [(a, TYPE)]


def test_a_pte_naming_another_page_is_a_pte_difference(enc: Enclave) -> None:
    with enc.enter() as t:
        a = enc.emm.alloc(None, 2 * P, COMMIT_NOW)
        t.write(a, b"A")
    other = enc.fd.record(a + P)[0]
    enc.machine.mm.set_pte(a >> 12, other, 0x3)
    assert kinds(enc) == [(a, PTE)]


def test_two_accepted_pages_at_one_address_are_a_double(enc: Enclave) -> None:
    with enc.enter():
        a = enc.emm.alloc(None, P, COMMIT_NOW)
    epc = enc.machine.epc
    slot = epc.alloc()
    assert slot is not None
    epc.install(slot, F_VALID | F_R | F_W, PT_REG, enc.fd.secs_slot or 0, a)
    assert kinds(enc) == [(a, DOUBLE)]


def test_a_region_without_bitmap_is_reported(enc: Enclave) -> None:
    with enc.enter():
        a = enc.emm.alloc(None, P, COMMIT_ON_DEMAND)
    ema = enc.manager._user.find(a)
    assert ema is not None
    ema.bitmap = None
    assert kinds(enc) == [(a, NO_BITMAP)]


def test_raise_on_difference(enc: Enclave) -> None:
    assert enc.check(raise_on_difference=True) == []
    with enc.enter() as t:
        a = enc.emm.alloc(None, P, COMMIT_ON_DEMAND)
        t.eaccept(0x20B, a)
    with pytest.raises(BooksDisagree, match="1 difference") as info:
        enc.check(raise_on_difference=True)
    assert [d.kind for d in info.value.differences] == [STALE]


def test_pages_sealed_out_by_paging_still_count() -> None:
    enc = Enclave.create(size=1 << 30, epc_pages=512, threads=2, reclaim=True)
    with enc.enter() as t:
        a = enc.emm.alloc(None, 600 * P, COMMIT_ON_DEMAND)
        for i in range(600):
            t.write(a + i * P, bytes([i & 0xFF or 1]))
    assert enc.check() == []

"""Sealed EPC paging: EPA / VA slots, EBLOCK, ETRACK, EWB with a MAC and a version, ELDU.

The leaves are checked one by one (SDM codes for each refusal), then the three
ways a kernel could hand back a page it holds (an old copy, forged bytes,
another page's image) are refused by ELDU, and the enclave stops instead of
reading them.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from sgx_emm import Enclave, EnclaveCrashed
from sgx_emm.flags import COMMIT_ON_DEMAND, PAGE_SIZE
from sgx_emm.platform.epcm import Epc
from sgx_emm.platform.sealing import (
    SGX_MAC_COMPARE_FAIL,
    SGX_NOT_TRACKED,
    SGX_PAGE_NOT_BLOCKED,
    SGX_VA_SLOT_OCCUPIED,
)
from sgx_emm.platform.secinfo import PT_VA
from sgx_emm.platform.state import EvictedPage

P = PAGE_SIZE


@pytest.fixture
def enc() -> Enclave:
    return Enclave.create(size=1 << 30, epc_pages=1024, threads=2)


def committed_page(enc: Enclave, data: bytes) -> tuple[int, int]:
    """A committed heap page holding `data`: (address, EPC slot)."""
    with enc.enter() as t:
        a = enc.emm.alloc(None, P, COMMIT_ON_DEMAND)
        t.write(a, data)
    rec = enc.fd.record(a)
    assert rec is not None
    return a, rec[0]


def va_slot(enc: Enclave) -> int:
    slot = enc.machine.epc.alloc()
    assert slot is not None
    enc.machine.cpu.epa(Epc.paddr(slot))
    assert enc.machine.epc.pt[slot] == PT_VA
    return Epc.paddr(slot)


def test_ewb_needs_a_blocked_tracked_page_and_a_free_slot(enc: Enclave) -> None:
    cpu = enc.machine.cpu
    _, slot = committed_page(enc, b"data")
    page, va = Epc.paddr(slot), va_slot(enc)
    secs = Epc.paddr(enc.fd.secs_slot or 0)
    assert cpu.ewb(page, va) == SGX_PAGE_NOT_BLOCKED
    assert cpu.eblock(page) == 0
    with enc.enter():        # a thread inside keeps the blocking epoch open
        assert cpu.etrack(secs) == 0
        assert cpu.ewb(page, va) == SGX_NOT_TRACKED
    blob = cpu.ewb(page, va)
    assert isinstance(blob, EvictedPage)
    assert not enc.machine.epc.flags[slot]          # the EPC page is free again
    _, other = committed_page(enc, b"more")
    assert cpu.eblock(Epc.paddr(other)) == 0
    cpu.etrack(secs)
    assert cpu.ewb(Epc.paddr(other), va) == SGX_VA_SLOT_OCCUPIED


def test_eldu_verifies_and_clears_the_version(enc: Enclave) -> None:
    cpu, epc = enc.machine.cpu, enc.machine.epc
    a, slot = committed_page(enc, b"secret bytes")
    va = va_slot(enc)
    secs = Epc.paddr(enc.fd.secs_slot or 0)
    cpu.eblock(Epc.paddr(slot))
    cpu.etrack(secs)
    blob = cpu.ewb(Epc.paddr(slot), va)
    assert isinstance(blob, EvictedPage)
    assert blob.contents is not None and b"secret bytes" not in blob.contents  # encrypted
    target = epc.alloc()
    assert target is not None
    for bad in (replace(blob, contents=bytes(P)), replace(blob, linaddr=a + P),
                replace(blob, flags=blob.flags | 0x4)):
        assert cpu.eldu(bad, secs, Epc.paddr(target), va) == SGX_MAC_COMPARE_FAIL
        assert not epc.flags[target]
    assert cpu.eldu(blob, secs, Epc.paddr(target), va) == 0
    assert bytes(epc.page_bytes(target))[:12] == b"secret bytes"
    other = epc.alloc()
    assert other is not None
    assert cpu.eldu(blob, secs, Epc.paddr(other), va) == SGX_MAC_COMPARE_FAIL  # replayed


def test_an_evicted_page_comes_back_through_the_driver(enc: Enclave) -> None:
    a, _ = committed_page(enc, b"round trip")
    assert enc.fd.evict(a)
    assert enc.fd.evicted(a) is not None
    assert enc.check() == []
    with enc.enter() as t:
        assert t.read(a, 10) == b"round trip"
    assert enc.fd.evicted(a) is None


@pytest.mark.parametrize("attack", ["old", "forged", "relabelled"])
def test_the_three_eldu_attacks_end_in_sigbus_not_in_the_data(enc: Enclave,
                                                                attack: str) -> None:
    a, _ = committed_page(enc, b"version one")
    b, _ = committed_page(enc, b"page b")
    fd = enc.fd
    assert fd.evict(a)
    old = fd.evicted(a)
    with enc.enter() as t:
        t.write(a, b"version two")
    assert fd.evict(a) and fd.evict(b)
    held = {"old": old, "forged": replace(fd.evicted(a), contents=bytes(P)),  # type: ignore[arg-type]
            "relabelled": replace(fd.evicted(b), linaddr=a)}[attack]  # type: ignore[arg-type]
    assert held is not None
    fd._swapped[a >> 12] = held             # the kernel's backing store: its to change
    with pytest.raises(EnclaveCrashed), enc.enter() as t:
        t.read(a, 11)
    assert enc.crashed and enc.fd.evicted(a) is not None   # never loaded

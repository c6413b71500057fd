"""The trusted heap: a size-class allocator growing and shrinking through the manager."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from services_support import small

from sgx_emm import Enclave
from sgx_emm.flags import PAGE_SIZE
from sgx_emm.services import EnclaveConfig, GrowthPolicy, NotInsideEnclave
from sgx_emm.services.heap import MAX_SMALL, SIZE_CLASSES


def test_blocks_hold_their_bytes_and_do_not_overlap(enc: Enclave) -> None:
    with enc.enter() as t:
        sizes = [1, 16, 17, 100, 2048, 2049, 5000, 0]
        blocks = [enc.heap.malloc(n) for n in sizes]
        assert all(b is not None for b in blocks)
        spans = sorted((b, b + enc.heap.usable_size(b)) for b in blocks if b is not None)
        pairs = zip(spans, spans[1:], strict=False)
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in pairs)
        assert enc.heap.usable_size(blocks[2]) == 32          # size class of 17
        assert enc.heap.usable_size(blocks[5]) == PAGE_SIZE   # large: whole pages
        assert blocks[5] % PAGE_SIZE == 0
        for i, b in enumerate(blocks):
            t.write(b, bytes([i]) * max(sizes[i], 1))
        for i, b in enumerate(blocks):
            assert t.read(b, max(sizes[i], 1)) == bytes([i]) * max(sizes[i], 1)
        for b in blocks:
            enc.heap.free(b)
        stats = enc.heap.stats()
        assert stats.in_use == 0 and stats.blocks == 0 and stats.brk == 0
        assert stats.mallocs == stats.frees == len(sizes)


def test_freed_slots_are_reused(enc: Enclave) -> None:
    with enc.enter():
        a = enc.heap.malloc(40)
        b = enc.heap.malloc(40)
        enc.heap.free(a)
        assert enc.heap.malloc(48) == a                # same class, slot reused
        assert b is not None


def test_realloc_keeps_the_bytes(enc: Enclave) -> None:
    with enc.enter() as t:
        a = enc.heap.malloc(20)
        assert a is not None
        t.write(a, b"twenty bytes of data")
        assert enc.heap.realloc(a, 30) == a                # fits its class (32)
        b = enc.heap.realloc(a, 3000)
        assert b is not None and b != a
        assert t.read(b, 20) == b"twenty bytes of data"
        with pytest.raises(ValueError, match="not a live block"):
            enc.heap.free(a)                               # moved: the old one is gone
        assert enc.heap.realloc(b, 0) is None and enc.heap.stats().blocks == 0
        c = enc.heap.realloc(None, 10)
        assert c is not None and enc.heap.stats().blocks == 1


def test_calloc_zeroes_recycled_memory(enc: Enclave) -> None:
    with enc.enter() as t:
        a = enc.heap.malloc(64)
        assert a is not None
        t.write(a, b"\xff" * 64)
        enc.heap.free(a)
        b = enc.heap.calloc(4, 16)
        assert b == a and t.read(b, 64) == bytes(64)
        assert enc.heap.calloc(1 << 33, 1 << 33) is None          # overflows 64 bits


def test_growth_and_trim_go_through_the_manager(enc: Enclave) -> None:
    cfg = enc.config
    with enc.enter():
        start = enc.heap.stats()
        assert start.committed == cfg.heap_init_size
        before = enc.trace.counts
        big = enc.heap.malloc(0x20000)
        grown = enc.trace.counts - before
        assert big is not None
        assert grown[("leaf", "EAUG")] >= (0x20000 - cfg.heap_init_size) // PAGE_SIZE
        stats = enc.heap.stats()
        assert stats.grows >= 1 and stats.committed >= 0x20000
        before = enc.trace.counts
        enc.heap.free(big)
        trimmed = enc.trace.counts - before
        assert trimmed[("ioctl", "REMOVE_PAGES")] >= 1
        stats = enc.heap.stats()
        assert stats.trims == 1 and stats.committed <= cfg.heap_min_size + cfg.policy.heap_step
        assert stats.peak >= 0x20000


def test_out_of_memory_is_none_never_a_crash(enc: Enclave) -> None:
    with enc.enter():
        cap = enc.heap.stats().capacity
        assert enc.heap.malloc(cap + 1) is None
        kept = enc.heap.malloc(100)
        assert kept is not None
        assert enc.heap.realloc(kept, cap + 1) is None        # the old block stays
        assert enc.heap.usable_size(kept) == 128
        blocks = []
        while (b := enc.heap.malloc(PAGE_SIZE)) is not None:
            blocks.append(b)
        assert enc.heap.stats().brk == cap
    assert not enc.crashed


def test_bad_input_changes_nothing(enc: Enclave) -> None:
    with enc.enter():
        a = enc.heap.malloc(10)
        before = enc.heap.stats()
        with pytest.raises(ValueError, match="not a live block"):
            enc.heap.free(a + 1)
        with pytest.raises(TypeError):
            enc.heap.malloc("10")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="non-negative"):
            enc.heap.malloc(-1)
        with pytest.raises(TypeError):
            enc.heap.malloc(True)
        enc.heap.free(None)
        enc.heap.free(0)
        assert enc.heap.stats() == before
    with pytest.raises(NotInsideEnclave, match="inside"):
        enc.heap.malloc(10)


def test_fault_policy_commits_on_first_touch() -> None:
    enc = small(config=EnclaveConfig(tcs_num=1, policy=GrowthPolicy(heap_commit="fault")))
    with enc.enter() as t:
        before = enc.trace.counts
        a = enc.heap.malloc(0x8000)
        assert a is not None
        assert (enc.trace.counts - before)[("leaf", "EAUG")] == 0     # nothing yet
        t.write(a + 0x7000, b"x")
        assert (enc.trace.counts - before)[("leaf", "EAUG")] == 1     # that page only
        committed = enc.heap.stats().committed
        enc.heap.free(a)
        assert enc.heap.stats().committed <= committed


def test_threads_share_the_heap() -> None:
    enc = small(threads=4)

    def churn(seed: int) -> list[int]:
        got = []
        for i in range(30):
            b = enc.heap.malloc(16 + (seed * 37 + i * 11) % 600)
            assert b is not None
            got.append(b)
        for b in got[::2]:
            enc.heap.free(b)
        return got[1::2]

    handles = [enc.threads.create(churn, n) for n in range(3)]
    kept = [b for h in handles for b in enc.threads.join(h)]
    assert len(set(kept)) == len(kept) == 45
    assert enc.heap.stats().blocks == 45


@settings(max_examples=25)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3 * PAGE_SIZE)), max_size=40))
def test_random_churn_keeps_blocks_apart(ops: list[tuple[bool, int]]) -> None:
    enc = small(threads=1)
    live: dict[int, int] = {}
    with enc.enter():
        for free, size in ops:
            if free and live:
                addr = sorted(live)[size % len(live)]
                enc.heap.free(addr)
                del live[addr]
                continue
            addr = enc.heap.malloc(size)
            assert addr is not None and addr not in live
            live[addr] = enc.heap.usable_size(addr)
            assert live[addr] >= size
        spans = sorted(live.items())
        assert all(a + n <= b for (a, n), (b, _) in zip(spans, spans[1:], strict=False))
        assert enc.heap.stats().in_use == sum(live.values())
        assert len(SIZE_CLASSES) == 14 and SIZE_CLASSES[-1] == MAX_SMALL

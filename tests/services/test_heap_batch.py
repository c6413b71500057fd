"""The heap's GROWSUP batch commit: `GrowthPolicy.heap_fault_pages` in fault mode."""

from __future__ import annotations

import pytest
from services_support import small

from sgx_emm import Enclave
from sgx_emm.emm.regions import Region
from sgx_emm.flags import PAGE_SIZE
from sgx_emm.services import ConfigError, EnclaveConfig, GrowthPolicy


def batched(pages: int, commit: str = "fault") -> Enclave:
    policy = GrowthPolicy(heap_commit=commit, heap_fault_pages=pages)  # type: ignore[arg-type]
    return small(config=EnclaveConfig(tcs_num=1, policy=policy))


def heap_dyn(enc: Enclave) -> Region:
    start = enc.base + enc.layout.find("heap_dyn").offset
    return next(r for r in enc.emm.regions("rts") if r.start == start)


def handled_faults(enc: Enclave) -> int:
    """Faults the enclave's handler chain took (the kernel's own #PFs not counted)."""
    return enc.trace.counts[("handler", "emm")]


def committed_pages(region: Region) -> list[int]:
    return [i for i in range(region.size // PAGE_SIZE) if region.committed[i]]


def test_a_fault_commits_the_batch_upward() -> None:
    enc = batched(4)
    region = heap_dyn(enc)
    assert region.has_handler and committed_pages(region) == []
    with enc.enter() as t:
        handled, eaug = handled_faults(enc), enc.trace.counts[("leaf", "EAUG")]
        t.write(region.start, b"x")
        assert handled_faults(enc) == handled + 1
        assert enc.trace.counts[("leaf", "EAUG")] == eaug + 4
        for page in range(1, 4):                         # committed: no more faults
            t.write(region.start + page * PAGE_SIZE, b"y")
        assert handled_faults(enc) == handled + 1
        assert t.read(region.start, 1) == b"x"
    assert committed_pages(heap_dyn(enc)) == [0, 1, 2, 3]
    assert enc.check() == []


def test_the_batch_is_clipped_at_the_region_end() -> None:
    enc = batched(4)
    region = heap_dyn(enc)
    last = region.size // PAGE_SIZE - 1
    with enc.enter() as t:
        t.write(region.end - 2 * PAGE_SIZE, b"x")
    assert committed_pages(heap_dyn(enc)) == [last - 1, last]
    assert enc.check() == []


def test_pages_already_committed_are_skipped() -> None:
    enc = batched(4)
    region = heap_dyn(enc)
    with enc.enter() as t:
        t.write(region.start + 6 * PAGE_SIZE, b"x")      # commits 6..9
        eaug = enc.trace.counts[("leaf", "EAUG")]
        t.write(region.start + 4 * PAGE_SIZE, b"y")      # commits 4, 5; 6..9 kept
        assert enc.trace.counts[("leaf", "EAUG")] == eaug + 2
        assert t.read(region.start + 6 * PAGE_SIZE, 1) == b"x"
    assert committed_pages(heap_dyn(enc)) == [4, 5, 6, 7, 8, 9]
    assert enc.check() == []


def test_the_heap_allocator_over_the_batch() -> None:
    enc = batched(8, "fault")
    with enc.enter() as t:
        a = enc.heap.malloc(0x20000)
        assert a is not None
        faults = handled_faults(enc)
        for off in range(0, 0x20000, PAGE_SIZE):
            t.write(a + off, b"z")
        # 32 pages, one batch of 8 per fault (the first may start mid-batch)
        assert handled_faults(enc) - faults <= 0x20000 // PAGE_SIZE // 8 + 1
        assert enc.heap.stats().committed > 0x20000     # the last batch ran past it
        enc.heap.free(a)                                 # the trim reaches the batch too
        assert enc.heap.stats().committed == enc.config.heap_min_size
    assert enc.check() == []


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2", None])
def test_bad_heap_fault_pages_are_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match="heap_fault_pages"):
        GrowthPolicy(heap_fault_pages=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", [GrowthPolicy(), GrowthPolicy(heap_commit="fault"),
                                    GrowthPolicy(heap_fault_pages=4)])
def test_without_the_batch_the_heap_region_is_unchanged(policy: GrowthPolicy) -> None:
    """The default, fault mode with 1 page, and explicit mode (which commits before
    handing memory out) keep the manager's own one-page handler."""
    enc = small(config=EnclaveConfig(tcs_num=1, policy=policy))
    region = heap_dyn(enc)
    assert not region.has_handler
    with enc.enter() as t:
        eaug = enc.trace.counts[("leaf", "EAUG")]
        t.write(region.start, b"x")
        assert enc.trace.counts[("leaf", "EAUG")] == eaug + 1
    assert committed_pages(heap_dyn(enc)) == [0]
    assert enc.check() == []

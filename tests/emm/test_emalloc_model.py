"""Random malloc/free sequences against the allocator's structural invariants.

Whatever the order of calls: handed-out blocks never overlap each other or a free
block, every block lies in the used part of a reserve, the used parts are tiled by
blocks (leaky mode: up to the 8-byte tails the best-fit list drops), and a freed
payload's block is reusable.
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from sgx_emm.emm.emalloc import HEADER_SIZE, MAX_EXACT_SIZE, MetaAllocator
from sgx_emm.errors import EnclaveAbort

META_BASE = 0x1000_0000


class BumpHost:
    """A manager that only hands out address space; its records use the meta area."""

    def __init__(self) -> None:
        self.next_addr = 0x4000_0000
        self.allocator: MetaAllocator | None = None

    def meta_alloc_region(self, addr: int | None, size: int, flags: int) -> int:
        assert self.allocator is not None and self.allocator.adding_reserve
        assert self.allocator.malloc(72) is not None
        if addr is None:
            addr = self.next_addr
            self.next_addr += size
        return addr

    def meta_commit(self, addr: int, size: int) -> None:
        pass

    def meta_touch(self, addr: int, size: int) -> None:
        pass


sizes = st.one_of(
    st.sampled_from([72, 24, 1, 8, 16]),  # region records and small bitmaps
    st.integers(0, 600),
    st.integers(2050, 9000),  # best-fit list
)


class AllocatorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}  # payload -> block size
        self.freed: set[int] = set()  # payloads freed and not handed out again
        self.alloc: MetaAllocator

    @initialize(leaky=st.booleans(), legacy_2022=st.booleans())
    def start(self, leaky: bool, legacy_2022: bool) -> None:
        host = BumpHost()
        self.alloc = MetaAllocator(host, meta_area_base=META_BASE, leaky=leaky,
                                   legacy_2022=legacy_2022)
        host.allocator = self.alloc
        self.alloc.init()

    @rule(size=sizes)
    def malloc(self, size: int) -> None:
        payload = self.alloc.malloc(size)
        assert payload is not None and payload not in self.live
        bsize = self.alloc.block_size(payload)
        assert bsize is not None and bsize >= size + HEADER_SIZE
        self.live[payload] = bsize
        self.freed.discard(payload)

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data())
    def free(self, data: st.DataObject) -> None:
        payload = data.draw(st.sampled_from(sorted(self.live)))
        del self.live[payload]
        self.alloc.free(payload)
        self.freed.add(payload)
        assert self.alloc.block_size(payload) is None

    @precondition(lambda self: bool(self.freed))
    @rule(data=st.data())
    def free_again(self, data: st.DataObject) -> None:
        """A payload freed before (now free, merged into a free block, or inside a
        newer block) is no block to free: the allocator aborts and changes nothing."""
        payload = data.draw(st.sampled_from(sorted(self.freed)))
        before = (self.alloc.free_blocks(), self.alloc.reserves())
        with pytest.raises(EnclaveAbort):
            self.alloc.free(payload)
        assert (self.alloc.free_blocks(), self.alloc.reserves()) == before

    @invariant()
    def live_blocks_keep_their_sizes(self) -> None:
        for payload, bsize in self.live.items():
            assert self.alloc.block_size(payload) == bsize

    @invariant()
    def blocks_tile_the_used_parts(self) -> None:
        blocks = sorted([(p - HEADER_SIZE, s, True) for p, s in self.live.items()]
                        + [(a, s, False) for a, s in self.alloc.free_blocks()])
        for (a, s, _), (b, _, _) in zip(blocks, blocks[1:], strict=False):
            assert a + s <= b, "blocks overlap"
        for r in self.alloc.reserves():
            inside = [(a, s, used) for a, s, used in blocks if r.base <= a < r.base + r.size]
            assert all(a + s <= r.base + r.used for a, s, _ in inside)
            gap = r.used - sum(s for _, s, _ in inside)
            if self.alloc.leaky:
                assert gap >= 0 and gap % 8 == 0
            else:
                assert gap == 0
            ends = {a + s: (s, used) for a, s, used in inside}
            at_bump = ends.get(r.base + r.used)
            if at_bump is not None and not at_bump[1]:  # a free block ends at the bump
                assert self.alloc.leaky and at_bump[0] <= MAX_EXACT_SIZE
        assert sum(len([1 for a, *_ in blocks if r.base <= a < r.base + r.size])
                   for r in self.alloc.reserves()) == len(blocks)


AllocatorMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60,
                                              deadline=None)
TestAllocatorMachine = AllocatorMachine.TestCase

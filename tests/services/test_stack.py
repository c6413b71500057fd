"""Thread stacks: committed part, on-demand growth through #PF, the guard page."""

from __future__ import annotations

import pytest
from services_support import small

from sgx_emm import Enclave, EnclaveCrashed
from sgx_emm.flags import PAGE_SIZE
from sgx_emm.services import EnclaveConfig, GrowthPolicy


def test_an_image_threads_stack(enc: Enclave) -> None:
    cfg = enc.config
    with enc.enter() as t:
        s = t.stack
        assert s.max == cfg.stack_max_size and s.top - s.limit == s.max
        assert s.guard == s.limit - PAGE_SIZE
        assert s.committed == cfg.stack_min_size
        faults = enc.trace.total("aex")
        low = s.touch(cfg.stack_min_size + 2 * PAGE_SIZE)
        assert low == s.top - cfg.stack_min_size - 2 * PAGE_SIZE
        assert s.committed == cfg.stack_min_size + 2 * PAGE_SIZE
        assert enc.trace.total("aex") > faults          # grown through #PF
        s.touch(PAGE_SIZE)                               # committed: no fault
        assert s.committed == cfg.stack_min_size + 2 * PAGE_SIZE


def test_a_dynamic_threads_stack(enc: Enclave) -> None:
    tcs = enc.add_thread()
    with enc.enter(tcs=tcs) as t:
        assert enc.user_base <= t.stack.limit < t.stack.top < tcs
        t.stack.touch(t.stack.max)
        assert t.stack.committed == t.stack.max
    assert not enc.crashed


def test_stack_overflow_crashes_with_its_cause(enc: Enclave) -> None:
    with pytest.raises(EnclaveCrashed) as info, enc.enter() as t:
        t.stack.touch(t.stack.max + 1)
    assert info.value.cause.startswith("stack overflow")
    assert info.value.addr & ~(PAGE_SIZE - 1) == t.stack.guard
    assert enc.crashed


def test_a_dynamic_threads_overflow_too(enc: Enclave) -> None:
    tcs = enc.add_thread()
    with pytest.raises(EnclaveCrashed, match="stack overflow"), enc.enter(tcs=tcs) as t:
        t.stack.touch(t.stack.max + PAGE_SIZE)


def test_bad_depths(enc: Enclave) -> None:
    with enc.enter() as t:
        with pytest.raises(ValueError, match="positive"):
            t.stack.touch(0)
        with pytest.raises(TypeError):
            t.stack.touch(1.5)  # type: ignore[arg-type]
    assert not enc.crashed


def test_batch_commits_on_stack_growth() -> None:
    one = small(config=EnclaveConfig(tcs_num=1))
    four = small(config=EnclaveConfig(tcs_num=1, policy=GrowthPolicy(stack_fault_pages=4)))
    aex = []
    for enc in (one, four):
        with enc.enter() as t:
            before = enc.trace.total("aex")
            t.stack.touch(t.stack.max)
            aex.append(enc.trace.total("aex") - before)
            assert t.stack.committed == t.stack.max
    assert aex[1] < aex[0]


def test_a_dynamic_stack_commits_a_batch_per_fault() -> None:
    enc = small(config=EnclaveConfig(tcs_num=1, policy=GrowthPolicy(stack_fault_pages=3)))
    tcs = enc.add_thread()
    with enc.enter(tcs=tcs) as t:
        s = t.stack
        below = s.top - enc.config.stack_min_size - PAGE_SIZE    # first on-demand page
        before = enc.trace.total("aex")
        t.write(below, b"x")                  # one fault ...
        assert enc.trace.total("aex") - before >= 1
        assert s.committed == enc.config.stack_min_size + 3 * PAGE_SIZE   # ... three pages
        before = enc.trace.total("aex")
        t.write(below - 2 * PAGE_SIZE, b"y")  # inside the batch: no fault
        assert enc.trace.total("aex") == before

"""Dynamic threads (add_thread / remove_thread) and the create/join pool."""

from __future__ import annotations

import errno
import threading

import pytest
from services_support import small

from sgx_emm import EmmError, Enclave
from sgx_emm.flags import COMMIT_ON_DEMAND, PAGE_SIZE, PAGE_TYPE_TCS
from sgx_emm.runtime.layout import NSSA
from sgx_emm.services import TCS_POLICY_BOUND, EnclaveConfig
from sgx_emm.services.threads import TLS_LIMIT, OutOfTcs, tcs_image


def test_add_thread_builds_an_enterable_tcs(enc: Enclave) -> None:
    tcs = enc.add_thread()
    memory = enc.thread_contexts.memory(tcs)
    assert memory is not None and memory.dynamic
    assert enc.user_base <= tcs < enc.user_end
    (region,) = [r for r in enc.emm.regions("user") if r.start == tcs]
    assert region.page_type == PAGE_TYPE_TCS and region.size == PAGE_SIZE
    image = tcs_image(enc, memory.ssa, memory.tls)
    assert (image.ossa, image.nssa) == (memory.ssa - enc.base, NSSA)
    assert image.ofsbase == image.ogsbase == memory.tls - enc.base
    assert image.fslimit == image.gslimit == TLS_LIMIT
    assert image.oentry == enc.layout.find("code").offset
    with enc.enter(tcs=tcs) as t:
        assert t.tcs == tcs
        scratch = enc.emm.alloc(None, PAGE_SIZE, COMMIT_ON_DEMAND)
        t.write(scratch, b"from the new thread")    # the AEX lands in its SSA
        assert t.read(scratch, 19) == b"from the new thread"
    assert not enc.crashed


def test_the_flow_is_the_sdks(enc: Enclave) -> None:
    before = enc.trace.counts
    enc.add_thread()
    after = enc.trace.counts - before
    assert after[("ioctl", "MODIFY_TYPES")] == 1 and after[("leaf", "EMODT")] == 1
    # TCS, NSSA SSA frames, TLS and the committed stack were EAUGed and EACCEPTed
    stack_pages = enc.config.stack_min_size // PAGE_SIZE
    assert after[("leaf", "EAUG")] == 1 + NSSA + 1 + stack_pages


def test_remove_thread_trims_it(enc: Enclave) -> None:
    tcs = enc.add_thread()
    start, size = enc.thread_contexts.memory(tcs).context
    enc.remove_thread(tcs)
    assert enc.thread_contexts.memory(tcs) is None
    assert not [r for r in enc.emm.regions("user") if start <= r.start < start + size]
    with pytest.raises(ValueError, match="not a TCS page"), enc.enter(tcs=tcs):
        pass
    assert not enc.crashed


def test_remove_thread_refuses_what_it_cannot_remove(enc: Enclave) -> None:
    with pytest.raises(ValueError, match="thread of the enclave image"):
        enc.remove_thread(enc.tcs_addresses[0])
    with pytest.raises(ValueError, match="not the TCS of a thread added"):
        enc.remove_thread(enc.user_base)
    tcs = enc.add_thread()
    with enc.enter(tcs=tcs), pytest.raises(ValueError, match="inside the enclave"):
        enc.remove_thread(tcs)
    enc.remove_thread(tcs)
    with pytest.raises(ValueError):
        enc.remove_thread(tcs)                       # twice


def test_tcs_max_num_bounds_add_thread() -> None:
    enc = small(config=EnclaveConfig(tcs_num=1, tcs_max_num=2))
    enc.add_thread()
    with pytest.raises(RuntimeError, match="TCSMaxNum = 2"):
        enc.add_thread()


def test_add_thread_out_of_memory_leaves_nothing_behind() -> None:
    enc = small(threads=1, user_size=0x40000)   # room for a few threads' contexts
    added = []
    with pytest.raises(EmmError) as info:
        for _ in range(8):
            added.append(enc.add_thread())
    assert info.value.errno == errno.ENOMEM
    assert not enc.crashed
    live = {r.start for r in enc.emm.regions("user")}
    for tcs in added:
        assert tcs in live
    assert added       # the manager's metadata takes part of the range too
    assert len([r for r in enc.emm.regions("user") if r.page_type == PAGE_TYPE_TCS]) \
        == len(added)


def test_create_and_join_run_inside_the_enclave(enc: Enclave) -> None:
    def work(n: int) -> int:
        ctx = enc.current()
        assert ctx is not None
        addr = enc.emm.alloc(None, PAGE_SIZE, COMMIT_ON_DEMAND)
        ctx.write(addr, bytes([n]))
        return ctx.read(addr, 1)[0] * 2

    handles = [enc.threads.create(work, n) for n in (1, 2)]
    assert [enc.threads.join(h) for h in handles] == [2, 4]
    with pytest.raises(ValueError, match="joined already"):
        enc.threads.join(handles[0])
    with pytest.raises(TypeError):
        enc.threads.create(42)  # type: ignore[arg-type]


def test_an_exception_in_the_thread_comes_back_from_join(enc: Enclave) -> None:
    def boom() -> None:
        raise KeyError("inside")

    handle = enc.threads.create(boom)
    with pytest.raises(KeyError, match="inside"):
        enc.threads.join(handle)
    assert enc.threads.join(enc.threads.create(lambda: 7)) == 7   # the TCS came back


def _blocking(enc: Enclave, n: int) -> tuple[list[object], threading.Event]:
    gate = threading.Event()
    handles = [enc.threads.create(gate.wait, 10) for _ in range(n)]
    return handles, gate


def test_without_tcs_max_num_the_pool_runs_out() -> None:
    enc = small(threads=2)
    handles, gate = _blocking(enc, 2)
    with pytest.raises(OutOfTcs, match="TCSMaxNum") as info:
        enc.threads.create(lambda: None)
    assert info.value.errno == errno.EAGAIN
    gate.set()
    for h in handles:
        enc.threads.join(h)


def test_dynamic_threads_up_to_tcs_max_num_with_a_min_pool() -> None:
    enc = small(config=EnclaveConfig(tcs_num=1, tcs_max_num=4, tcs_min_pool=1))
    handles, gate = _blocking(enc, 3)            # 1 from the image, 2 built on demand
    assert len(enc.thread_contexts.dynamic) == 3   # the pool keeps one ready
    assert {h.tcs for h in handles} <= {*enc.tcs_addresses, *enc.thread_contexts.dynamic}
    handles.append(enc.threads.create(gate.wait, 10))
    with pytest.raises(OutOfTcs):
        enc.threads.create(lambda: None)
    gate.set()
    for h in handles:
        assert enc.threads.join(h) is True
    # after the joins only TCSMinPool free TCSes stay: the image's one; the rest trimmed
    assert enc.thread_contexts.dynamic == []
    assert not [r for r in enc.emm.regions("user") if r.page_type == PAGE_TYPE_TCS]


def test_bound_policy_keeps_the_tcs_until_join() -> None:
    enc = small(config=EnclaveConfig(tcs_num=1, tcs_policy=TCS_POLICY_BOUND))
    handle = enc.threads.create(lambda: 1)
    handle.done.wait(10)
    assert enc.free_tcs_count() == 0              # bound: still the thread's
    assert enc.threads.join(handle) == 1
    assert enc.free_tcs_count() == 1
    unbound = small(config=EnclaveConfig(tcs_num=1))
    handle = unbound.threads.create(lambda: 1)
    handle.done.wait(10)
    assert unbound.free_tcs_count() == 1          # unbound: back when fn returned
    unbound.threads.join(handle)


def test_join_timeout(enc: Enclave) -> None:
    gate = threading.Event()
    handle = enc.threads.create(gate.wait, 10)
    with pytest.raises(TimeoutError):
        enc.threads.join(handle, timeout=0.01)
    gate.set()
    assert enc.threads.join(handle) is True


def test_concurrent_adds_never_pass_tcs_max_num() -> None:
    enc = small(config=EnclaveConfig(tcs_num=4, tcs_max_num=6))
    made: list[int] = []
    refused: list[Exception] = []

    def add() -> None:
        try:
            made.append(enc.add_thread())
        except RuntimeError as e:
            refused.append(e)

    workers = [threading.Thread(target=add) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(made) == 2 and len(refused) == 2
    assert sorted(enc.thread_contexts.dynamic) == sorted(made)

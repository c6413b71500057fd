"""The null runtime: records calls in order, counts them, injects failures."""

from __future__ import annotations

import errno

import pytest

from sgx_emm.emm.rt import Primitives, RuntimeAbstraction
from sgx_emm.runtime.null import Call, NullRuntime
from sgx_emm.trace import LEAF, OCALL, Trace


def test_it_satisfies_both_interfaces() -> None:
    rt = NullRuntime(0x1000, 0x10000)
    assert isinstance(rt, RuntimeAbstraction)
    assert isinstance(rt.primitives, Primitives)


def test_records_and_counts_in_order() -> None:
    trace = Trace()
    rt = NullRuntime(0x1000, 0x10000, trace=trace)
    assert rt.alloc_ocall(0x2000, 0x1000, 0x200, 4) == 0
    assert rt.primitives.eaccept(0x20B, 0x2000) == 0
    assert rt.primitives.emodpe(0x221, 0x2000) == 0
    assert rt.primitives.eacceptcopy(0x201, 0x2000, 0x3000) == 0
    assert rt.modify_ocall(0x2000, 0x1000, 0x203, 0x201) == 0
    assert rt.calls == [Call("alloc_ocall", (0x2000, 0x1000, 0x200, 4)),
                        Call("EACCEPT", (0x20B, 0x2000)), Call("EMODPE", (0x221, 0x2000)),
                        Call("EACCEPTCOPY", (0x201, 0x2000, 0x3000)),
                        Call("modify_ocall", (0x2000, 0x1000, 0x203, 0x201))]
    assert rt.counts["EACCEPT"] == 1 and sum(rt.counts.values()) == 5
    assert trace.total(OCALL) == 2 and trace.total(LEAF) == 3
    rt.reset()
    assert rt.calls == [] and not rt.counts


def test_counting_only_mode_keeps_no_list() -> None:
    rt = NullRuntime(0x1000, 0x10000, record=False)
    rt.primitives.eaccept(0x20B, 0x2000)
    assert rt.calls == [] and rt.counts["EACCEPT"] == 1


def _one_of_each(rt: NullRuntime) -> None:
    rt.alloc_ocall(0x2000, 0x1000, 0x200, 4)
    rt.modify_ocall(0x2000, 0x1000, 0x203, 0x201)
    rt.primitives.eaccept(0x20B, 0x2000)
    rt.primitives.eacceptcopy(0x201, 0x2000, 0x3000)
    rt.primitives.emodpe(0x221, 0x2000)


def test_counting_only_counts_every_call_across_resets_and_mode_switches() -> None:
    rt = NullRuntime(0x1000, 0x10000, record=False)
    _one_of_each(rt)
    assert rt.counts == dict.fromkeys(
        ("alloc_ocall", "modify_ocall", "EACCEPT", "EACCEPTCOPY", "EMODPE"), 1)
    rt.reset()  # new counters: the calls must count on them, not on the old ones
    assert not rt.counts
    _one_of_each(rt)
    _one_of_each(rt)
    assert set(rt.counts.values()) == {2}
    rt.record = True  # recorded calls still count, and are listed
    _one_of_each(rt)
    assert set(rt.counts.values()) == {3} and len(rt.calls) == 5
    rt.inject("EACCEPT", 0x1B)
    rt.record = False  # an injection pending: calls go the recording way, still counted
    assert rt.primitives.eaccept(0x20B, 0x2000) == 0x1B
    assert rt.primitives.eaccept(0x20B, 0x2000) == 0
    assert rt.counts["EACCEPT"] == 5 and len(rt.calls) == 5


def test_injection_by_count_and_by_arguments() -> None:
    rt = NullRuntime(0x1000, 0x10000)
    rt.inject("modify_ocall")
    assert rt.modify_ocall(0, 0, 0, 0) == errno.EFAULT
    assert rt.modify_ocall(0, 0, 0, 0) == 0  # only once
    rt.inject("EACCEPT", 0x1B, times=None, match=lambda args: args[1] == 0x5000)
    assert rt.primitives.eaccept(0x20B, 0x4000) == 0
    assert rt.primitives.eaccept(0x20B, 0x5000) == 0x1B
    assert rt.primitives.eaccept(0x20B, 0x5000) == 0x1B  # every time
    rt.clear_injections()
    assert rt.primitives.eaccept(0x20B, 0x5000) == 0
    with pytest.raises(ValueError):
        rt.inject("EREMOVE")


def test_within_enclave_and_registration() -> None:
    rt = NullRuntime(0x1000, 0x10000)
    assert rt.is_within_enclave(0x1000, 0x10000)
    assert not rt.is_within_enclave(0x1000, 0x10001)
    assert not rt.is_within_enclave(0xFFF, 0x10)
    assert not rt.is_within_enclave((1 << 64) - 0x1000, 0x2000)  # wraps
    assert rt.register_pfhandler(lambda pf: 0)
    assert not NullRuntime(0, 1, register_ok=False).register_pfhandler(lambda pf: 0)
    lock = rt.mutex_create()
    assert lock.acquire() and lock.acquire()  # recursive
    lock.release()
    lock.release()


def test_failed_registration_makes_init_efault() -> None:
    from sgx_emm.emm import EnclaveMemoryManager
    from sgx_emm.errors import EmmError

    rt = NullRuntime(0x10000000, 0x10000000, register_ok=False)
    mgr = EnclaveMemoryManager(rt, rt.primitives, meta_area_base=0x10001000)
    with pytest.raises(EmmError) as info:
        mgr.init(0x18000000, 0x20000000)
    assert info.value.errno == errno.EFAULT

"""The trusted runtime's pieces on their own: dispatcher, RuntimeAbstraction, layout."""

from __future__ import annotations

import errno

import pytest

from sgx_emm.emm.rt import PfInfo
from sgx_emm.errors import EnclaveCrashed
from sgx_emm.flags import (
    EXCEPTION_CONTINUE_EXECUTION,
    EXCEPTION_CONTINUE_SEARCH,
    PAGE_SIZE,
    PAGE_TYPE_TCS,
)
from sgx_emm.runtime.dispatcher import VECTOR_GP, VECTOR_PF, ExceptionDispatcher, ExceptionRecord
from sgx_emm.runtime.layout import META_AREA_SIZE, NSSA, EntryKind, build_layout
from sgx_emm.runtime.trts import TrustedRuntime
from sgx_emm.trace import HANDLER, Trace

PF = ExceptionRecord(VECTOR_PF, 0x7000_1234, 0x8005)


def test_the_manager_handler_runs_first_then_registered_handlers_in_order() -> None:
    calls: list[str] = []
    d = ExceptionDispatcher(Trace())

    def emm(pf: PfInfo) -> int:
        calls.append(f"emm {pf.maddr:#x} {pf.errcd:#x}")
        return EXCEPTION_CONTINUE_SEARCH

    def handler(name: str, result: int):  # type: ignore[no-untyped-def]
        def h(record: ExceptionRecord) -> int:
            calls.append(name)
            return result
        return h

    assert d.register_pfhandler(emm)
    d.register(handler("late", EXCEPTION_CONTINUE_EXECUTION))
    d.register(handler("early", EXCEPTION_CONTINUE_SEARCH), first=True)
    d.dispatch(PF)
    assert calls == ["emm 0x70001234 0x8005", "early", "late"]


def test_the_manager_handler_sees_only_page_faults() -> None:
    seen: list[int] = []
    d = ExceptionDispatcher(Trace())
    d.register_pfhandler(lambda pf: seen.append(pf.maddr) or EXCEPTION_CONTINUE_EXECUTION)
    d.register(lambda record: EXCEPTION_CONTINUE_EXECUTION)
    d.dispatch(ExceptionRecord(VECTOR_GP))
    assert seen == []
    d.dispatch(PF)
    assert seen == [PF.maddr]


def test_only_one_manager_handler_may_be_registered() -> None:
    d = ExceptionDispatcher(Trace())

    def first(pf: PfInfo) -> int:
        return EXCEPTION_CONTINUE_SEARCH

    assert d.register_pfhandler(first)
    assert d.register_pfhandler(first)  # the same one again is fine
    assert not d.register_pfhandler(lambda pf: EXCEPTION_CONTINUE_SEARCH)


def test_unregistered_handlers_no_longer_run() -> None:
    d = ExceptionDispatcher(Trace())

    def fixer(record: ExceptionRecord) -> int:
        return EXCEPTION_CONTINUE_EXECUTION

    d.register(fixer)
    d.dispatch(PF)
    assert d.unregister(fixer)
    assert not d.unregister(fixer)
    with pytest.raises(EnclaveCrashed):
        d.dispatch(PF)


def test_an_unhandled_exception_crashes_for_good() -> None:
    trace = Trace()
    d = ExceptionDispatcher(trace)
    with pytest.raises(EnclaveCrashed) as info:
        d.dispatch(PF)
    assert (info.value.vector, info.value.addr, info.value.errcd) == (VECTOR_PF, PF.maddr,
                                                                      PF.errcd)
    d.register(lambda record: EXCEPTION_CONTINUE_EXECUTION)
    with pytest.raises(EnclaveCrashed):
        d.dispatch(PF)  # a handler registered afterwards cannot revive it
    assert trace.total(HANDLER, "unhandled") == 1


class Untrusted:
    def __init__(self, result: int) -> None:
        self.result = result
        self.calls: list[tuple[object, ...]] = []

    def alloc_ocall(self, addr: int, length: int, page_type: int, alloc_flags: int) -> int:
        self.calls.append(("alloc", addr, length, page_type, alloc_flags))
        return self.result

    def modify_ocall(self, addr: int, length: int, flags_from: int, flags_to: int) -> int:
        self.calls.append(("modify", addr, length, flags_from, flags_to))
        return self.result


BASE, SIZE = 0x7F00_0000_0000, 1 << 30


@pytest.mark.parametrize("answer", [errno.ENOMEM, -1, 12345])
def test_any_untrusted_failure_reaches_the_enclave_as_efault(answer: int) -> None:
    rt = TrustedRuntime(BASE, SIZE, Untrusted(answer), ExceptionDispatcher(Trace()), Trace())
    assert rt.alloc_ocall(BASE, PAGE_SIZE, 0x200, 4) == errno.EFAULT
    assert rt.modify_ocall(BASE, PAGE_SIZE, 0x203, 0x201) == errno.EFAULT


def test_ocalls_go_through_the_bridge_and_are_traced() -> None:
    trace, untrusted, crossings = Trace(), Untrusted(0), []

    def bridge(call):  # type: ignore[no-untyped-def]
        crossings.append("out")
        return call()

    rt = TrustedRuntime(BASE, SIZE, untrusted, ExceptionDispatcher(trace), trace, bridge)
    assert rt.alloc_ocall(BASE, PAGE_SIZE, 0x200, 4) == 0
    assert rt.modify_ocall(BASE, PAGE_SIZE, 0x203, 0x201) == 0
    assert untrusted.calls == [("alloc", BASE, PAGE_SIZE, 0x200, 4),
                               ("modify", BASE, PAGE_SIZE, 0x203, 0x201)]
    assert crossings == ["out", "out"]
    assert trace.by_category()["ocall"] == {"alloc_ocall": 1, "modify_ocall": 1}


@pytest.mark.parametrize(("addr", "size", "inside"), [
    (BASE, SIZE, True),
    (BASE, SIZE + 1, False),
    (BASE - 1, 1, False),
    (BASE + SIZE - 1, 1, True),
    (BASE + SIZE, 0, False),        # size 0 checks the one address
    (BASE + SIZE - 1, 0, True),
    (BASE, (1 << 64) - BASE + 1, False),  # wraps
    (-1, 1, False),
])
def test_within_enclave(addr: int, size: int, inside: bool) -> None:
    rt = TrustedRuntime(BASE, SIZE, Untrusted(0), ExceptionDispatcher(Trace()), Trace())
    assert rt.is_within_enclave(addr, size) is inside


@pytest.mark.parametrize("threads", [1, 4])
def test_layout_tiles_the_image_with_one_set_of_thread_entries_each(threads: int) -> None:
    layout = build_layout(threads)
    offset = 0
    for entry in layout.entries:
        assert entry.offset == offset and entry.size > 0 and entry.size % PAGE_SIZE == 0
        offset += entry.size
    assert offset == layout.image_size
    assert len(layout.tcs_offsets()) == threads
    for t in range(threads):
        tcs = layout.find("tcs", t)
        assert tcs.page_type == PAGE_TYPE_TCS and tcs.kind is EntryKind.STATIC
        assert layout.find("ssa", t).pages == NSSA
        assert layout.find("stack_dyn", t).grows_down
    assert layout.find("meta").size == META_AREA_SIZE
    with pytest.raises(KeyError):
        layout.find("tcs", threads)
    with pytest.raises(ValueError):
        build_layout(0)

"""The commit fast path (thread.py `_accept_pages`) against the general fault path.

EACCEPT takes the fast path only while nobody listens to the trace; a listener
forces the general path (`_run` with one exception per fault). Each scenario
runs twice on a fresh enclave, once each way, and everything observable must be
the same: the result or the exception and its run fields, event counts, every
EPCM entry and page content, the driver's records, the page tables, the TCS and
enclave state, the EPC free list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from platform_support import (
    ACCEPT_AUG,
    DATA,
    DYN,
    DYN_X,
    PAGE,
    RW,
    SSA1,
    UNMAPPED,
    Small,
    build_small,
)

from sgx_emm.platform import (
    MAP_FIXED,
    MAP_SHARED,
    EnclaveThread,
    FaultReported,
    Machine,
    NotInsideEnclave,
    Run,
    SecsImage,
    TcsImage,
)
from sgx_emm.platform.secinfo import (
    ERESUME,
    MISC_EXINFO,
    PT_REG,
    PT_TCS,
    secinfo_flags,
)
from sgx_emm.trace import Event

Scenario = Callable[[Small, EnclaveThread], list[Any]]


def _outcome(call: Callable[[], object]) -> Any:
    """The value, or the exception's type and what it carries."""
    try:
        return ("ok", call())
    except FaultReported as err:
        return ("reported", err.run)
    except Exception as err:  # noqa: BLE001 - any exception is an outcome to compare
        return ("raised", type(err).__name__, str(err))


def _state(s: Small) -> dict[str, Any]:
    m = s.machine
    epc = m.epc
    cpu = m.cpu
    return {
        "counts": dict(m.trace.counts),
        "epcm": [epc.describe(slot) for slot in range(epc.npages)],
        "contents": {slot: bytes(page) for slot, page in epc.contents.items()},
        "free": list(epc._free),
        "records": s.fd.records_in(s.base, s.base + 0x100000),
        "slots": [s.fd.record(a) for a in range(s.base, s.base + 0x100000, PAGE)],
        "ptes": {k: list(v) for k, v in m.mm.chunks.items() if any(v)},
        "tcs": {slot: (t.cssa, t.busy, sorted(t.frames)) for slot, t in cpu.tcs.items()},
        "enclaves": {slot: (e.children, e.epoch, e.tracked, sorted(e.inside),
                            sorted(e.track_waiting)) for slot, e in cpu.enclaves.items()},
        "overrides": sorted(cpu.rip_overrides),
    }


def _run_both(scenario: Scenario, builder: Callable[..., Small] = build_small,
              **build: Any) -> None:
    results = []
    for listen in (False, True):
        s = builder(**build)
        events: list[Event] = []
        if listen:
            s.machine.trace.subscribe(events.append)
        run = Run(tcs=s.tcs1)
        with s.machine.vdso.inline(run) as t:
            outcomes = scenario(s, t)
            inside = t.inside
        results.append((outcomes, inside, _state(s)))
        if listen:
            assert events, "the listener saw the general path's events"
    fast, general = results
    assert fast[0] == general[0]
    assert fast[1] == general[1]
    for key in fast[2]:
        assert fast[2][key] == general[2][key], key


def test_plain_commit_of_untouched_pages() -> None:
    def scenario(s: Small, t: EnclaveThread) -> list[Any]:
        out = [_outcome(lambda a=a: t.eaccept(ACCEPT_AUG, a))
               for a in range(s.a(DYN), s.a(DYN + 8 * PAGE), PAGE)]
        out.append(_outcome(lambda: t.read(s.a(DYN + PAGE), 8)))
        out.append(_outcome(lambda: t.ssa(0).exinfo_maddr))
        out.append(_outcome(lambda: t.ssa(0).exitinfo))
        return out

    _run_both(scenario)


def test_plain_commit_counts_six_events_per_page() -> None:
    s = build_small()
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        s.machine.trace.reset()
        for a in range(s.a(DYN), s.a(DYN + 3 * PAGE), PAGE):
            assert t.eaccept(ACCEPT_AUG, a) == 0
        assert s.epcm(s.a(DYN))["pending"] is False
    counts = s.machine.trace.counts
    assert counts[("leaf", "EACCEPT")] == 6
    assert counts[("aex", "#PF")] == 3
    assert counts[("pf", "0x4")] == 3
    assert counts[("leaf", "EAUG")] == 3
    assert counts[("entry", "ERESUME")] == 3


def test_accepted_page_and_wrong_secinfo() -> None:
    def scenario(s: Small, t: EnclaveThread) -> list[Any]:
        return [
            _outcome(lambda: t.eaccept(ACCEPT_AUG, s.a(DYN))),
            _outcome(lambda: t.eaccept(ACCEPT_AUG, s.a(DYN))),           # again: 19
            _outcome(lambda: t.eaccept(ACCEPT_AUG | 0x4, s.a(DYN_X))),   # RWX: EAUG, 19
            _outcome(lambda: t.eaccept(ACCEPT_AUG, s.a(DATA))),          # EADDed: 19
        ]

    _run_both(scenario)


@pytest.mark.parametrize("case", ["unmapped", "bad_secinfo", "misaligned", "outside"])
def test_faults_that_end_the_entry(case: str) -> None:
    def scenario(s: Small, t: EnclaveThread) -> list[Any]:
        flags, addr = {
            "unmapped": (ACCEPT_AUG, s.a(UNMAPPED)),
            "bad_secinfo": (ACCEPT_AUG | 0x40, s.a(DYN)),
            "misaligned": (ACCEPT_AUG, s.a(DYN) + 8),
            "outside": (ACCEPT_AUG, s.base - PAGE),
        }[case]
        return [_outcome(lambda: t.eaccept(flags, addr))]

    _run_both(scenario)


def test_prot_none_vma_and_zapped_pte() -> None:
    def scenario(s: Small, t: EnclaveThread) -> list[Any]:
        m = s.machine
        out = [_outcome(lambda: t.eaccept(ACCEPT_AUG, s.a(DYN)))]
        m.mprotect(s.a(DYN), 2 * PAGE, 0)          # zaps the PTE, keeps the record
        out.append(_outcome(lambda: t.eaccept(ACCEPT_AUG, s.a(DYN + PAGE))))
        return out

    _run_both(scenario)


def test_record_without_pte_is_remapped() -> None:
    def scenario(s: Small, t: EnclaveThread) -> list[Any]:
        m = s.machine
        out = [_outcome(lambda: t.eaccept(ACCEPT_AUG, s.a(DYN)))]
        m.mprotect(s.a(DYN), PAGE, 0)
        m.mprotect(s.a(DYN), PAGE, RW)             # record stays, PTE gone
        out.append(_outcome(lambda: t.eaccept(ACCEPT_AUG, s.a(DYN))))
        return out

    _run_both(scenario)


def test_epc_exhausted_is_sigbus() -> None:
    def scenario(s: Small, t: EnclaveThread) -> list[Any]:
        free = s.machine.epc.free_pages
        return [_outcome(lambda a=a: t.eaccept(ACCEPT_AUG, a))
                for a in range(s.a(DYN), s.a(DYN + (free + 1) * PAGE), PAGE)]

    _run_both(scenario, epc_pages=40)


def test_epc_exhausted_with_reclaim_evicts() -> None:
    def scenario(s: Small, t: EnclaveThread) -> list[Any]:
        s.machine.kernel.reclaim = True
        free = s.machine.epc.free_pages
        return [_outcome(lambda a=a: t.eaccept(ACCEPT_AUG, a))
                for a in range(s.a(DYN), s.a(DYN + (free + 3) * PAGE), PAGE)]

    _run_both(scenario, epc_pages=40)


def test_eresume_fault_after_the_eaug() -> None:
    """The SSA page loses its PTE while the thread is inside: the AEX still saves the
    context (the CPU holds the frame), the kernel EAUGs, the ERESUME faults."""
    def scenario(s: Small, t: EnclaveThread) -> list[Any]:
        s.machine.mprotect(s.a(SSA1), PAGE, 0)
        return [_outcome(lambda: t.eaccept(ACCEPT_AUG, s.a(DYN)))]

    _run_both(scenario)


def test_after_eexit_not_inside() -> None:
    def scenario(s: Small, t: EnclaveThread) -> list[Any]:
        t.eexit()
        return [_outcome(lambda: t.eaccept(ACCEPT_AUG, s.a(DYN)))]

    _run_both(scenario)


def test_without_sgx2() -> None:
    def scenario(s: Small, t: EnclaveThread) -> list[Any]:
        return [_outcome(lambda: t.eaccept(ACCEPT_AUG, s.a(DYN)))]

    _run_both(scenario, sgx2=False)


def test_reported_fault_resumed_by_the_handler() -> None:
    """A PENDING page written before EACCEPT: 0x4 (EAUG), then 0x8007 reported; the
    handler accepts the page through a nested entry (fast path inside the handler)
    and resumes; the write then completes."""
    def scenario(s: Small, t: EnclaveThread) -> list[Any]:
        machine = s.machine
        run_outer = Run(tcs=s.tcs1)
        seen: list[Any] = []

        def handler(run: Run) -> int:
            seen.append((run.exception_vector, run.exception_error_code))
            with machine.vdso.inline(Run(tcs=run.tcs)) as nested:
                seen.append(nested.eaccept(ACCEPT_AUG, run.exception_addr))
            return ERESUME

        t.eexit()
        run_outer.user_handler = handler
        with machine.vdso.inline(run_outer) as t2:
            seen.append(_outcome(lambda: t2.write(s.a(DYN) + 8, b"abcd")))
            seen.append(_outcome(lambda: t2.read(s.a(DYN) + 8, 4)))
            seen.append(_outcome(lambda: t2.eaccept(ACCEPT_AUG, s.a(DYN + PAGE))))
        return seen

    _run_both(scenario)


def test_bad_operand_types_raise_the_same() -> None:
    def scenario(s: Small, t: EnclaveThread) -> list[Any]:
        return [_outcome(lambda: t.eaccept("x", s.a(DYN))),  # type: ignore[arg-type]
                _outcome(lambda: t.eaccept(-1, s.a(DYN)))]

    _run_both(scenario)


def test_not_inside_raises_before_any_state_change() -> None:
    s = build_small()
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        t.eexit()
        before = _state(s)
        with pytest.raises(NotInsideEnclave):
            t.eaccept(ACCEPT_AUG, s.a(DYN))
        after = _state(s)
    assert after["counts"][("leaf", "EACCEPT")] == before["counts"].get(("leaf", "EACCEPT"),
                                                                        0) + 1
    assert {k: v for k, v in after.items() if k != "counts"} == \
        {k: v for k, v in before.items() if k != "counts"}


def _two_page_ssa_frames() -> Small:
    """TCS at 0 with NSSA 2 and two-page SSA frames at 0x1000..0x5000, RW room above."""
    m = Machine(256)
    fd = m.open_enclave()
    base, size = 0x7F00_0000_0000, 0x100000
    fd.create(SecsImage(base, size, ssa_frame_size=2, miscselect=MISC_EXINFO))
    fd.add_pages(0, TcsImage(ossa=PAGE, nssa=2).to_bytes(), secinfo_flags(0, PT_TCS))
    fd.add_pages(PAGE, bytes(4 * PAGE), secinfo_flags(RW, PT_REG))
    fd.init()
    m.mmap(base, 5 * PAGE, RW, MAP_SHARED | MAP_FIXED, fd)
    m.mmap(base + DYN, 16 * PAGE, RW, MAP_SHARED | MAP_FIXED, fd)
    return Small(m, fd, base)


def test_two_page_ssa_frames_take_the_full_eresume() -> None:
    def scenario(s: Small, t: EnclaveThread) -> list[Any]:
        out = [_outcome(lambda a=a: t.eaccept(ACCEPT_AUG, a))
               for a in range(s.a(DYN), s.a(DYN + 3 * PAGE), PAGE)]
        out.append(_outcome(lambda: t.ssa(0).exinfo_maddr))
        return out

    _run_both(scenario, _two_page_ssa_frames)


def _overlapping_enclaves() -> Small:
    """Enclave A (the one entered) and enclave B with the same ELRANGE; the room above
    A's image is mapped from B's fd, so the kernel EAUGs pages of B there."""
    s = build_small()
    m = s.machine
    other = m.open_enclave()
    other.create(SecsImage(s.base, 0x100000, ssa_frame_size=1, miscselect=MISC_EXINFO))
    other.init()
    m.mmap(s.a(DYN), 4 * PAGE, RW, MAP_SHARED | MAP_FIXED, other)
    return s


def test_page_of_another_enclave_faults_after_the_eaug() -> None:
    def scenario(s: Small, t: EnclaveThread) -> list[Any]:
        return [_outcome(lambda: t.eaccept(ACCEPT_AUG, s.a(DYN)))]

    _run_both(scenario, _overlapping_enclaves)


def _page_loop(s: Small, t: EnclaveThread, first: int, end: int) -> list[Any]:
    """`eaccept_pages` over [first, end) with what it returned, how far it got and
    the SSA frame the last AEX wrote."""
    done = [-1]
    out = [_outcome(lambda: t.eaccept_pages(ACCEPT_AUG, range(s.a(first), s.a(end), PAGE),
                                            done)), done[0]]
    out.append(_outcome(lambda: t.ssa(0).exinfo_maddr))
    out.append(_outcome(lambda: t.ssa(0).exitinfo))
    return out


@pytest.mark.parametrize("batch", [3, 512])
def test_page_loop_with_pages_that_leave_the_pass(batch: int,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop over two VMAs (RW, then RWX: the RWX pages' EAUG gives RW, a mismatch
    only at the end) meeting pages already accepted (one EACCEPT each) and a page
    EAUGed by a host touch whose PTE was zapped (the kernel remaps it on the general
    path); with tiny batches the loop crosses batch ends on both paths."""
    monkeypatch.setattr("sgx_emm.platform.thread._BATCH_PAGES", batch)

    def scenario(s: Small, t: EnclaveThread) -> list[Any]:
        m = s.machine
        out = [_outcome(lambda: t.eaccept(ACCEPT_AUG, s.a(DYN + 2 * PAGE)))]
        m.host_read(s.a(DYN + 5 * PAGE), 8)                 # EAUGed, PENDING, mapped
        m.mprotect(s.a(DYN + 5 * PAGE), PAGE, 0)
        m.mprotect(s.a(DYN + 5 * PAGE), PAGE, RW)           # record stays, PTE gone
        out += _page_loop(s, t, DYN, DYN + 9 * PAGE)
        out += _page_loop(s, t, DYN_X - 2 * PAGE, DYN_X + 2 * PAGE)
        return out

    _run_both(scenario)


def test_page_loop_runs_out_of_epc_part_way() -> None:
    def scenario(s: Small, t: EnclaveThread) -> list[Any]:
        free = s.machine.epc.free_pages
        return _page_loop(s, t, DYN, DYN + (free + 2) * PAGE)

    _run_both(scenario, epc_pages=40)


def test_page_loop_evicts_when_the_epc_is_full() -> None:
    def scenario(s: Small, t: EnclaveThread) -> list[Any]:
        s.machine.kernel.reclaim = True
        free = s.machine.epc.free_pages
        return _page_loop(s, t, DYN, DYN + (free + 3) * PAGE)

    _run_both(scenario, epc_pages=40)


def test_page_loop_in_overlapping_enclaves() -> None:
    """The VMA found for the first page belongs to another enclave: its EAUG
    succeeds, the EACCEPT faults on the foreign page, the loop ends there."""
    def scenario(s: Small, t: EnclaveThread) -> list[Any]:
        return _page_loop(s, t, DYN, DYN + 3 * PAGE)

    _run_both(scenario, _overlapping_enclaves)


def test_page_loop_while_a_tracking_cycle_waits_for_two_threads() -> None:
    """An ETRACK waits for both threads inside; the loop's first AEX lets this thread
    leave the cycle, the other keeps it open, and this thread stays inside."""
    def scenario(s: Small, t: EnclaveThread) -> list[Any]:
        m = s.machine
        with m.vdso.inline(Run(tcs=s.tcs2)):
            secs = s.fd.secs_paddr
            out: list[Any] = [m.cpu.etrack(secs)]
            out += _page_loop(s, t, DYN, DYN + 4 * PAGE)
            enc = m.cpu.enclaves[s.fd.secs_slot]   # type: ignore[index]
            out.append((sorted(enc.inside), sorted(enc.track_waiting)))
        return out

    _run_both(scenario)


def test_page_loop_without_exinfo() -> None:
    def scenario(s: Small, t: EnclaveThread) -> list[Any]:
        return _page_loop(s, t, DYN, DYN + 4 * PAGE)

    _run_both(scenario, miscselect=0)  # AEX reports no #PF in the SSA frame


def test_hooks_installed_during_a_page_loop_see_every_later_page() -> None:
    """Hooks installed while a page loop runs (as another thread would) take effect
    from the next page: the loop's batch ends there and the general path consults
    them for every page after."""
    from sgx_emm.platform.hooks import KernelHooks
    from sgx_emm.platform.uapi import FaultResult

    s = build_small()
    kernel = s.machine.kernel
    seen: list[int] = []

    class Watch(KernelHooks):
        def page_fault(self, addr: int, errcd: int) -> FaultResult | None:
            seen.append(addr)
            return None

    class InstallAtRead:
        """`commit_fast_path` as the loop reads it: the hooks arrive at the 4th read."""

        def __init__(self) -> None:
            self.reads = 0

        def __bool__(self) -> bool:
            self.reads += 1
            if self.reads == 4:
                kernel.hooks = Watch()      # sets commit_fast_path to False
                return False
            return True

    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        kernel.commit_fast_path = InstallAtRead()  # type: ignore[assignment]
        done = [0]
        pages = range(s.a(DYN), s.a(DYN + 8 * PAGE), PAGE)
        assert t.eaccept_pages(ACCEPT_AUG, pages, done) == 0 and done == [8]
    assert seen == list(pages[2:])      # read 1: the loop's choice; reads 2, 3: pages 0, 1
    assert s.machine.trace.counts[("leaf", "EAUG")] == 8

"""Exception delivery (platform.md F): the SDK-style inline flow (nested EENTER, SSA
read, RIP redirected to a trusted callable, ERESUME re-executing the access), the
vDSO contract of the suspendable entry, and several enclave threads at once."""

from __future__ import annotations

import threading

import pytest
from platform_support import DATA, DYN, PAGE, Small

from sgx_emm.platform import (
    EnclaveThread,
    FaultOutcome,
    FaultReported,
    FaultResult,
    KernelHooks,
    Run,
)
from sgx_emm.platform.secinfo import EENTER, EEXIT, ERESUME


class Crash(Exception):
    pass


def sdk_handler(s: Small, phase2: object, log: list[str]) -> object:
    """The untrusted handler of the Intel SDK: nested EENTER into the trusted
    dispatcher's phase 1, which reads SSA frame 0 and redirects its RIP."""

    def handler(run: Run) -> int:
        log.append(f"aex {run.exception_vector} {run.exception_error_code:#x}")
        with s.machine.vdso.inline(Run(tcs=run.tcs)) as t2:
            frame = t2.ssa(0)
            record = (frame.vector, frame.exinfo_maddr, frame.exinfo_errcd)
            frame.rip = lambda: phase2(record)  # type: ignore[operator]
        return ERESUME

    return handler


def test_inline_sdk_flow_commits_on_demand(s: Small) -> None:
    log: list[str] = []
    holder: dict[str, EnclaveThread] = {}

    def phase2(record: tuple[int, int, int]) -> None:
        vector, maddr, errcd = record
        log.append(f"phase2 {vector} {maddr:#x} {errcd:#x}")
        t = holder["t"]
        assert t.inside and t.tcs_control.cssa == 0
        assert t.eaccept(0x20B, maddr & ~0xFFF) == 0

    run = Run(tcs=s.tcs1)
    run.user_handler = sdk_handler(s, phase2, log)  # type: ignore[assignment]
    with s.machine.vdso.inline(run) as t:
        holder["t"] = t
        t.write(s.a(DYN) + 0x10, b"on demand")
        assert t.read(s.a(DYN) + 0x10, 9) == b"on demand"
    assert log == ["aex 14 0x8007", f"phase2 14 {s.a(DYN) + 0x10:#x} 0x8007"]
    assert run.function == EEXIT
    counts = s.machine.trace.by_category()
    # 0x6 three times: the DYN write, and EENTER mapping SSA frames 0 and 1
    assert counts["pf"] == {"0x6": 3, "0x4": 1, "0x8007": 1}
    assert counts["leaf"]["EAUG"] == 1


def test_inline_rip_callable_exception_propagates_out_of_access(s: Small) -> None:
    def phase2(record: tuple[int, int, int]) -> None:
        raise Crash(record)

    run = Run(tcs=s.tcs1, user_handler=sdk_handler(s, phase2, []))  # type: ignore[arg-type]
    with pytest.raises(Crash), s.machine.vdso.inline(run) as t:
        t.read(s.a(DYN), 1)
    # the TCS is usable again: ERESUME restored CSSA 0 and the block EEXITed
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        assert t.level == 0


def test_inline_handler_returning_zero_ends_entry_with_run_fields(s: Small) -> None:
    run = Run(tcs=s.tcs1, user_handler=lambda r: 0)
    with pytest.raises(FaultReported) as err, s.machine.vdso.inline(run) as t:
        t.write(s.a(DYN), b"x")
    snap = err.value.run
    assert (snap.function, snap.exception_vector, snap.exception_error_code,
            snap.exception_addr, snap.handler_result) == (ERESUME, 14, 0x8007, s.a(DYN), 0)


def test_inline_handler_may_raise_longjmp_style(s: Small) -> None:
    def handler(run: Run) -> int:
        raise Crash("longjmp")

    with pytest.raises(Crash), s.machine.vdso.inline(Run(tcs=s.tcs1, user_handler=handler)) as t:
        t.read(s.a(DYN), 1)


def test_inline_no_lock_held_in_handler(s: Small) -> None:
    seen: list[bool] = []

    def handler(run: Run) -> int:
        result: list[bool] = []
        other = threading.Thread(target=lambda: result.append(
            s.machine.lock.acquire(timeout=5) and (s.machine.lock.release() or True)))
        other.start()
        other.join()
        seen.extend(result)
        return 0

    with pytest.raises(FaultReported), \
            s.machine.vdso.inline(Run(tcs=s.tcs1, user_handler=handler)) as t:
        t.read(s.a(DYN), 1)
    assert seen == [True]


def test_worker_user_handler_called_on_eexit_and_can_reenter(s: Small) -> None:
    runs: list[int] = []

    def handler(run: Run) -> int:
        runs.append(run.function)
        return EENTER if len(runs) == 1 else 0

    calls: list[int] = []
    run = Run(tcs=s.tcs1, user_handler=handler)
    assert s.machine.vdso.enter(EENTER, run, lambda t: calls.append(t.level)) == 0
    assert runs == [EEXIT, EEXIT] and calls == [0, 0]


def test_worker_handler_result_is_returned(s: Small) -> None:
    run = Run(tcs=s.tcs1, user_handler=lambda r: -7)
    assert s.machine.vdso.enter(EENTER, run, lambda t: t.read(s.a(DYN), 1)) == -7
    assert run.function == ERESUME and run.exception_error_code == 0x8005


def test_worker_program_error_reaches_caller(s: Small) -> None:
    def program(t: EnclaveThread) -> None:
        raise Crash("bug in the enclave program")

    with pytest.raises(Crash):
        s.machine.vdso.enter(EENTER, Run(tcs=s.tcs1), program)
    assert s.machine.vdso.enter(EENTER, Run(tcs=s.tcs1), lambda t: None) == 0


def test_worker_abandon_unwinds_suspended_program(s: Small) -> None:
    after: list[str] = []

    def program(t: EnclaveThread) -> None:
        t.read(s.a(DYN), 1)
        after.append("resumed")

    run = Run(tcs=s.tcs1)
    assert s.machine.vdso.enter(EENTER, run, program) == 0
    assert run.function == ERESUME
    assert s.machine.vdso.abandon(s.tcs1)
    assert after == []
    assert not s.machine.vdso.abandon(s.tcs1)


def test_worker_eresume_after_fix_reexecutes(s: Small) -> None:
    values: list[bytes] = []
    run = Run(tcs=s.tcs1)
    assert s.machine.vdso.enter(EENTER, run,
                                lambda t: values.append(t.read(s.a(DYN), 2))) == 0
    assert run.exception_error_code == 0x8005
    with s.machine.vdso.inline(Run(tcs=s.tcs2)) as t2:
        assert t2.eaccept(0x20B, s.a(DYN)) == 0
    assert s.machine.vdso.enter(ERESUME, run) == 0
    assert run.function == EEXIT and values == [b"\0\0"]


def test_threads_on_two_tcs_run_concurrently(s: Small) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def worker(tcs: int, offset: int) -> None:
        try:
            with s.machine.vdso.inline(Run(tcs=tcs)) as t:
                barrier.wait(timeout=5)
                for i in range(200):
                    addr = s.a(offset) + (i % 16) * 8
                    t.write(addr, i.to_bytes(8, "little"))
                    assert t.read(addr, 8) == i.to_bytes(8, "little")
                for i in range(16):
                    assert t.eaccept(0x20B, s.a(DYN + (offset - DATA) * 16 + i * PAGE)) == 0
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s.tcs1, DATA)),
               threading.Thread(target=worker, args=(s.tcs2, DATA + PAGE))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert s.machine.trace.total("leaf", "EAUG") == 32


class _LyingFixes(KernelHooks):
    """Claims every #PF fixed and maps nothing."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def page_fault(self, addr: int, errcd: int) -> FaultResult | None:
        self.calls.append(errcd)
        return FaultResult(FaultOutcome.FIXED)


def test_kernel_that_never_makes_progress_gets_the_fault_reported(s: Small) -> None:
    from sgx_emm.platform.thread import MAX_FIXES

    with s.machine.vdso.inline(Run(tcs=s.tcs1)):
        pass                               # TCS and SSA mapped by the honest kernel
    hooks = _LyingFixes()
    s.machine.kernel.hooks = hooks
    with pytest.raises(FaultReported) as err, s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        t.read(s.a(DYN), 1)
    assert err.value.run.exception_error_code == 0x4
    assert len(hooks.calls) == MAX_FIXES
    assert "without the access making progress" in err.value.run.os_reason


def test_eenter_with_a_kernel_that_never_maps_is_reported(s: Small) -> None:
    s.machine.kernel.hooks = _LyingFixes()
    run = Run(tcs=s.tcs1)
    with pytest.raises(FaultReported), s.machine.vdso.inline(run):
        pass
    assert (run.function, run.exception_error_code) == (EENTER, 0x4)

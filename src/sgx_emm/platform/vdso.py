"""The vDSO-style enclave entry `__vdso_sgx_enter_enclave`.

`Run` mirrors `struct sgx_enclave_run`. Two ways to run enclave code:

* `Vdso.enter(function, run, program)` - the C vDSO's contract, for driver-level
  flows and the kernel selftests: `program(thread)` is the code at OENTRY; it runs
  on a worker thread that plays the logical processor, while the calling Python
  thread plays the vDSO. EEXIT (the program returned) or a reported fault returns
  to the caller with `run.function` and the exception fields set; the faulting
  access stays suspended and is executed again by a later
  `enter(ERESUME, run)`. A user handler is called on every return path, in the
  caller's thread; `<= 0` is returned, `> 0` is the next leaf (EENTER re-runs the
  program, ERESUME resumes). `abandon(tcs)` unwinds a suspended program for good.

* `Vdso.inline(run)` - a context manager for SDK-style runtimes: EENTER on the
  calling Python thread, yielding the `EnclaveThread`. A fault the kernel cannot
  fix calls `run.user_handler(run)` synchronously, in the same call stack, with
  `run.function = ERESUME` and the exception fields; the handler may EENTER the
  same TCS (nested, next SSA level) with another `inline`, fix things, write
  `ssa.rip = callable` and EEXIT; returning ERESUME (3) makes the platform ERESUME
  the frame, call the callable (if any) and re-execute the access. Returning
  `<= 0`, or anything else, ends the entry: `FaultReported` is raised out of the
  access with the `run` fields. No user handler: `FaultReported` at once. The
  final EEXIT of an inline entry does not call the user handler.

No platform lock is held while a user handler, a program or a redirected RIP runs.
"""

from __future__ import annotations

import errno
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sgx_emm.platform.cpu import Cpu, Rip
from sgx_emm.platform.exceptions import CpuFault, EntryAbandoned, FaultReported
from sgx_emm.platform.kernel import Kernel
from sgx_emm.platform.secinfo import EENTER, EEXIT, ERESUME
from sgx_emm.platform.thread import MAX_FIXES, EnclaveThread
from sgx_emm.platform.uapi import Run

T = TypeVar("T")
UserHandler = Callable[[Run], int]
Program = Callable[[EnclaveThread], object]


# ---------------------------------------------------------------- inline entries
class InlineSession:
    """Fault reports of an inline entry: the user handler runs in this call stack."""

    def __init__(self, vdso: Vdso, run: Run) -> None:
        self._vdso = vdso
        self.run = run

    def report(self, thread: EnclaveThread, fault: CpuFault) -> Rip:
        run = self.run
        run.set_exception(ERESUME, fault)
        while True:
            handler = run.user_handler
            if handler is None:
                raise FaultReported.from_run(run)
            ret = handler(run)
            if ret != ERESUME:
                raise FaultReported.from_run(run, ret)
            try:
                owner, rip, _ = self._vdso._leaf_with_fixups(
                    lambda: self._vdso.cpu.eresume(run.tcs))
            except CpuFault as again:
                run.set_exception(ERESUME, again)
                continue
            if owner is None or owner.owner is not thread:
                raise FaultReported.from_run(run, ret)
            return rip


# ---------------------------------------------------------------- worker entries
class _Event:
    """Worker -> caller: how the enclave left this time."""

    __slots__ = ("kind", "fault", "error")

    def __init__(self, kind: str, fault: CpuFault | None = None,
                 error: BaseException | None = None) -> None:
        self.kind = kind      # "exit" | "fault" | "error" | "abandoned"
        self.fault = fault
        self.error = error


class WorkerSession:
    """One program running on a worker thread; it blocks there while suspended."""

    def __init__(self, vdso: Vdso) -> None:
        self._vdso = vdso
        self.events: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        self._wakeups: queue.SimpleQueue[tuple[str, Rip]] = queue.SimpleQueue()
        self.suspended = False

    def report(self, thread: EnclaveThread, fault: CpuFault) -> Rip:
        self.suspended = True
        self.events.put(_Event("fault", fault))
        kind, rip = self._wakeups.get()
        self.suspended = False
        if kind == "abandon":
            raise EntryAbandoned()
        return rip

    def resume(self, rip: Rip) -> None:
        self._wakeups.put(("resume", rip))

    def abandon(self) -> None:
        self._wakeups.put(("abandon", 0))

    def start(self, thread: EnclaveThread, program: Program) -> None:
        def body() -> None:
            try:
                program(thread)
                if thread.inside:
                    thread.eexit()
                self.events.put(_Event("exit"))
            except EntryAbandoned:
                self.events.put(_Event("abandoned"))
            except BaseException as exc:  # the program's own error: hand it to the caller
                if thread.inside:
                    thread.eexit()
                self.events.put(_Event("error", error=exc))

        worker = threading.Thread(target=body, name=f"enclave-tcs-{thread.tcs_addr:#x}",
                                  daemon=True)
        worker.start()


class Vdso:
    """`__vdso_sgx_enter_enclave` and the inline entry for runtimes."""

    def __init__(self, cpu: Cpu, kernel: Kernel) -> None:
        self.cpu = cpu
        self.kernel = kernel

    # ------------------------------------------------------------ helpers
    def _leaf_with_fixups(self, leaf: Callable[[], T]) -> T:
        """Run EENTER/ERESUME, letting the kernel fix faults of the leaf itself."""
        for _ in range(MAX_FIXES):
            try:
                return leaf()
            except CpuFault as fault:
                if not self.kernel.fix(fault):
                    raise
        return leaf()

    def _eenter(self, tcs: int, session: InlineSession | WorkerSession) -> EnclaveThread:
        entry = self._leaf_with_fixups(lambda: self.cpu.eenter(tcs))
        return EnclaveThread(self.cpu, self.kernel, entry, session)

    # ------------------------------------------------------------ inline
    @contextmanager
    def inline(self, run: Run) -> Iterator[EnclaveThread]:
        """EENTER on this Python thread; EEXIT when the block ends (if still inside)."""
        session = InlineSession(self, run)
        while True:
            try:
                thread = self._eenter(run.tcs, session)
                break
            except CpuFault as fault:
                run.set_exception(EENTER, fault)
                ret = run.user_handler(run) if run.user_handler is not None else 0
                if ret != EENTER:
                    raise FaultReported.from_run(run, ret) from None
        try:
            yield thread
        finally:
            if thread.inside:
                thread.eexit()
                run.function = EEXIT

    # ------------------------------------------------------------ the C contract
    def enter(self, function: int, run: Run, program: Program | None = None) -> int:
        """__vdso_sgx_enter_enclave(function, run): 0, -EINVAL, or the user handler's
        result <= 0. `program` is the code at OENTRY (needed for EENTER)."""
        while True:
            if function == EENTER:
                event = self._do_eenter(run, program)
            elif function == ERESUME:
                event = self._do_eresume(run, program)
            else:
                return -errno.EINVAL
            if event.kind == "error":
                assert event.error is not None
                raise event.error
            if event.kind == "exit":
                run.function = EEXIT
            if run.user_handler is None:
                return 0
            ret = run.user_handler(run)
            if ret <= 0:
                return ret
            function = ret

    def _do_eenter(self, run: Run, program: Program | None) -> _Event:
        if program is None:
            raise ValueError("EENTER needs the program at OENTRY")
        session = WorkerSession(self)
        try:
            thread = self._eenter(run.tcs, session)
        except CpuFault as fault:
            run.set_exception(EENTER, fault)
            return _Event("fault", fault)
        session.start(thread, program)
        return self._wait(run, session)

    def _do_eresume(self, run: Run, program: Program | None) -> _Event:
        try:
            frame, rip, _ = self._leaf_with_fixups(lambda: self.cpu.eresume(run.tcs))
        except CpuFault as fault:
            run.set_exception(ERESUME, fault)
            return _Event("fault", fault)
        owner: EnclaveThread | None = frame.owner if frame is not None else None
        session = owner.session if owner is not None else None
        if isinstance(session, WorkerSession) and session.suspended:
            session.resume(rip)
            return self._wait(run, session)
        # The interrupted context is gone (its Python stack unwound): run only what
        # the enclave put in RIP, then leave.
        orphan = WorkerSession(self)
        if owner is None:
            return _Event("exit")
        owner.session = orphan
        orphan.start(owner, lambda t: rip() if callable(rip) else None)
        return self._wait(run, orphan)

    @staticmethod
    def _wait(run: Run, session: WorkerSession) -> _Event:
        event = session.events.get()
        if event.kind == "fault":
            assert event.fault is not None
            run.set_exception(ERESUME, event.fault)
        elif event.kind == "abandoned":
            event = _Event("exit")
        return event

    def abandon(self, tcs: int) -> bool:
        """Unwind the program suspended on this TCS (its SSA frame stays as it is)."""
        with self.cpu.lock:
            slot = None
            for tcs_ctl in self.cpu.tcs.values():
                if tcs_ctl.linaddr == tcs:
                    slot = tcs_ctl
                    break
            if slot is None or not slot.frames:
                return False
            sessions = [entry.owner.session for entry in slot.frames.values()
                        if entry.owner is not None]
        done = False
        for session in sessions:
            if isinstance(session, WorkerSession) and session.suspended:
                session.abandon()
                session.events.get()
                done = True
        return done

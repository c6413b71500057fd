"""The trusted exception dispatcher, as the Intel SDK's trts runs it.

Phase 1 (on the nested entry the untrusted handler makes) reads the SSA's exit
info and EXINFO into an `ExceptionRecord`; phase 2 (after ERESUME, back on the
interrupted thread) runs the handlers: for a #PF the manager's handler first, then
every handler registered with `register`, in order. CONTINUE_EXECUTION resumes the
faulting access; if nobody handles the exception the enclave crashes for good, as
the SDK does when it finds no handler.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from sgx_emm.emm.rt import PfHandler, PfInfo
from sgx_emm.errors import EnclaveCrashed
from sgx_emm.flags import EXCEPTION_CONTINUE_EXECUTION
from sgx_emm.trace import HANDLER, Trace

VECTOR_GP = 13
VECTOR_PF = 14


@dataclass(frozen=True, slots=True)
class ExceptionRecord:
    """What phase 1 learns from the SSA: the vector and, for #PF/#GP, EXINFO."""

    vector: int
    maddr: int = 0
    errcd: int = 0

    @property
    def pfinfo(self) -> PfInfo:
        """The #PF record the manager's handler takes."""
        return PfInfo(self.maddr, self.errcd)

    def __repr__(self) -> str:
        return (f"ExceptionRecord(vector={self.vector}, maddr={self.maddr:#x}, "
                f"errcd={self.errcd:#x})")


#: A registered (non-EMM) handler: sees every exception, returns a handler result.
ExceptionHandler = Callable[[ExceptionRecord], int]
#: A check run before any handler: the cause of a fatal exception, or None.
FatalCheck = Callable[[ExceptionRecord], "str | None"]


class ExceptionDispatcher:
    """Holds the handler chain and decides the fate of each enclave exception."""

    def __init__(self, trace: Trace) -> None:
        self._trace = trace
        self._pfhandler: PfHandler | None = None
        self._handlers: list[ExceptionHandler] = []
        self._fatal_checks: list[FatalCheck] = []
        self._lock = threading.Lock()
        self.crashed: EnclaveCrashed | None = None
        self._outcome = threading.local()

    def last_outcome(self) -> list[tuple[str, int]]:
        """What each handler returned in this thread's latest dispatch, in order.

        For crash diagnosis: a fault delivered again and again after a handler
        said CONTINUE_EXECUTION is explained by what each handler said.
        """
        return list(getattr(self._outcome, "results", ()))

    def register_pfhandler(self, handler: PfHandler) -> bool:
        """The manager's handler; there is one slot and it always runs first."""
        with self._lock:
            if self._pfhandler is not None and self._pfhandler != handler:
                return False
            self._pfhandler = handler
        return True

    def register(self, handler: ExceptionHandler, *, first: bool = False) -> None:
        """`sgx_register_exception_handler`: add to the end (or the front) of the chain."""
        with self._lock:
            if first:
                self._handlers.insert(0, handler)
            else:
                self._handlers.append(handler)

    def add_fatal_check(self, check: FatalCheck) -> None:
        """A check that runs before every handler, as the SDK's trts checks for a stack
        overflow before it dispatches (a thread whose stack is gone cannot run a
        handler): when it names a cause, the enclave crashes with it."""
        with self._lock:
            self._fatal_checks.append(check)

    def unregister(self, handler: ExceptionHandler) -> bool:
        with self._lock:
            try:
                self._handlers.remove(handler)
            except ValueError:
                return False
        return True

    def dispatch(self, record: ExceptionRecord) -> None:
        """Phase 2. Returns to resume the faulting access; raises otherwise.

        An exception raised by a handler (the Python form of longjmp) passes
        through untouched; an unhandled exception crashes the enclave.
        """
        if self.crashed is not None:
            raise self.crashed
        results: list[tuple[str, int]] = []
        self._outcome.results = results
        for check in tuple(self._fatal_checks):
            cause = check(record)
            if cause:
                self._crash(record, cause)
        pfhandler = self._pfhandler
        if record.vector == VECTOR_PF and pfhandler is not None:
            ret = pfhandler(record.pfinfo)
            results.append(("the manager's #PF handler", ret))
            if ret == EXCEPTION_CONTINUE_EXECUTION:
                self._trace.emit(HANDLER, "emm", maddr=record.maddr, errcd=record.errcd)
                return
        for handler in tuple(self._handlers):
            ret = handler(record)
            results.append((getattr(handler, "__qualname__", repr(handler)), ret))
            if ret == EXCEPTION_CONTINUE_EXECUTION:
                self._trace.emit(HANDLER, "custom", vector=record.vector)
                return
        self._trace.emit(HANDLER, "unhandled", vector=record.vector, maddr=record.maddr,
                         errcd=record.errcd)
        crash = EnclaveCrashed(
            f"unhandled enclave exception: vector {record.vector}, "
            f"address {record.maddr:#x}, error code {record.errcd:#x}",
            vector=record.vector, errcd=record.errcd, addr=record.maddr)
        self.crashed = crash
        raise crash

    def _crash(self, record: ExceptionRecord, cause: str) -> None:
        """End the enclave for an exception a fatal check diagnosed."""
        self._trace.emit(HANDLER, "fatal", vector=record.vector, maddr=record.maddr,
                         errcd=record.errcd)
        crash = EnclaveCrashed(
            f"{cause}: vector {record.vector}, address {record.maddr:#x}, "
            f"error code {record.errcd:#x}",
            vector=record.vector, errcd=record.errcd, addr=record.maddr, cause=cause)
        self.crashed = crash
        raise crash

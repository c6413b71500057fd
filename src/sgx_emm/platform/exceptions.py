"""Fault types of the platform model.

`CpuFault` and its subclasses are what a leaf or an access raises inside the
simulator (#GP, #PF, #UD with the hardware's operands); the CPU turns them into
an AEX and the kernel into a report, so they never escape to users as such.
`FaultReported` and `EntryAbandoned` are the public ends of an entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sgx_emm.platform.secinfo import VECTOR_GP, VECTOR_PF, VECTOR_UD
from sgx_emm.platform.uapi import Run


class CpuFault(Exception):
    """An exception the CPU raises: vector, error code, faulting linear address.

    `reason` names the SDM check that raised it, with its values ("EENTER:
    TCS.NSSA (0) <= TCS.CSSA (0)"); `os_reason` is filled in by the kernel when
    it declines to fix a #PF ("no VMA", "SIGBUS: ..."). Both are the model's
    explanation, not architectural state.
    """

    vector: int = 0
    os_reason: str = ""

    def __init__(self, errcd: int = 0, addr: int = 0, reason: str = "") -> None:
        # no super().__init__: a fault is raised on every EAUG; `args` stays empty
        self.errcd = errcd
        self.addr = addr
        self.reason = reason

    def __str__(self) -> str:
        text = f"{type(self).__name__}(errcd={self.errcd:#x}, addr={self.addr:#x})"
        return f"{text}: {self.reason}" if self.reason else text


class GeneralProtection(CpuFault):
    """#GP(0)."""

    vector = VECTOR_GP

    def __init__(self, errcd: int = 0, addr: int = 0, reason: str = "") -> None:
        super().__init__(errcd, 0, reason)


class PageFault(CpuFault):
    """#PF with its PFEC and the (full) linear or EPC address that faulted."""

    vector = VECTOR_PF


class InvalidOpcode(CpuFault):
    """#UD. No leaf raises it now: an SGX2 leaf on a CPU without SGX2 is #GP(0), as
    the SDM says for an unsupported leaf. Kept for code that models other
    instructions (and for the name `sgx_emm.platform` exports)."""

    vector = VECTOR_UD


@dataclass(slots=True)
class RunSnapshot:
    """The `run` fields at the moment an inline entry ended on a fault."""

    tcs: int
    function: int
    exception_vector: int
    exception_error_code: int
    exception_addr: int
    handler_result: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: the SDM check that raised the exception, with its values
    reason: str = ""
    #: why the kernel did not fix it (a #PF), e.g. "no VMA"
    os_reason: str = ""

    @property
    def why(self) -> str:
        """`reason` and `os_reason` in one sentence (empty if neither is known)."""
        return "; ".join(part for part in (self.reason, self.os_reason) if part)


class FaultReported(Exception):
    """An inline entry ended because a fault was reported and not resumed.

    Raised out of the access (or leaf) that faulted when no user handler is set,
    or when the user handler returned <= 0 (or a leaf the inline path cannot
    run). `.run` holds the fields the vDSO would have left in `struct
    sgx_enclave_run`; the TCS keeps its SSA frame (CSSA stays incremented).
    """

    def __init__(self, run: RunSnapshot) -> None:
        why = run.why
        super().__init__(
            f"enclave fault reported: vector {run.exception_vector}, error code "
            f"{run.exception_error_code:#x}, address {run.exception_addr:#x}"
            + (f" ({why})" if why else ""))
        self.run = run

    @classmethod
    def from_run(cls, run: Run, handler_result: int | None = None) -> FaultReported:
        return cls(RunSnapshot(run.tcs, run.function, run.exception_vector,
                               run.exception_error_code, run.exception_addr,
                               handler_result, reason=run.exception_reason,
                               os_reason=run.exception_os_reason))


class NotInsideEnclave(RuntimeError):
    """An enclave-thread operation on a thread that has exited (EEXIT or AEX)."""


class EntryAbandoned(BaseException):
    """Unwinds an enclave program whose suspended entry will never be resumed.

    A BaseException so that `except Exception` in an enclave program does not
    swallow it.
    """

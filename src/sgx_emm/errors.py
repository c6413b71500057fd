"""The exceptions that cross layer boundaries (see ../shared/design.md, Conventions).

`EmmError` carries the C result of a manager call as an errno; `EnclaveAbort` is
the manager's `abort()`; `EnclaveCrashed` is an enclave exception nobody handled.
Platform faults are internal to the simulator and never escape it as such.
"""

from __future__ import annotations

import errno as _errno
import os


class EmmError(OSError):
    """A manager call failed with the C reference's errno (EINVAL, EACCES, ...)."""

    def __init__(self, err: int, message: str | None = None) -> None:
        name = _errno.errorcode.get(err, str(err))
        super().__init__(err, message or f"{name}: {os.strerror(err)}")


class EnclaveAbort(RuntimeError):
    """The enclave called abort(): its state is unrecoverable."""


class EnclaveCrashed(RuntimeError):
    """An enclave exception reached the end of the handler chain unhandled."""

    def __init__(self, message: str, *, vector: int | None = None,
                 errcd: int | None = None, addr: int | None = None) -> None:
        super().__init__(message)
        self.vector = vector
        self.errcd = errcd
        self.addr = addr


class NotEntered(RuntimeError):
    """Enclave code was run outside its ecall (e.g. a `ThreadContext` after its `with`)."""

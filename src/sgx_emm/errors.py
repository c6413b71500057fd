"""The exceptions that cross layer boundaries, each saying why it was raised.

`EmmError` carries the C result of a manager call (`errno`, the value the C
reference returns, so ported C tests compare equal) and `reason`, the check that
failed with its values. `EnclaveAbort` is the manager's `abort()`; `EnclaveCrashed`
is an enclave exception nobody handled. Both carry `cause`, one sentence saying
what went wrong as far as the platform can tell. Platform faults are internal to
the simulator and never escape it as such.
"""

from __future__ import annotations

import errno as _errno
import os
from collections.abc import Callable

#: The ENCLU result codes the manager can see (EAX after EACCEPT / EACCEPTCOPY /
#: EMODPE), by value. The C reference hands such a code back to its caller as if
#: it were an errno, so `EmmError.errno` may hold one: `EmmError.result_name`
#: names it as what it is.
SGX_RESULT_NAMES: dict[int, str] = {
    7: "SGX_EPC_PAGE_CONFLICT",
    11: "SGX_NOT_TRACKED",
    13: "SGX_CHILD_PRESENT",
    14: "SGX_ENCLAVE_ACT",
    17: "SGX_PREV_TRK_INCMPL",
    19: "SGX_PAGE_ATTRIBUTES_MISMATCH",
    20: "SGX_PAGE_NOT_MODIFIABLE",
}


def errno_name(err: int) -> str:
    """`EINVAL` for 22; the number as text when it is no errno of this system."""
    return _errno.errorcode.get(err, str(err))


def sgx_result_name(code: int) -> str:
    """`SGX_PAGE_ATTRIBUTES_MISMATCH` for 19; `SGX_ERROR_<n>` for a code we do not know."""
    return SGX_RESULT_NAMES.get(code, f"SGX_ERROR_{code}")


class EmmError(OSError):
    """A manager call failed: `errno` is the C reference's result, `reason` says why.

    `errno` keeps the exact value the C code returns (EINVAL, EACCES, EEXIST, EPERM,
    ENOMEM, EFAULT, or, where the reference passes an ENCLU result through, that
    SGX code). `reason` names the check that failed with the values involved,
    e.g. ``"size 0x64 is not a multiple of the page size"``. `str(e)` shows both.

    `reason` may also be given as a function and the values it formats
    (``EmmError(errno.EACCES, not_writable, start, end)``): it is called, once,
    when the reason is first read. Callers that refuse often and rarely show
    why (a benchmark, a retry loop) then never pay for the text; the values are
    taken at the raise, so the text is the same as if it had been written then.
    """

    # Slots and a direct base call halve the cost of making one (the manager
    # refuses a tenth of a typical call mix); instances keep their __dict__.
    __slots__ = ("sgx_code", "_sgx_leaf", "_reason", "_reason_args", "_text")

    def __init__(self, err: int, reason: str | Callable[..., str] | None = None,
                 *reason_args: object, sgx_leaf: str | None = None) -> None:
        self.sgx_code = sgx_leaf is not None
        self._sgx_leaf = sgx_leaf
        self._reason: str | Callable[..., str] | None = reason
        self._reason_args = reason_args
        self._text: str | None = None
        # errno is OSError's own writable field; OSError.__init__ (an argument parse
        # of its own) is not called: strerror and args are properties below
        self.errno = err

    @property
    def reason(self) -> str:
        """Why the call failed (formatted on first read)."""
        text = self._text
        if text is None:
            raw = self._reason
            if callable(raw):
                raw = raw(*self._reason_args)
            if self._sgx_leaf is not None:
                # an ENCLU result passed through as the return value: name it as one
                raw = f"{sgx_result_name(self._errno)} ({self._errno}) from {self._sgx_leaf}" + (
                    f" {raw}" if raw else "")
            text = self._text = raw or os.strerror(self._errno)
        return text

    @property
    def _errno(self) -> int:
        return int(self.errno or 0)

    @property
    def strerror(self) -> str:  # type: ignore[override]
        """OSError's text: the reason."""
        return self.reason

    @strerror.setter
    def strerror(self, value: str) -> None:  # pragma: no cover - not used
        self._text = value

    @property  # type: ignore[override]
    def args(self) -> tuple[object, ...]:
        """(errno, reason), as OSError(errno, reason) would hold."""
        return (self.errno, self.reason)

    @args.setter
    def args(self, value: tuple[object, ...]) -> None:  # pragma: no cover - not used
        BaseException.args.__set__(self, value)  # type: ignore[attr-defined]

    @classmethod
    def from_leaf(cls, code: int, leaf: str, addr: int, context: str = "") -> EmmError:
        """The error for an ENCLU leaf that returned `code` on the page at `addr`."""
        where = f"at {addr:#x}" + (f" ({context})" if context else "")
        return cls(code, where, sgx_leaf=leaf)

    @property
    def result_name(self) -> str:
        """The C result by name: `EINVAL`, or `SGX_PAGE_ATTRIBUTES_MISMATCH` for a leaf code."""
        err = self._errno
        return sgx_result_name(err) if self.sgx_code else errno_name(err)

    def __str__(self) -> str:
        if self.sgx_code:
            return self.reason
        return f"[Errno {self.errno}] {self.result_name}: {self.reason}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.errno!r}, {self.reason!r})"

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_emm_error, (self.errno, self.reason, self.sgx_code))


def _rebuild_emm_error(err: int, reason: str, sgx_code: bool) -> EmmError:
    e = EmmError(err, reason)
    e.sgx_code = sgx_code
    return e


class EnclaveAbort(RuntimeError):
    """The enclave called abort(): its state is unrecoverable.

    `cause` is one sentence saying which expectation broke (for instance an
    EACCEPT the manager relied on failing, with the page and the SGX code).
    """

    def __init__(self, message: str, *, cause: str | None = None) -> None:
        super().__init__(message)
        self.cause = cause or message


class EnclaveCrashed(RuntimeError):
    """An enclave exception reached the end of the handler chain unhandled.

    `vector`, `errcd` and `addr` are the exception as the enclave saw it;
    `cause` is one sentence naming what the platform knows about it: the
    architectural check that raised the fault, the page's EPCM and page-table
    state, or, for an endless fault loop, what each handler did and why nothing
    changed. `str(e)` ends with the cause.
    """

    def __init__(self, message: str, *, vector: int | None = None,
                 errcd: int | None = None, addr: int | None = None,
                 cause: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.vector = vector
        self.errcd = errcd
        self.addr = addr
        self.cause = cause or message

    def __str__(self) -> str:
        if self.cause and self.cause not in self.message:
            return f"{self.message}: {self.cause}"
        return self.message


class NotEntered(RuntimeError):
    """Enclave code was run outside its ecall (e.g. a `ThreadContext` after its `with`).

    Also what a manager call through `enc.emm` (or `capi`) raises when the calling
    thread is not inside the enclave: on hardware the manager is trusted code and
    only runs inside an entry, so call it inside `with enc.enter():`.
    """

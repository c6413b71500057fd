"""The trusted runtime's side of the manager's two interfaces.

`TrustedRuntime` implements `RuntimeAbstraction` the way the Intel SDK's trts does:
ocalls leave the enclave and reach the untrusted runtime's services, whose answer
is only ever 0 or EFAULT (the trusted side trusts nothing else it says);
registration goes to the exception dispatcher; the mutex is recursive; the
within-enclave check is ELRANGE arithmetic. `TrustedPrimitives` issues EACCEPT,
EACCEPTCOPY and EMODPE on the enclave thread the calling Python thread is running.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from typing import Any, Protocol

from sgx_emm.emm.rt import Mutex, PfHandler, eaccept_each
from sgx_emm.runtime.dispatcher import ExceptionDispatcher
from sgx_emm.trace import OCALL, Trace

#: Each ocall's trace key (counted by `Trace.unheard` while nobody listens) and the
#: names of its arguments in the event's details.
_ALLOC_OCALL = (OCALL, "alloc_ocall")
_ALLOC_FIELDS = ("addr", "length", "page_type", "flags")
_MODIFY_OCALL = (OCALL, "modify_ocall")
_MODIFY_FIELDS = ("addr", "length", "flags_from", "flags_to")


class OcallTarget(Protocol):
    """The untrusted runtime's services for the manager's two ocalls."""

    def alloc_ocall(self, addr: int, length: int, page_type: int, alloc_flags: int) -> int: ...

    def modify_ocall(self, addr: int, length: int, flags_from: int, flags_to: int) -> int: ...


class LeafIssuer(Protocol):
    """An in-enclave thread that can execute the manager's ENCLU leaves."""

    def eaccept(self, secinfo: int, addr: int) -> int: ...

    def eacceptcopy(self, secinfo: int, dest: int, src: int) -> int: ...

    def emodpe(self, secinfo: int, addr: int) -> int: ...


class TrustedRuntime:
    """RuntimeAbstraction for a manager linked into the simulated enclave."""

    def __init__(self, base: int, size: int, untrusted: OcallTarget,
                 dispatcher: ExceptionDispatcher, trace: Trace,
                 bridge: Callable[[Callable[[], int]], int] | None = None) -> None:
        self._base = base
        self._end = base + size
        self._untrusted = untrusted
        self._dispatcher = dispatcher
        self._trace = trace
        # how an ocall leaves the enclave and comes back (EEXIT ... ORET)
        self._bridge = bridge if bridge is not None else (lambda call: call())

    @property
    def untrusted(self) -> OcallTarget:
        """The untrusted runtime serving the ocalls; replaceable at any time (a
        hostile runtime is swapped in here: the trusted side never relies on it)."""
        return self._untrusted

    @untrusted.setter
    def untrusted(self, target: OcallTarget) -> None:
        self._untrusted = target

    def alloc_ocall(self, addr: int, length: int, page_type: int, alloc_flags: int) -> int:
        return self._ocall(_ALLOC_OCALL, _ALLOC_FIELDS, (addr, length, page_type, alloc_flags))

    def modify_ocall(self, addr: int, length: int, flags_from: int, flags_to: int) -> int:
        return self._ocall(_MODIFY_OCALL, _MODIFY_FIELDS, (addr, length, flags_from, flags_to))

    def _ocall(self, key: tuple[str, str], fields: tuple[str, ...],
               args: tuple[int, ...]) -> int:
        """Announce an ocall (its details built only while someone listens), bridge
        it to the untrusted side's method of the same name (looked up when the
        bridge calls it: the untrusted runtime may be swapped meanwhile), and give
        the manager 0 or EFAULT."""
        trace = self._trace
        if trace.listening:
            details: dict[str, Any] = dict(zip(fields, args, strict=True))
            trace.emit(*key, **details)
        else:
            trace.unheard(key)
        name = key[1]
        ret = self._bridge(lambda: getattr(self._untrusted, name)(*args))
        return 0 if ret == 0 else errno.EFAULT

    def last_ocall_failure(self) -> str | None:
        """What the untrusted side said about this thread's last failed ocall.

        Diagnostics only (`OcallDiagnostics`): the manager's result stays EFAULT
        whatever this says.
        """
        ask = getattr(self._untrusted, "last_failure", None)
        if not callable(ask):
            return None
        try:
            why = ask()
        except Exception:  # an untrusted runtime may be broken or hostile
            return None
        return why if isinstance(why, str) else None

    def register_pfhandler(self, handler: PfHandler) -> bool:
        return self._dispatcher.register_pfhandler(handler)

    def mutex_create(self) -> Mutex:
        return threading.RLock()

    def is_within_enclave(self, addr: int, size: int) -> bool:
        """`sgx_is_within_enclave`: size 0 checks the one address; wrap is outside."""
        if size > 0 and addr >= 0:      # the usual question: a non-empty range
            last = addr + size - 1
            return self._base <= addr and last < self._end and last < 1 << 64
        if addr < 0 or size < 0:
            return False
        return self._base <= addr < self._end and addr < 1 << 64


#: `run_pages(secinfo, pages, done)`: EACCEPT over `pages` on the caller's enclave
#: thread, as `PagePrimitives.eaccept_pages`
PagesRunner = Callable[[int, range, list[int]], int]


class TrustedPrimitives:
    """Primitives that run on the enclave thread of the calling Python thread.

    `run_leaf(leaf)` calls `leaf(thread)` on that thread; when the caller is not
    inside the enclave it provides a temporary entry (see `Enclave`), because a
    leaf can only run inside. `run_pages`, if given, runs a whole EACCEPT page
    loop there (`eaccept_pages`), finding the thread once instead of per page;
    without it the loop calls `eaccept` per page.
    """

    def __init__(self, run_leaf: Callable[[Callable[[LeafIssuer], int]], int],
                 run_pages: PagesRunner | None = None) -> None:
        self._run_leaf = run_leaf
        self._run_pages = run_pages

    def eaccept_pages(self, secinfo: int, pages: range, done: list[int]) -> int:
        """`PagePrimitives.eaccept_pages`: the same leaves as `eaccept` per page."""
        if self._run_pages is None:
            return eaccept_each(self.eaccept, secinfo, pages, done)
        return self._run_pages(secinfo, pages, done)

    def eaccept(self, secinfo: int, addr: int) -> int:
        return self._run_leaf(lambda t: t.eaccept(secinfo, addr))

    def eacceptcopy(self, secinfo: int, dest: int, src: int) -> int:
        return self._run_leaf(lambda t: t.eacceptcopy(secinfo, dest, src))

    def emodpe(self, secinfo: int, addr: int) -> int:
        return self._run_leaf(lambda t: t.emodpe(secinfo, addr))

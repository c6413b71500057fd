"""A null runtime: the manager's two interfaces, doing nothing but counting.

`NullRuntime` implements `RuntimeAbstraction` and `NullPrimitives` implements
`Primitives` (sgx_emm.emm.rt) for testing and benchmarking the manager alone:
every ocall and ENCLU leaf succeeds, is counted, and (optionally) recorded in
call order, so tests can assert the exact sequence and SECINFO values the
reference would produce. Failures are injected per call name (an ocall that
returns EFAULT, an EACCEPT that returns an SGX code), optionally only for calls
whose arguments match. Nothing here knows about EPC pages or page tables.
"""

from __future__ import annotations

import errno
import itertools
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sgx_emm.emm.rt import Mutex, PfHandler, eaccept_each
from sgx_emm.trace import LEAF, OCALL, Trace

U64 = (1 << 64) - 1

#: The names calls are recorded and injected under.
ALLOC_OCALL = "alloc_ocall"
MODIFY_OCALL = "modify_ocall"
EACCEPT = "EACCEPT"
EACCEPTCOPY = "EACCEPTCOPY"
EMODPE = "EMODPE"
CALL_NAMES = (ALLOC_OCALL, MODIFY_OCALL, EACCEPT, EACCEPTCOPY, EMODPE)


@dataclass(frozen=True, slots=True)
class Call:
    """One recorded call: its name and integer arguments, in the interface's order.

    alloc_ocall(addr, length, page_type, alloc_flags);
    modify_ocall(addr, length, flags_from, flags_to);
    EACCEPT(secinfo, addr); EACCEPTCOPY(secinfo, dest, src); EMODPE(secinfo, addr).
    """

    name: str
    args: tuple[int, ...]


@dataclass
class _Injection:
    result: int
    times: int | None
    match: Callable[[tuple[int, ...]], bool] | None = field(default=None)


def _tallies() -> dict[str, itertools.count[int]]:
    """One counter per call name, each at 0.

    Counting a call is `next(counter)`: a single C call, so atomic under the
    GIL without a lock, and cheaper than a `threading.local` lookup (the
    benchmark's calls are mostly such counts).
    """
    return {name: itertools.count() for name in CALL_NAMES}


def _tally_value(counter: itertools.count[int]) -> int:
    """How often `counter` was advanced: its next value, which only its repr
    (`count(5)`) shows without advancing it."""
    return int(repr(counter)[6:-1])


class NullRuntime:
    """RuntimeAbstraction that succeeds, counts and records; primitives on `.primitives`.

    `record=False` keeps only the counters (for benchmarks). A `trace`, if
    given, also receives every ocall and leaf as an event.
    """

    def __init__(self, enclave_base: int, enclave_size: int, *, record: bool = True,
                 trace: Trace | None = None, register_ok: bool = True) -> None:
        self.enclave_base = enclave_base
        self.enclave_end = enclave_base + enclave_size
        self._injections: dict[str, list[_Injection]] = {}
        self._record_calls = record
        self._trace = trace
        self.register_ok = register_ok
        self.calls: list[Call] = []
        self.pf_handler: PfHandler | None = None
        self._guard = threading.Lock()
        #: Calls by name: one counter per call, plus what page loops counted at
        #: once (`_bulk`, under `_guard`; a counter cannot be advanced by n).
        self._tally = _tallies()
        self.primitives = NullPrimitives(self)
        self._bind_tallies()
        self._bulk: dict[str, int] = dict.fromkeys(CALL_NAMES, 0)
        self._count_only = False
        self._update_count_only()

    def _bind_tallies(self) -> None:
        """Give every call its counter as an attribute (no name lookup per call)."""
        tally = self._tally
        self._alloc_ocalls = tally[ALLOC_OCALL]
        self._modify_ocalls = tally[MODIFY_OCALL]
        self.primitives._bind(tally)

    @property
    def record(self) -> bool:
        """Whether calls are recorded in `calls`."""
        return self._record_calls

    @record.setter
    def record(self, value: bool) -> None:
        self._record_calls = value
        self._update_count_only()

    @property
    def trace(self) -> Trace | None:
        """The trace that receives every call as an event, if any."""
        return self._trace

    @trace.setter
    def trace(self, value: Trace | None) -> None:
        self._trace = value
        self._update_count_only()

    def _update_count_only(self) -> None:
        """Calls are only counted (the benchmark's path) while nothing is recorded,
        traced or injected: one flag the calls test, kept by whatever changes those."""
        self._count_only = not (self._record_calls or self._injections
                                or self._trace is not None)
        self.primitives._count_only = self._count_only

    # ---- failure injection ----

    def inject(self, name: str, result: int = errno.EFAULT, *, times: int | None = 1,
               match: Callable[[tuple[int, ...]], bool] | None = None) -> None:
        """Make the next `times` calls named `name` (None = all) return `result`.

        `match(args)` narrows it to calls with matching arguments.
        """
        if name not in CALL_NAMES:
            raise ValueError(f"unknown call {name!r}; one of {CALL_NAMES}")
        with self._guard:
            self._injections.setdefault(name, []).append(_Injection(result, times, match))
            self._update_count_only()

    def clear_injections(self, name: str | None = None) -> None:
        """Drop pending failures: all of them, or only those of call `name`."""
        with self._guard:
            if name is None:
                self._injections.clear()
            else:
                self._injections.pop(name, None)
            self._update_count_only()

    def reset(self) -> None:
        """Forget recorded calls and counts (injections stay)."""
        with self._guard:
            self.calls.clear()
            self._tally = _tallies()
            self._bind_tallies()
            self._bulk = dict.fromkeys(CALL_NAMES, 0)

    @property
    def counts(self) -> Counter[str]:
        """Calls so far by name (a snapshot; zero counts left out)."""
        with self._guard:
            tally, bulk = self._tally, dict(self._bulk)
        total: Counter[str] = Counter()
        for name, counter in tally.items():
            n = _tally_value(counter) + bulk[name]
            if n:
                total[name] = n
        return total

    def calls_named(self, *names: str) -> list[Call]:
        return [c for c in self.calls if c.name in names]

    def _call(self, category: str, name: str, args: tuple[int, ...]) -> int:
        """Count the call, then record, inject and trace it: its result."""
        next(self._tally[name])
        return self._record(category, name, args)

    def _record(self, category: str, name: str, args: tuple[int, ...]) -> int:
        """Record the call, apply the first matching injection, trace it; the result."""
        result = 0
        with self._guard:
            if self._record_calls:
                self.calls.append(Call(name, args))
            pending = self._injections.get(name) if self._injections else None
            if pending:
                for inj in pending:
                    if inj.match is None or inj.match(args):
                        result = inj.result
                        if inj.times is not None:
                            inj.times -= 1
                            if inj.times <= 0:
                                pending.remove(inj)
                        break
        if self._trace is not None:
            self._trace.emit(category, name, args=args, result=result)
        return result

    # ---- RuntimeAbstraction ----

    # Each call: only counted while nothing is recorded, traced or injected.

    def alloc_ocall(self, addr: int, length: int, page_type: int, alloc_flags: int) -> int:
        if self._count_only:
            next(self._alloc_ocalls)
            return 0
        return self._call(OCALL, ALLOC_OCALL, (addr, length, page_type, alloc_flags))

    def modify_ocall(self, addr: int, length: int, flags_from: int, flags_to: int) -> int:
        if self._count_only:
            next(self._modify_ocalls)
            return 0
        return self._call(OCALL, MODIFY_OCALL, (addr, length, flags_from, flags_to))

    def register_pfhandler(self, handler: PfHandler) -> bool:
        if not self.register_ok:
            return False
        self.pf_handler = handler
        return True

    def mutex_create(self) -> Mutex:
        return threading.RLock()

    def is_within_enclave(self, addr: int, size: int) -> bool:
        end = addr + size
        return end <= U64 and self.enclave_base <= addr and end <= self.enclave_end


class NullPrimitives:
    """Primitives whose leaves succeed (or return an injected code) and are counted."""

    def __init__(self, runtime: NullRuntime) -> None:
        self._rt = runtime
        #: The runtime's flag and counters, mirrored here by the runtime: a leaf
        #: that is only counted reads two attributes of its own object.
        self._count_only = False
        self._bind(runtime._tally)

    def _bind(self, tally: dict[str, itertools.count[int]]) -> None:
        """Count on `tally`'s counters from now on (the runtime's, after a reset)."""
        self._eaccepts = tally[EACCEPT]
        self._eacceptcopies = tally[EACCEPTCOPY]
        self._emodpes = tally[EMODPE]

    def eaccept(self, secinfo: int, addr: int) -> int:
        if self._count_only:
            next(self._eaccepts)
            return 0
        return self._rt._call(LEAF, EACCEPT, (secinfo, addr))

    def eaccept_pages(self, secinfo: int, pages: range, done: list[int]) -> int:
        """EACCEPT over `pages` (`PagePrimitives`): one leaf per page as `eaccept`
        would be called; when nothing is recorded, injected or traced, the leaves
        are only counted, all at once."""
        rt = self._rt
        if not rt._count_only:
            return eaccept_each(self.eaccept, secinfo, pages, done)
        with rt._guard:
            rt._bulk[EACCEPT] += len(pages)
        done[0] = len(pages)
        return 0

    def eacceptcopy(self, secinfo: int, dest: int, src: int) -> int:
        if self._count_only:
            next(self._eacceptcopies)
            return 0
        return self._rt._call(LEAF, EACCEPTCOPY, (secinfo, dest, src))

    def emodpe(self, secinfo: int, addr: int) -> int:
        if self._count_only:
            next(self._emodpes)
            return 0
        return self._rt._call(LEAF, EMODPE, (secinfo, addr))


__all__ = ["CALL_NAMES", "Call", "NullPrimitives", "NullRuntime"]

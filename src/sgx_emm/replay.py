"""Replay: run a recorded sequence of EMM calls on a fresh simulated enclave.

Follows spec/replay-format.md. A replay file is JSON Lines, one call per line;
each line is parsed on its own (a bad line is reported with its 0-based number
and, unless `strict`, does not stop the run), addresses are resolved when the
line runs (`$N` names the address line N returned, or acted on), and every call runs inside
an enclave entry on the thread it names. What each call caused is read from the
enclave's trace, so per-call counts and totals come from the same stream.

Our extensions of the format (documented in docs/cli.md): `"handler": "commit" |
"skip"` on alloc lines, `b+OFF` addresses (relative to the enclave base),
`ALIGNED(n)` in alloc flags, `"expect"` (the result the line should give),
`"errcd"` on fault lines, and `"note"` (ignored text).
"""

from __future__ import annotations

import errno as _errno
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

from sgx_emm import flags as F
from sgx_emm.emm.rt import FaultHandler, PfInfo
from sgx_emm.errors import EmmError, EnclaveAbort, EnclaveCrashed
from sgx_emm.trace import Event

MAX_U64 = (1 << 64) - 1

#: PFEC bits a synthetic `fault` line sets: P and SGX always, W/R from "write".
PF_PRESENT = 0x1
PF_WRITE = 0x2
PF_SGX = 0x8000

#: What a fault handler's result is called in the output.
HANDLER_RESULTS = {
    F.EXCEPTION_CONTINUE_EXECUTION: "CONTINUE_EXECUTION",
    F.EXCEPTION_CONTINUE_SEARCH: "CONTINUE_SEARCH",
}

#: Name of the bundled example inside the package (`sgx_emm/examples/`).
EXAMPLE_NAME = "tour.jsonl"


# --------------------------------------------------------------------------
# What the runner needs from an enclave (sgx_emm.Enclave satisfies it; tests
# may plug in a small double).


class EnclaveThread(Protocol):
    def read(self, addr: int, n: int) -> bytes: ...

    def write(self, addr: int, data: bytes) -> None: ...

    def fetch(self, addr: int, n: int) -> bytes: ...


class TraceLike(Protocol):
    @property
    def counts(self) -> Counter[tuple[str, str]]: ...

    def by_category(self) -> dict[str, dict[str, int]]: ...

    def subscribe(self, listener: Callable[[Event], None]) -> Callable[[], None]: ...


class EnclaveLike(Protocol):
    @property
    def emm(self) -> Any: ...

    @property
    def trace(self) -> TraceLike: ...

    @property
    def base(self) -> int: ...

    @property
    def size(self) -> int: ...

    @property
    def user_base(self) -> int: ...

    @property
    def user_end(self) -> int: ...

    @property
    def tcs_addresses(self) -> list[int]: ...

    def enter(self, tcs: int | None = None) -> AbstractContextManager[Any]: ...


# --------------------------------------------------------------------------
# Parsing: numbers, flags, addresses, lines.


class LineError(ValueError):
    """A line the runner cannot run: malformed, unknown op, bad field, bad reference."""


def parse_number(value: object, what: str) -> int:
    """A JSON integer or a hex/decimal string, as an unsigned 64-bit value."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise LineError(f"{what}: expected a number or a hex/decimal string, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            n = int(text, 16) if text[:2].lower() == "0x" else int(text, 10)
        except ValueError:
            raise LineError(f"{what}: {value!r} is not a number") from None
    else:
        n = value
    if not 0 <= n <= MAX_U64:
        raise LineError(f"{what}: {n} is not an unsigned 64-bit value")
    return n


def _short_names(prefix: str, names: Iterable[str]) -> dict[str, int]:
    """Full names and the same names without `prefix` (PROT_READ and READ)."""
    out: dict[str, int] = {}
    for name in names:
        out[name] = F.FLAG_NAMES[name]
        if name.startswith(prefix):
            out[name[len(prefix):]] = F.FLAG_NAMES[name]
    return out


_ALLOC_FLAG_NAMES = list(F.AllocFlags.__members__)
_PAGE_TYPE_NAMES = list(F.PageType.__members__)
_PROT_NAMES = [name for name in F.FLAG_NAMES if name.startswith("PROT_")]

#: Names each kind of field accepts. Namespaces are kept apart so that a prot
#: name in an alloc's flags (READ = 0x1 = RESERVE) is an error, not a surprise.
NAMESPACES: dict[str, dict[str, int]] = {
    "flags": {
        **_short_names("", _ALLOC_FLAG_NAMES),
        **_short_names("PAGE_TYPE_", _PAGE_TYPE_NAMES),
    },
    "prot": _short_names("PROT_", _PROT_NAMES),
    "type": _short_names("PAGE_TYPE_", _PAGE_TYPE_NAMES),
}

_ALIGNED = re.compile(r"ALIGNED\s*\(\s*(\d+)\s*\)\Z")


def parse_flags(value: object, what: str, kind: str) -> int:
    """An integer, or `|`-joined names of `kind` ("flags", "prot" or "type").

    Names are the `sgx_emm.flags` names with or without their prefix, in any
    case; pieces may also be numbers, and alloc flags may use ALIGNED(n).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return parse_number(value, what)
    if not isinstance(value, str) or not value.strip():
        raise LineError(f"{what}: expected flag names or a number, got {value!r}")
    names = NAMESPACES[kind]
    total = 0
    for raw in value.split("|"):
        piece = raw.strip().upper()
        if not piece:
            raise LineError(f"{what}: empty flag name in {value!r}")
        if piece in names:
            total |= names[piece]
        elif piece[0].isdigit():
            total |= parse_number(piece, what)
        elif kind == "flags" and (m := _ALIGNED.match(piece)):
            total |= F.aligned(int(m.group(1)))
        else:
            other = [k for k, table in NAMESPACES.items() if k != kind and piece in table]
            hint = f" (it is a {other[0]} name)" if other else ""
            raise LineError(f"{what}: unknown {kind} name {raw.strip()!r}{hint}")
    return total


@dataclass(frozen=True, slots=True)
class Address:
    """An address as written: absolute, `u+OFF`, `b+OFF` or `$N[+OFF]`."""

    kind: str  # "abs", "user", "base", "line"
    offset: int  # the absolute value for "abs"; signed offset otherwise
    ref: int | None = None  # line number for "line"
    text: str = ""

    def __str__(self) -> str:
        return self.text


_REF = re.compile(r"\$(\d+)\s*(?:([+-])\s*(\S+))?\Z")
_REL = re.compile(r"([ub])\s*(?:([+-])\s*(\S+))?\Z", re.IGNORECASE)


def parse_address(value: object, what: str, line: int, nullable: bool = False) -> Address | None:
    """Parse an address field; `$N` must name an earlier line."""
    if value is None:
        if nullable:
            return None
        raise LineError(f"{what}: an address is required here (null means anywhere only "
                        "for alloc)")
    if isinstance(value, str):
        text = value.strip()
        if m := _REF.match(text):
            ref = int(m.group(1))
            if ref >= line:
                raise LineError(f"{what}: {text} names line {ref}, which is not an earlier line")
            return Address("line", _signed(m.group(2), m.group(3), what), ref, text)
        if m := _REL.match(text):
            kind = "user" if m.group(1).lower() == "u" else "base"
            return Address(kind, _signed(m.group(2), m.group(3), what), None, text)
    n = parse_number(value, what)
    return Address("abs", n, None, str(value))


def _signed(sign: str | None, number: str | None, what: str) -> int:
    if number is None:
        return 0
    n = parse_number(number, what)
    return -n if sign == "-" else n


def parse_data(value: object, what: str) -> bytes:
    """Bytes written by a `write` line: a hex string (spaces allowed)."""
    if not isinstance(value, str):
        raise LineError(f"{what}: expected a hex string, got {value!r}")
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise LineError(f"{what}: {value!r} is not a hex string") from None
    if not data:
        raise LineError(f"{what}: no bytes to write")
    return data


# Field kinds: "addr", "addr?" (null = anywhere), "size", "flags", "prot", "type",
# "bytes", "bool", "handler", "number". A trailing "=" marks an optional field.
_RANGE = {"addr": "addr", "size": "size"}
_ALLOC = {"addr": "addr?=", "size": "size", "flags": "flags", "handler": "handler="}
OPS: dict[str, dict[str, str]] = {
    "alloc": _ALLOC,
    "dealloc": _RANGE,
    "commit": _RANGE,
    "uncommit": _RANGE,
    "commit_data": {**_RANGE, "data": "addr", "prot": "prot"},
    "modify_permissions": {**_RANGE, "prot": "prot"},
    "modify_type": {**_RANGE, "type": "type"},
    "read": _RANGE,
    "fetch": _RANGE,
    "write": {"addr": "addr", "data": "bytes"},
    "fault": {"addr": "addr", "write": "bool=", "errcd": "number="},
    "mm_init_ema": {**_RANGE, "flags": "flags", "prot": "prot", "handler": "handler="},
}
for _name in ("alloc", "dealloc", "commit", "uncommit", "commit_data", "modify_type",
              "modify_permissions"):
    OPS["mm_" + _name] = OPS[_name]
#: Keys any line may carry besides its op's fields.
COMMON_KEYS = {"op", "thread", "expect", "note"}
#: Built-in fault handlers an alloc line may name.
HANDLER_KINDS = ("commit", "skip")


@dataclass(frozen=True, slots=True)
class Call:
    """One parsed line: the op, its decoded arguments, and where it runs."""

    line: int
    op: str
    args: dict[str, Any]
    thread: int = 0
    expect: str | None = None


def parse_line(text: str, line: int) -> Call | None:
    """Parse one JSON Lines line; None for a blank line. Raises LineError."""
    if not text.strip():
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise LineError(f"malformed JSON: {e.msg} (column {e.colno})") from None
    return parse_call(obj, line)


def parse_call(obj: object, line: int) -> Call:
    """Decode one call object (the JSON value of a line)."""
    if not isinstance(obj, dict):
        raise LineError(f"expected a JSON object, got {type(obj).__name__}")
    op = obj.get("op")
    if not isinstance(op, str):
        raise LineError('missing "op"' if op is None else f'"op" must be a string, got {op!r}')
    fields = OPS.get(op)
    if fields is None:
        raise LineError(f"unknown op {op!r}")
    unknown = sorted(set(obj) - set(fields) - COMMON_KEYS)
    if unknown:
        raise LineError(f"{op}: unknown field(s) {', '.join(map(repr, unknown))}")
    args: dict[str, Any] = {}
    for name, kind in fields.items():
        optional = kind.endswith("=")
        kind = kind.rstrip("=")
        if name not in obj:
            if optional:
                continue
            raise LineError(f'{op}: missing field "{name}"')
        args[name] = _parse_field(obj[name], f"{op}.{name}", kind, line)
    thread = parse_number(obj["thread"], "thread") if "thread" in obj else 0
    expect = obj.get("expect")
    if expect is not None and (isinstance(expect, bool) or not isinstance(expect, int | str)):
        raise LineError(f'"expect" must be 0 or a result name, got {expect!r}')
    return Call(line, op, args, thread, None if expect is None else str(expect))


def _parse_field(value: object, what: str, kind: str, line: int) -> Any:
    if kind in ("addr", "addr?"):
        return parse_address(value, what, line, nullable=kind == "addr?")
    if kind in ("size", "number"):
        return parse_number(value, what)
    if kind in NAMESPACES:
        return parse_flags(value, what, kind)
    if kind == "bytes":
        return parse_data(value, what)
    if kind == "bool":
        if not isinstance(value, bool):
            raise LineError(f"{what}: expected true or false, got {value!r}")
        return value
    if kind == "handler":
        if value not in HANDLER_KINDS:
            raise LineError(f"{what}: unknown handler {value!r} (use "
                            + " or ".join(map(repr, HANDLER_KINDS)) + ")")
        return value
    raise AssertionError(kind)  # pragma: no cover - OPS uses only the kinds above


# --------------------------------------------------------------------------
# Results.


@dataclass(slots=True)
class CallResult:
    """What one line did. `error` is set when the line did not run."""

    line: int
    op: str | None
    ret: int | str | None = None  # 0, an errno name, ABORT, CRASH, CONTINUE_*
    addr: int | None = None  # the address an alloc returned (what `$N` names)
    target: int | None = None  # the resolved address the call acted on
    thread: int = 0
    data: bytes | None = None  # bytes a read / fetch returned
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    error: str | None = None
    detail: str | None = None  # message of an abort / crash / internal error
    expect: str | None = None
    bad_input: bool = False  # the error is the input's fault (--strict stops on it)
    internal: bool = False  # the simulator raised something unexpected

    @property
    def as_expected(self) -> bool | None:
        """Whether `ret` is what the line's "expect" asked for (None: no expect)."""
        if self.expect is None:
            return None
        return self.error is None and str(self.ret) == self.expect


@dataclass(frozen=True, slots=True)
class RegionInfo:
    """A region of the final layout; `runs` is the commit bitmap run-length coded."""

    start: int
    size: int
    alloc_flags: int
    si_flags: int
    runs: tuple[tuple[bool, int], ...]
    is_meta: bool = False
    has_handler: bool = False

    @property
    def pages(self) -> int:
        return self.size // F.PAGE_SIZE

    @property
    def committed_pages(self) -> int:
        return sum(n for committed, n in self.runs if committed)


@dataclass(slots=True)
class Report:
    """The outcome of a replay: per-call results (if kept), final layout, counts."""

    enclave: EnclaveLike
    results: list[CallResult]
    calls: int = 0
    failed: int = 0  # calls that ran and returned an error, abort or crash
    errors: int = 0  # lines that did not run
    internal_errors: int = 0
    unexpected: int = 0  # lines whose result differs from their "expect"
    stopped: CallResult | None = None  # --strict: the bad line that stopped the run
    dead: CallResult | None = None  # the call that aborted or crashed the enclave

    def layout(self) -> dict[str, list[RegionInfo]]:
        return snapshot_layout(self.enclave)

    def counts(self) -> dict[str, dict[str, int]]:
        return self.enclave.trace.by_category()


def committed_runs(committed: object, pages: int) -> tuple[tuple[bool, int], ...]:
    """Run-length code a region's commit view: ((True, 3), (False, 5)) for 3c5u.

    Uses the view's own `runs()` when it offers one; else a view that is all or
    nothing committed (its `count()` says) costs O(1) pages; else it iterates.
    """
    if committed is None:
        return ((False, pages),) if pages else ()
    runs_method = getattr(committed, "runs", None)
    if callable(runs_method):
        return tuple((bool(c), int(n)) for c, n in runs_method())
    count = getattr(committed, "count", None)
    if callable(count) and pages:  # all or nothing committed: no need to walk the pages
        ones = int(count(True))
        if ones in (0, pages):
            return ((ones == pages, pages),)
    out: list[tuple[bool, int]] = []
    for bit in committed:  # type: ignore[attr-defined]
        b = bool(bit)
        if out and out[-1][0] == b:
            out[-1] = (b, out[-1][1] + 1)
        else:
            out.append((b, 1))
    return tuple(out)


def snapshot_layout(enclave: EnclaveLike) -> dict[str, list[RegionInfo]]:
    """The regions of both roots, as plain values."""
    layout: dict[str, list[RegionInfo]] = {}
    for root in ("user", "rts"):
        regions = []
        for r in enclave.emm.regions(root):
            pages = r.size // F.PAGE_SIZE
            regions.append(RegionInfo(
                int(r.start), int(r.size), int(r.alloc_flags), int(r.si_flags),
                committed_runs(r.committed, pages), bool(getattr(r, "is_meta", False)),
                bool(getattr(r, "has_handler", False))))
        layout[root] = regions
    return layout


# --------------------------------------------------------------------------
# Running.


def handler_for(kind: str, commit: Callable[[int, int], object]) -> FaultHandler:
    """A built-in custom fault handler.

    "commit" commits the faulting page with `commit` (emm.commit, or mm_commit for
    runtime regions) and asks for the access to be retried; if the commit fails
    it passes the fault on instead (retrying would fault forever). "skip" always
    passes the fault on (CONTINUE_SEARCH).
    """
    if kind == "skip":
        def skip(pfinfo: PfInfo, private: Any) -> int:
            return F.EXCEPTION_CONTINUE_SEARCH
        return skip

    def commit_faulting_page(pfinfo: PfInfo, private: Any) -> int:
        try:
            commit(pfinfo.maddr & ~(F.PAGE_SIZE - 1), F.PAGE_SIZE)
        except EmmError:
            return F.EXCEPTION_CONTINUE_SEARCH
        return F.EXCEPTION_CONTINUE_EXECUTION
    return commit_faulting_page


#: Results after which a line's address may be named by `$N`.
_SUCCESS = (0, "CONTINUE_EXECUTION", "CONTINUE_SEARCH")


class Replayer:
    """Runs calls one at a time on one enclave, remembering what each line returned."""

    def __init__(self, enclave: EnclaveLike) -> None:
        self.enclave = enclave
        # line -> the address it returned, or why it has none (for `$N`)
        self._addresses: dict[int, int | str] = {}
        self.dead: CallResult | None = None

    def step(self, text: str | Mapping[str, Any], line: int) -> CallResult | None:
        """Parse and run one line; None for a blank line."""
        try:
            call = (parse_line(text, line) if isinstance(text, str)
                    else parse_call(dict(text), line))
        except LineError as e:
            self._addresses[line] = "it is not a valid line"
            return CallResult(line, _op_of(text), error=str(e), bad_input=True)
        if call is None:
            self._addresses[line] = "it is blank"
            return None
        return self.run_call(call)

    def run_call(self, call: Call) -> CallResult:
        result = CallResult(call.line, call.op, thread=call.thread, expect=call.expect)
        if self.dead is not None:
            verb = "aborted" if self.dead.ret == "ABORT" else "crashed"
            result.error = f"not run: the enclave {verb} at line {self.dead.line}"
            self._addresses[call.line] = "it did not run"
            return result
        try:
            args = self._resolve(call)
            tcs = self._tcs(call.thread)
        except LineError as e:
            result.error = str(e)
            result.bad_input = True
            self._addresses[call.line] = "it did not run"
            return result
        result.target = args.get("addr")
        trace = self.enclave.trace
        before = Counter(trace.counts)
        try:
            with self.enclave.enter(tcs=tcs) as thread:
                self._execute(call, args, thread, result)
            if result.ret is None:
                result.ret = 0
        except EmmError as e:
            result.ret = _errno.errorcode.get(e.errno or 0, str(e.errno))
        except EnclaveAbort as e:
            result.ret, result.detail = "ABORT", str(e)
            self.dead = result
        except EnclaveCrashed as e:
            result.ret, result.detail = "CRASH", str(e)
            self.dead = result
        except Exception as e:  # a simulator bug: report it and carry on
            result.error = f"internal error: {type(e).__name__}: {e}"
            result.internal = True
        result.counts = _diff(trace.counts, before)
        # `$N` names what line N returned (alloc) or else the address it acted on,
        # as the format's own example uses it, once the line succeeded.
        where = result.addr if result.addr is not None else result.target
        if result.error is not None:
            self._addresses[call.line] = "it did not run"
        elif result.ret not in _SUCCESS:
            self._addresses[call.line] = f"it failed ({result.ret})"
        elif where is None:
            self._addresses[call.line] = f"{call.op} has no address"
        else:
            self._addresses[call.line] = where
        return result

    def _tcs(self, thread: int) -> int:
        tcs = self.enclave.tcs_addresses
        if thread >= len(tcs):
            raise LineError(f"thread {thread} does not exist (the enclave has {len(tcs)} "
                            "threads: 0.." f"{len(tcs) - 1})")
        return tcs[thread]

    def _resolve(self, call: Call) -> dict[str, Any]:
        args = dict(call.args)
        for name, value in call.args.items():
            if isinstance(value, Address):
                args[name] = self.resolve(value, f"{call.op}.{name}")
        return args

    def resolve(self, address: Address, what: str) -> int:
        """The absolute value of an address; LineError for an unusable `$N`."""
        enc = self.enclave
        if address.kind == "abs":
            n = address.offset
        elif address.kind == "user":
            n = enc.user_base + address.offset
        elif address.kind == "base":
            n = enc.base + address.offset
        else:
            assert address.ref is not None
            got = self._addresses.get(address.ref, "it did not run")
            if isinstance(got, str):
                raise LineError(f"{what}: {address} names line {address.ref}, which has no "
                                f"address: {got}")
            n = got + address.offset
        if not 0 <= n <= MAX_U64:
            raise LineError(f"{what}: {address} is outside the 64-bit address space")
        return n

    def _execute(self, call: Call, a: dict[str, Any], t: EnclaveThread,
                 result: CallResult) -> None:
        emm = self.enclave.emm
        op = call.op
        private = op.startswith("mm_")
        name = op[3:] if private else op
        if name == "alloc":
            handler = None
            if "handler" in a:
                handler = handler_for(a["handler"], emm.mm_commit if private else emm.commit)
            result.addr = getattr(emm, op)(a.get("addr"), a["size"], a["flags"], handler=handler)
            result.target = result.addr
        elif name in ("dealloc", "commit", "uncommit"):
            getattr(emm, op)(a["addr"], a["size"])
        elif name == "commit_data":
            getattr(emm, op)(a["addr"], a["size"], a["data"], a["prot"])
        elif name == "modify_permissions":
            getattr(emm, op)(a["addr"], a["size"], a["prot"])
        elif name == "modify_type":
            getattr(emm, op)(a["addr"], a["size"], a["type"])
        elif op == "mm_init_ema":
            handler = handler_for(a["handler"], emm.mm_commit) if "handler" in a else None
            emm.mm_init_ema(a["addr"], a["size"], a["flags"], a["prot"], handler=handler)
        elif op == "read":
            result.data = bytes(t.read(a["addr"], a["size"]))
        elif op == "fetch":
            result.data = bytes(t.fetch(a["addr"], a["size"]))
        elif op == "write":
            t.write(a["addr"], a["data"])
        elif op == "fault":
            errcd = a.get("errcd")
            if errcd is None:
                errcd = PF_PRESENT | PF_SGX | (PF_WRITE if a.get("write") else 0)
            got = emm.handle_page_fault(PfInfo(a["addr"], errcd))
            result.ret = HANDLER_RESULTS.get(got, str(got))
        else:  # pragma: no cover - parse_call admits only the ops of OPS
            raise AssertionError(op)


def _op_of(text: str | Mapping[str, Any]) -> str | None:
    """The op of a bad line, when it can still be told."""
    if isinstance(text, str):
        try:
            obj = json.loads(text)
        except ValueError:
            return None
    else:
        obj = text
    op = obj.get("op") if isinstance(obj, dict) else None
    return op if isinstance(op, str) else None


def _diff(after: Counter[tuple[str, str]],
          before: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (category, name), n in sorted((after - before).items()):
        out.setdefault(category, {})[name] = n
    return out


def run(lines: Iterable[str | Mapping[str, Any]], *, strict: bool = False,
        enclave: EnclaveLike | None = None,
        on_result: Callable[[CallResult], None] | None = None,
        keep_results: bool = True, **enclave_options: Any) -> Report:
    """Replay `lines` (JSON text, or already-decoded objects) on a fresh enclave.

    `enclave_options` go to `sgx_emm.Enclave.create` unless `enclave` is given.
    `on_result` sees each result as soon as its line ran (streaming output);
    `strict` stops at the first line that cannot run (Report.stopped).
    """
    if enclave is None:
        from sgx_emm.enclave import Enclave

        enclave = Enclave.create(**enclave_options)
    replayer = Replayer(enclave)
    report = Report(enclave, [])
    for n, text in enumerate(lines):
        result = replayer.step(text, n)
        if result is None:
            continue
        if result.error is None:
            report.calls += 1
            if result.ret not in (0, "CONTINUE_EXECUTION", "CONTINUE_SEARCH"):
                report.failed += 1
        else:
            report.errors += 1
        report.internal_errors += result.internal
        report.unexpected += result.as_expected is False
        if keep_results:
            report.results.append(result)
        if on_result is not None:
            on_result(result)
        if strict and (result.bad_input or result.internal):
            report.stopped = result
            break
    report.dead = replayer.dead
    return report


def example_lines() -> list[str]:
    """The bundled example, found inside the installed package."""
    return read_lines(example_text())


def example_text() -> str:
    return (resources.files("sgx_emm") / "examples" / EXAMPLE_NAME).read_text("utf-8")


def read_lines(text: str) -> list[str]:
    """Split a file into lines the way line numbers count them (0-based, every line)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


"""Running a replay: each line inside an enclave entry, results read from the trace.

Addresses are resolved when a line runs (`$N` names the address line N returned,
or acted on, once it succeeded), and every call runs inside an enclave entry on
the thread it names. What each call caused is read from the enclave's trace, so
per-call counts and totals come from the same stream.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from typing import Any

from sgx_emm.errors import EmmError, EnclaveAbort, EnclaveCrashed
from sgx_emm.replay.interfaces import EnclaveLike
from sgx_emm.replay.ops import RUNNERS, OpContext
from sgx_emm.replay.parse import MAX_U64, Address, Call, LineError, parse_call, parse_line
from sgx_emm.replay.results import CallResult, Report

#: Name of the bundled example inside the package (`sgx_emm/examples/`).
EXAMPLE_NAME = "tour.jsonl"

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
        """Run one parsed call inside an enclave entry and say what it did (never raises for a
        failed call).
        """
        result = CallResult(call.line, call.op, thread=call.thread, expect=call.expect,
                            note=call.note)
        if self.dead is not None:
            verb = "aborted" if self.dead.ret == "ABORT" else "crashed"
            result.error = f"not run: the enclave {verb} at line {self.dead.line}"
            self._addresses[call.line] = "it did not run"
            return result
        try:
            args = self._resolve(call)
            _check_access(call.op, args)
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
                RUNNERS[call.op](OpContext(call.op, self.enclave, thread, args, result))
            if result.ret is None:
                result.ret = 0
        except EmmError as e:
            result.ret, result.code, result.reason = e.result_name, e.errno, e.reason
        except EnclaveAbort as e:
            result.ret, result.detail, result.reason = "ABORT", str(e), e.cause
            self.dead = result
        except EnclaveCrashed as e:
            result.ret, result.detail, result.reason = "CRASH", str(e), e.cause
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


#: Ops that access enclave memory: their byte range must not wrap past 2^64.
_ACCESS_OPS = ("read", "write", "fetch")


def _check_access(op: str, args: Mapping[str, Any]) -> None:
    """A memory access whose last byte lies beyond 2^64 cannot be expressed (the
    address would wrap): a line error, as for any other unusable argument."""
    if op not in _ACCESS_OPS:
        return
    addr = args.get("addr")
    n = len(args["data"]) if op == "write" and "data" in args else args.get("size", 0)
    if isinstance(addr, int) and isinstance(n, int) and addr + n > MAX_U64 + 1:
        raise LineError(f"{op}: {n:#x} bytes at {addr:#x} run past the end of the 64-bit "
                        "address space")


def _op_of(text: str | Mapping[str, Any]) -> str | None:
    """The op of a bad line, when it can still be told."""
    if isinstance(text, str):
        try:
            obj = json.loads(text.lstrip("\ufeff"))
        except (ValueError, RecursionError):
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
        keep_results: bool = True,
        on_start: Callable[[int, str | Mapping[str, Any]], None] | None = None,
        **enclave_options: Any) -> Report:
    """Replay `lines` (JSON text, or already-decoded objects) on a fresh enclave.

    `enclave_options` go to `sgx_emm.Enclave.create` unless `enclave` is given.
    `on_result` sees each result as soon as its line ran (streaming output);
    `strict` stops at the first line that cannot run (Report.stopped);
    `on_start(line, text)` is told before each line runs (progress displays).
    """
    if enclave is None:
        from sgx_emm.enclave import Enclave

        enclave = Enclave.create(**enclave_options)
    replayer = Replayer(enclave)
    report = Report(enclave, [])
    for n, text in enumerate(lines):
        if on_start is not None:
            on_start(n, text)
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
    """The bundled example's text."""
    return (resources.files("sgx_emm") / "examples" / EXAMPLE_NAME).read_text("utf-8")


def read_lines(text: str) -> list[str]:
    """Split a file into lines the way line numbers count them (0-based, every line)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]

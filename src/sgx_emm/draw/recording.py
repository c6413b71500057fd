"""Keeping the event stream of a run, call by call, for pictures.

The trace normally only counts. A `Recording` subscribes to it and keeps every
event in order, with the enclave thread it happened on, grouped into the calls
of a replay (or into one anonymous run when used from Python). Every picture of
this package is drawn from a recording, so they all show the same run.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sgx_emm import replay
from sgx_emm.replay import CallResult, Report
from sgx_emm.trace import ENTRY, Event


@dataclass(slots=True)
class CallRecord:
    """The events of one call (a replay line, or a span of a Python run)."""

    line: int
    op: str
    thread: int
    events: list[Event] = field(default_factory=list)
    result: CallResult | None = None
    args: dict[str, Any] = field(default_factory=dict)
    note: str | None = None

    @property
    def ret(self) -> int | str | None:
        return None if self.result is None else self.result.ret

    @property
    def failed(self) -> bool:
        r = self.result
        return r is not None and (r.error is not None or r.ret not in
                                  (0, "CONTINUE_EXECUTION", "CONTINUE_SEARCH"))


class Recording:
    """Every event of a trace from `attach` on, split into calls.

    `end_call(result)` closes the current call with a replay result; events
    that were never closed form one last call named `run` (`calls` includes
    it). Thread attribution: the replay names the thread of each call; in a
    Python run the TCS of the last entry event on the emitting Python thread
    decides. Cost: one list append per event.
    """

    def __init__(self, tcs_addresses: list[int] | None = None) -> None:
        self.closed: list[CallRecord] = []
        self._pending: list[tuple[Event, int]] = []    # (event, enclave thread)
        self._tcs_index = {t: i for i, t in enumerate(tcs_addresses or [])}
        self._thread_of: dict[int, int] = {}     # Python thread id -> enclave thread
        self._unsubscribe: Callable[[], None] | None = None
        self.base = 0
        self.size = 0
        self.user_base = 0
        self.user_end = 0
        self.epc_start: int | None = None     # EPC pages in use when attached
        self.epc_pages: int | None = None     # EPC capacity

    # -- collecting
    def attach(self, source: Any) -> Recording:
        """Subscribe to an enclave's trace (or a bare Trace); returns self."""
        trace = getattr(source, "trace", source)
        for name in ("base", "size", "user_base", "user_end"):
            value = getattr(source, name, None)
            if isinstance(value, int):
                setattr(self, name, value)
        epc = getattr(getattr(source, "machine", None), "epc", None)
        used = getattr(epc, "used", None)
        if isinstance(used, int):
            self.epc_start = used
            capacity = getattr(epc, "npages", None)
            self.epc_pages = capacity if isinstance(capacity, int) else None
        tcs = getattr(source, "tcs_addresses", None)
        if tcs:
            self._tcs_index = {t: i for i, t in enumerate(tcs)}
        self._unsubscribe = trace.subscribe(self._on_event)
        return self

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def _on_event(self, event: Event) -> None:
        ident = threading.get_ident()
        tcs = event.details.get("tcs")
        if event.category == ENTRY and isinstance(tcs, int):
            # a TCS added after attach gets the next number
            thread = self._tcs_index.setdefault(tcs, len(self._tcs_index))
            self._thread_of[ident] = thread
        else:
            thread = self._thread_of.get(ident, 0)
        self._pending.append((event, thread))     # one append: atomic across threads

    def end_call(self, result: CallResult, args: dict[str, Any] | None = None,
                 note: str | None = None) -> CallRecord:
        """Close the events since the last call as the call `result` reports."""
        pending, self._pending = self._pending, []
        record = CallRecord(result.line, result.op or "?", result.thread,
                            [e for e, _ in pending], result, dict(args or {}), note)
        self.closed.append(record)
        return record

    # -- reading
    @property
    def calls(self) -> list[CallRecord]:
        """The closed calls, then the events not closed yet as one `run` call per
        enclave thread (in the order the threads first appear)."""
        runs: dict[int, CallRecord] = {}
        line = self.closed[-1].line + 1 if self.closed else 0
        for event, thread in list(self._pending):
            run = runs.get(thread)
            if run is None:
                run = runs[thread] = CallRecord(line + len(runs), "run", thread)
            run.events.append(event)
        return [*self.closed, *runs.values()]

    def events(self) -> list[Event]:
        return [e for c in self.calls for e in c.events]

    def address(self, addr: int) -> str:
        """Addresses as replay files write them: `u+OFF` in the user range, else hex."""
        if self.user_base <= addr < self.user_end:
            return f"u+{addr - self.user_base:#x}"
        return f"{addr:#x}"


#: Keys of a replay line that are not arguments of the call.
_NOT_ARGS = frozenset({"op", "expect", "note", "thread"})


def _line_object(text: Any) -> dict[str, Any]:
    obj = text
    if isinstance(text, str):
        try:
            obj = json.loads(text)
        except ValueError:
            return {}
    return obj if isinstance(obj, dict) else {}


def line_args(text: Any) -> dict[str, Any]:
    """The arguments a replay line passes, as written (for labels); {} if unreadable."""
    return {k: v for k, v in _line_object(text).items() if k not in _NOT_ARGS}


def line_note(text: Any) -> str | None:
    note = _line_object(text).get("note")
    return note if isinstance(note, str) else None


class ReplayRecorder:
    """Glue for `replay.run`: attach a recording, close one call per result."""

    def __init__(self, recording: Recording, lines: list[Any]) -> None:
        self.recording = recording
        self.lines = lines

    def __call__(self, result: CallResult) -> None:
        text = self.lines[result.line] if 0 <= result.line < len(self.lines) else None
        self.recording.end_call(result, line_args(text), line_note(text))


def record_replay(lines: list[Any], **enclave_options: Any) -> tuple[Report, Recording]:
    """Replay `lines` on a fresh enclave, recording every event per call."""
    from sgx_emm.enclave import Enclave

    enclave = Enclave.create(**enclave_options)
    recording = Recording().attach(enclave)
    try:
        report = replay.run(lines, enclave=enclave, on_result=ReplayRecorder(recording, lines))
    finally:
        recording.detach()
    return report, recording

"""What the commands share: number and enclave options, reading input, output and
progress, and replaying a file with streamed per-call output.

Exit status of every command: 0 when the replay ran (failing calls included), 1
for an input that cannot be read or a bad line under --strict, 2 for bad options,
3 when the simulator itself raised something unexpected (a bug, reported per line).
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from sgx_emm import render, replay
from sgx_emm.draw.recording import Recording, ReplayRecorder
from sgx_emm.trace import Event

#: Replays shorter than this finish before a progress bar would be worth drawing.
PROGRESS_MIN_LINES = 200

F = TypeVar("F", bound=Callable[..., Any])


class Number(click.ParamType):  # type: ignore[type-arg]  # generic only from click 8.2
    """An unsigned integer written in decimal or hex (0x...)."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return replay.parse_number(str(value), "value")
        except replay.LineError:
            self.fail(f"{value!r} is not a decimal or hex (0x...) number", param, ctx)


NUMBER = Number()

ENCLAVE_OPTIONS = ("base", "size", "user_base", "user_size", "epc_pages", "emalloc_initial",
                   "threads")


def enclave_options(f: F) -> F:
    """The options of `sgx_emm.Enclave.create`, each defaulting to create's own default."""
    helps = {
        "base": "ELRANGE start (page aligned).",
        "size": "ELRANGE size (a power of two).",
        "user_base": "Start of the user range (default: upper half of ELRANGE).",
        "user_size": "Size of the user range (default: the rest of ELRANGE).",
        "epc_pages": "EPC capacity in pages (default: large enough).",
        "emalloc_initial": "Size of the manager's first metadata reserve.",
        "threads": "TCSes created at load time (thread K of a line = TCS K).",
    }
    for name in reversed(ENCLAVE_OPTIONS):
        f = click.option("--" + name.replace("_", "-"), name, type=NUMBER, default=None,
                         help=helps[name])(f)
    f = click.option("--reclaim", "reclaim", is_flag=True, default=None,
                     help="Let the driver page EPC out, so the enclave may commit more "
                          "than --epc-pages.")(f)
    f = click.option("--config", "config", type=click.Path(exists=True, dir_okay=False),
                     default=None,
                     help="An Intel SGX SDK config.xml sizing the image (heap, stacks, "
                          "TCS pool, reserved memory).")(f)
    return f


def common_options(f: F) -> F:
    f = click.option("--strict", is_flag=True,
                     help="Stop at the first line that cannot run (exit status 1).")(f)
    f = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                     show_default=True, help="Output format.")(f)
    f = click.argument("file", required=False)(f)
    return enclave_options(f)


def full_map_option(f: F) -> F:
    return click.option(
        "--full-map", "full_map", is_flag=True,
        help="One row per region in the text map (by default runs of alike "
             "neighbouring regions share a row).")(f)


def load_lines(file: str | None) -> tuple[str, list[str]]:
    """(name, lines) of FILE, of stdin for '-', or of the bundled example."""
    if file is None:
        return f"bundled example {replay.EXAMPLE_NAME}", replay.example_lines()
    try:
        if file == "-":
            data = sys.stdin.buffer.read()
            name = "<stdin>"
        else:
            with open(file, "rb") as fh:
                data = fh.read()
            name = file
        text = data.decode("utf-8-sig")  # a byte order mark is not part of the text
    except OSError as e:
        raise click.ClickException(f"cannot read {file}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise click.ClickException(f"cannot read {file}: not UTF-8 text ({e.reason} at byte "
                                   f"{e.start})") from None
    return name, replay.read_lines(text)


def create_enclave(options: dict[str, Any]) -> replay.EnclaveLike:
    from sgx_emm.enclave import Enclave

    given = {k: v for k, v in options.items() if v is not None}
    try:
        return Enclave.create(**given)
    except (ValueError, OSError) as e:  # bad geometry, or the image does not fit the EPC
        raise click.UsageError(f"cannot create the enclave: {e}") from None


def make_console() -> Console:
    """Colours and live progress on a terminal; plain, wide, unwrapped text otherwise."""
    if sys.stdout.isatty():
        return Console(highlight=False)
    return Console(highlight=False, width=160, color_system=None)


def emit(console: Console, line: str | Text) -> None:
    """One output line. Into a pipe or file it is written as is: rich's layout
    machinery costs far more than the replay of the line itself."""
    if console.is_terminal:
        console.print(line, soft_wrap=True, markup=False)
    else:
        console.file.write((line.plain if isinstance(line, Text) else line) + "\n")


def progress_console(console: Console) -> Console:
    """Where progress goes: stderr when stdout is a terminal, else nowhere (`console`
    itself, which is then no terminal and draws nothing)."""
    if not console.is_terminal:
        return console
    return Console(stderr=True, highlight=False)


#: A single call running longer than this gets a line on the progress display.
LONG_CALL_SECONDS = 1.0
_OP = re.compile(r'"op"\s*:\s*"([^"]*)"')


class ReplayProgress:
    """Progress of a replay on a terminal: a bar for long replays, and for any call
    running over LONG_CALL_SECONDS the line and op it is on, with its time so far.

    Calling the object counts one finished line. A watcher thread looks at the
    running call four times a second; the replaying thread only stores which line
    started when, so the display costs the replay next to nothing.
    """

    def __init__(self, console: Console, total: int, label: str) -> None:
        self._console = console
        self._label = label
        self._on = console.is_terminal
        self._bar: Progress | None = None
        self._task: Any = None
        self._status: Progress | None = None  # a short replay's long-call line
        self._status_task: Any = None
        self._current: tuple[int, str | Mapping[str, Any], float] | None = None
        self._shown = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        if self._on and total >= PROGRESS_MIN_LINES:
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                                 transient=True)
            self._task = self._bar.add_task(label, total=total)

    def __enter__(self) -> ReplayProgress:
        if self._bar is not None:
            self._bar.start()
        if self._on:
            self._watcher = threading.Thread(target=self._watch, name="replay-progress",
                                             daemon=True)
            self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
        with self._lock:
            self._hide()
        if self._bar is not None:
            self._bar.stop()

    def __call__(self) -> None:
        """One line finished."""
        self._current = None
        if self._shown:
            with self._lock:
                self._hide()
        if self._bar is not None:
            self._bar.advance(self._task)

    def call_started(self, line: int, text: str | Mapping[str, Any]) -> None:
        if self._on:
            self._current = (line, text, time.monotonic())

    def _watch(self) -> None:
        while not self._stop.wait(0.25):
            current = self._current
            if current is None:
                continue
            line, text, began = current
            running = time.monotonic() - began
            if running < LONG_CALL_SECONDS:
                continue
            with self._lock:
                if self._current is current:
                    self._show(line, text, running)

    def _show(self, line: int, text: str | Mapping[str, Any], running: float) -> None:
        if isinstance(text, str):
            found = _OP.search(text)
            op = found.group(1) if found else "?"
        else:
            op = str(text.get("op", "?"))
        what = f"line {line}: {op} running for {running:.0f} s"
        if self._bar is not None:
            self._bar.update(self._task, description=f"{self._label} · {what}")
        else:
            if self._status is None:
                self._status = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                        console=self._console, transient=True)
                self._status_task = self._status.add_task(what, total=None)
                self._status.start()
            self._status.update(self._status_task, description=what)
        self._shown = True

    def _hide(self) -> None:
        if not self._shown:
            return
        self._shown = False
        if self._bar is not None:
            self._bar.update(self._task, description=self._label)
        elif self._status is not None:
            self._status.stop()
            self._status = None


@contextmanager
def progress_for(console: Console, total: int, label: str) -> Iterator[ReplayProgress]:
    """Progress of a replay of `total` lines, drawn on `console` when it is a
    terminal: the bar only from PROGRESS_MIN_LINES lines on, the long-call line
    always. Call the yielded object once per finished line."""
    with ReplayProgress(console, total, label) as progress:
        yield progress


@contextmanager
def map_progress(console: Console, label: str = "writing the region map"
                 ) -> Iterator[Callable[[int, int], None]]:
    """`advance(done, total)` for `render.print_map`; a bar on `console` if a terminal."""
    if not console.is_terminal:
        yield lambda done, total: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


def run_replay(file: str | None, fmt: str, strict: bool, options: dict[str, Any],
               per_call: bool, events: bool = False,
               recording: Recording | None = None) -> replay.Report:
    """Replay FILE, streaming per-call output when `per_call`; exits on --strict stops.

    With `events`, every trace event a call caused (leaf, ocall, syscall, ioctl,
    page fault, AEX, entry, handler) is shown under it, in the order it happened.
    A `recording` keeps every event, call by call, for the pictures (sgx_emm.draw).
    """
    console = make_console()
    name, lines = load_lines(file)
    enclave = create_enclave(options)
    addr = render.AddressFormat(enclave.user_base, enclave.user_end, enclave.base)
    depth = render.EntryDepth()
    write_json = fmt == "json"
    seen: list[Event] = []
    if events:
        enclave.trace.subscribe(seen.append)
    recorder = ReplayRecorder(recording.attach(enclave), lines) if recording else None

    if per_call and not write_json:
        emit(console, Text(render.call_header(), style="bold"))
        if events:
            emit(console, Text(render.event_header(), style="dim"))
    with progress_for(progress_console(console), len(lines),
                      f"replaying {name}") as advance:
        def on_result(result: replay.CallResult) -> None:
            advance()
            if recorder is not None:
                recorder(result)
            if not per_call:
                return
            if write_json:
                obj = render.call_json(result, addr)
                if events:
                    obj["events"] = [render.event_json(e, addr, depth.depth(e))
                                     for e in seen]
                emit(console, json.dumps(obj))
            else:
                emit(console, render.call_text(result, addr))
                for event in seen:
                    emit(console, render.event_text(event, addr, depth.depth(event)))
            seen.clear()

        report = replay.run(lines, strict=strict, enclave=enclave, on_result=on_result,
                            keep_results=False, on_start=advance.call_started)
    if report.stopped is not None:
        raise click.ClickException(
            f"{name}: line {report.stopped.line}: {report.stopped.error} (stopped: --strict)")
    return report


def finish(report: replay.Report) -> None:
    """Exit status 3 when the simulator raised something unexpected along the way."""
    if report.internal_errors:
        click.echo(f"error: {report.internal_errors} line(s) hit an internal error of the "
                   "simulator (see their output)", err=True)
        sys.exit(3)



"""How replay results, region maps and counts look, as text and as JSON.

Follows spec/replay-format.md (Output). The JSON shapes here are the contract;
the text forms are for people: one line per call, then the region map of both
roots as a table (committed pages drawn as a bar, metadata reserves marked) and
the totals of the trace by kind.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sgx_emm import flags as F
from sgx_emm.replay import CallResult, RegionInfo, Report
from sgx_emm.trace import Event

#: Categories of the trace in the order totals are shown, with their titles.
CATEGORY_TITLES = {
    "leaf": "leaves",
    "ocall": "ocalls",
    "syscall": "syscalls",
    "ioctl": "ioctls",
    "pf": "page faults (error code)",
    "aex": "AEX",
    "entry": "enclave entries",
    "handler": "exception handling",
}

#: Entry events every call causes (the runner's own EENTER/EEXIT); the per-call
#: text leaves them out so that what the call itself caused stands out.
ROUTINE_ENTRY_EVENTS = frozenset({"EENTER", "EEXIT"})


class AddressFormat:
    """Writes addresses as the input reads them: `u+OFF` in the user range, else hex.

    `rewrite(text)` applies the same form to the addresses inside a sentence (an
    error's reason, a crash's cause), so output shows one address form throughout.
    """

    def __init__(self, user_base: int, user_end: int) -> None:
        self.user_base = user_base
        self.user_end = user_end

    def __call__(self, addr: int | None) -> str | None:
        if addr is None:
            return None
        if self.user_base <= addr < self.user_end:
            return f"u+{addr - self.user_base:#x}"
        return f"{addr:#x}"

    def rewrite(self, text: str | None) -> str | None:
        """`text` with every hex number in the user range written `u+OFF`; a number
        already followed by its relative form in parentheses loses the duplicate."""
        if not text:
            return text

        def one(m: re.Match[str]) -> str:
            n = int(m.group(1), 16)
            if self.user_base <= n < self.user_end:
                return f"u+{n - self.user_base:#x}"
            return m.group(0)

        return _HEX_WITH_ALIAS.sub(one, text)


#: A hex number, optionally followed by the " (u+OFF)" a cause may add after it.
_HEX_WITH_ALIAS = re.compile(r"\b0x([0-9a-fA-F]+)\b(?: \(u\+0x[0-9a-fA-F]+\))?")


#: Event detail keys whose values are enclave addresses (shown as `u+OFF`).
_ADDRESS_KEYS = frozenset({"addr", "src", "dest", "target", "maddr", "tcs", "base"})


def event_fields(event: Event, addr: AddressFormat) -> dict[str, object]:
    """An event's details for people: addresses as the input writes them, numbers in hex."""
    out: dict[str, object] = {}
    for key, value in event.details.items():
        if isinstance(value, bool) or not isinstance(value, int):
            out[key] = value if isinstance(value, (str, bool, type(None))) else repr(value)
        elif key in _ADDRESS_KEYS:
            out[key] = addr(value)
        else:
            out[key] = f"{value:#x}"
    return out


def event_json(event: Event, addr: AddressFormat) -> dict[str, object]:
    return {"category": event.category, "name": event.name, **event_fields(event, addr)}


def event_text(event: Event, addr: AddressFormat) -> str:
    """One indented line per event under its call, e.g. `leaf EACCEPT addr=u+0x20000`."""
    fields = " ".join(f"{k}={v}" for k, v in event_fields(event, addr).items())
    return f"        {event.category:<8} {event.name:<22} {fields}".rstrip()


def address_format(report: Report) -> AddressFormat:
    return AddressFormat(report.enclave.user_base, report.enclave.user_end)


# --------------------------------------------------------------------------
# JSON


def committed_string(runs: Iterable[tuple[bool, int]]) -> str:
    """Run-length string of a commit bitmap: 3 committed then 5 not = "3c5u"."""
    return "".join(f"{n}{'c' if committed else 'u'}" for committed, n in runs)


def call_json(result: CallResult, fmt: AddressFormat) -> dict[str, Any]:
    """The per-call object: line, op, ret, addr (+ target, data, counts, expect)."""
    if result.error is not None:
        obj: dict[str, Any] = {"line": result.line}
        if result.op is not None:
            obj["op"] = result.op
        obj["error"] = result.error
        if result.expect is not None:
            obj["expect"] = result.expect
            obj["as_expected"] = False
        return obj
    # "addr": what an alloc returned, else the address the call acted on (what `$N`
    # names); "target" repeats the latter for calls that return nothing.
    obj = {"line": result.line, "op": result.op, "ret": result.ret,
           "addr": fmt(result.addr if result.addr is not None else result.target)}
    if result.target is not None and result.addr is None:
        obj["target"] = fmt(result.target)
    if result.thread:
        obj["thread"] = result.thread
    if result.data is not None:
        obj["data"] = result.data.hex()
    if result.reason is not None:
        obj["reason"] = fmt.rewrite(result.reason)
    if result.detail is not None:
        obj["detail"] = fmt.rewrite(result.detail)
    if result.note is not None:
        obj["note"] = result.note
    if result.expect is not None:
        obj["expect"] = result.expect
        obj["as_expected"] = result.as_expected
    obj["counts"] = result.counts
    return obj


def region_json(region: RegionInfo, fmt: AddressFormat) -> dict[str, Any]:
    return {
        "start": fmt(region.start),
        "size": f"{region.size:#x}",
        "alloc_flags": region.alloc_flags,
        "si_flags": region.si_flags,
        "committed": committed_string(region.runs),
        "meta": region.is_meta,
        "handler": region.has_handler,
    }


def layout_json(layout: Mapping[str, list[RegionInfo]],
                fmt: AddressFormat) -> dict[str, list[dict[str, Any]]]:
    return {root: [region_json(r, fmt) for r in regions] for root, regions in layout.items()}


def final_json(report: Report) -> dict[str, Any]:
    """The last object of a JSON replay: layout of both roots, counts, summary."""
    fmt = address_format(report)
    return {
        "layout": layout_json(report.layout(), fmt),
        "counts": report.counts(),
        "summary": summary(report),
        "user_base": f"{report.enclave.user_base:#x}",
    }


def summary(report: Report) -> dict[str, Any]:
    out: dict[str, Any] = {
        "calls": report.calls,
        "failed": report.failed,
        "not_run": report.errors,
        "unexpected": report.unexpected,
    }
    if report.dead is not None:
        out["dead"] = {"line": report.dead.line, "ret": report.dead.ret}
    return out


# --------------------------------------------------------------------------
# Text


def counts_text(counts: Mapping[str, Mapping[str, int]], *, routine: bool = False) -> str:
    """Compact counts: `EAUG=1 EACCEPT=1 pf:0x8006=1 alloc_ocall=1`.

    Leaf, ocall and ioctl names speak for themselves; other categories get a
    prefix. Without `routine` the runner's own EENTER/EEXIT are left out.
    """
    parts: list[str] = []
    for category in _ordered(counts):
        prefix = "" if category in ("leaf", "ocall", "ioctl", "syscall", "entry") else (
            "AEX:" if category == "aex" else f"{category}:")
        for name, n in counts[category].items():
            if category == "entry" and not routine and name in ROUTINE_ENTRY_EVENTS:
                continue
            parts.append(f"{prefix}{name}={n}")
    return " ".join(parts)


def _ordered(counts: Mapping[str, Any]) -> list[str]:
    known = [c for c in CATEGORY_TITLES if c in counts]
    return known + sorted(c for c in counts if c not in CATEGORY_TITLES)


def _data_text(data: bytes, limit: int = 32) -> str:
    if len(data) <= limit:
        return data.hex()
    return f"{data[:limit].hex()}… ({len(data)} bytes)"


def call_text(result: CallResult, fmt: AddressFormat) -> Text:
    """One line per call: number, op, address, result, what it caused."""
    op = result.op or "?"
    if result.thread:
        op = f"{op}@t{result.thread}"
    text = Text(f"{result.line:>4}  {op:<24}")
    if result.error is not None:
        style = "red" if result.bad_input or result.internal else "yellow"
        text.append(f"error: {result.error}", style=style)
        if result.expect is not None:
            text.append(f"  UNEXPECTED (expected {result.expect}, did not run)",
                        style="bold red")
        if result.note:
            text.append(f"  # {result.note}", style="dim")
        return text
    where = f"→ {fmt(result.addr)}" if result.addr is not None else fmt(result.target) or ""
    text.append(f"{where:<22} ")
    ret = str(result.ret)
    good = ret in ("0", "CONTINUE_EXECUTION")
    text.append(f"{ret:<18}", style="green" if good else "bold red"
                if ret in ("ABORT", "CRASH") else "yellow")
    caused = counts_text(result.counts)
    if caused:
        text.append(" " + caused, style="dim")
    if result.data is not None:
        text.append(f"  data {_data_text(result.data)}")
    if result.as_expected is False:
        text.append(f"  UNEXPECTED (expected {result.expect})", style="bold red")
    why = result.reason or result.detail
    if why:
        text.append(f"  ({fmt.rewrite(why)})", style="red")
    if result.note:
        text.append(f"  # {result.note}", style="dim")
    text.rstrip()
    return text


def call_header() -> str:
    """The column heads above the per-call lines."""
    return f"{'line':>4}  {'op':<24}{'address':<22} {'result':<18} caused"


COMMIT_MODES = {
    F.RESERVE: "RESERVE",
    F.COMMIT_NOW: "COMMIT_NOW",
    F.COMMIT_ON_DEMAND: "ON_DEMAND",
}
PAGE_TYPES = {int(v): k.removeprefix("PAGE_TYPE_") for k, v in F.PageType.__members__.items()}


def commit_mode(alloc_flags: int) -> str:
    """RESERVE / COMMIT_NOW / ON_DEMAND; "static" for a region mm_init_ema described
    without a commit mode (pages the loader added before EINIT)."""
    mode = alloc_flags & (F.RESERVE | F.COMMIT_NOW | F.COMMIT_ON_DEMAND)
    if not mode:
        return "static"
    return COMMIT_MODES.get(F.AllocFlags(mode), f"{mode:#x}")


def prot_text(si_flags: int) -> str:
    return "".join(c if si_flags & bit else "-" for c, bit in (("r", 1), ("w", 2), ("x", 4)))


def type_text(si_flags: int) -> str:
    t = si_flags & F.PAGE_TYPE_MASK
    return PAGE_TYPES.get(t, f"{t:#x}") if t else "-"


def flags_text(region: RegionInfo) -> str:
    names = [name for name, bit in (("GROWSDOWN", F.GROWSDOWN), ("GROWSUP", F.GROWSUP),
                                     ("FIXED", F.FIXED), ("SYSTEM", F.SYSTEM))
             if region.alloc_flags & bit]
    align = (region.alloc_flags & F.ALIGNMENT_MASK) >> F.ALIGNMENT_SHIFT
    if align:
        names.append(f"ALIGNED({align})")
    if region.has_handler:
        names.append("handler")
    if region.is_meta:
        names.append("meta")
    return " ".join(names)


def commit_bar(runs: Iterable[tuple[bool, int]], pages: int, width: int = 16) -> str:
    """Committed pages as a bar of up to `width` cells: █ all, ▒ some, · none.

    Walks the runs and the cells together: O(runs + width), whatever the size.
    """
    if pages <= 0:
        return ""
    cells = min(width, pages)
    # committed pages per cell; cell i covers [i*pages//cells, (i+1)*pages//cells)
    filled = [0] * cells
    page = 0
    for committed, n in runs:
        start, end = page, page + n
        page = end
        if not committed:
            continue
        cell = start * cells // pages
        while cell < cells and cell * pages // cells < end:
            hi = (cell + 1) * pages // cells
            filled[cell] += max(0, min(hi, end) - max(cell * pages // cells, start))
            cell += 1
    out = []
    for i, got in enumerate(filled):
        span = (i + 1) * pages // cells - i * pages // cells
        out.append("█" if got == span else "▒" if got else "·")
    return "".join(out)


#: Alike neighbours (same size, mode, prot, type, flags and commit pattern, each
#: starting where the last ends) from this many on share one row of the text map.
FOLD_MIN = 3
#: Maps with more rows than this are written as plain columns even on a terminal
#: (a rich table lays every cell out twice), with a progress bar on stderr.
RICH_MAP_MAX_ROWS = 1000

MAP_COLUMNS = ("root", "start", "size", "mode", "prot", "type", "committed", "flags")

#: One map row: its cells in MAP_COLUMNS order and a style (metadata reserves).
MapRow = tuple[tuple[str, ...], str | None]


def _alike(a: RegionInfo, b: RegionInfo) -> bool:
    return (b.start == a.start + a.size and b.size == a.size
            and b.alloc_flags == a.alloc_flags and b.si_flags == a.si_flags
            and b.runs == a.runs and b.is_meta == a.is_meta
            and b.has_handler == a.has_handler)


def _repeat_runs(runs: tuple[tuple[bool, int], ...],
                 count: int) -> list[tuple[bool, int]]:
    """`runs` laid end to end `count` times, touching runs of one state merged."""
    out: list[tuple[bool, int]] = []
    if len(runs) == 1:  # the common case: all or none, O(1)
        committed, n = runs[0]
        return [(committed, n * count)]
    for _ in range(count):
        for committed, n in runs:
            if out and out[-1][0] == committed:
                out[-1] = (committed, out[-1][1] + n)
            else:
                out.append((committed, n))
    return out


def _row(root: str, region: RegionInfo, fmt: AddressFormat, count: int) -> MapRow:
    pages = region.pages * count
    runs = _repeat_runs(region.runs, count) if count > 1 else region.runs
    committed = region.committed_pages * count
    flags = flags_text(region)
    if count > 1:
        flags = f"{count} × {region.size:#x}" + (f" {flags}" if flags else "")
    cells = (root, fmt(region.start) or "", f"{region.size * count:#x}",
             commit_mode(region.alloc_flags), prot_text(region.si_flags),
             type_text(region.si_flags), f"{commit_bar(runs, pages)} {committed}/{pages}",
             flags)
    return cells, "cyan" if region.is_meta else None


def map_rows(layout: Mapping[str, list[RegionInfo]], fmt: AddressFormat, *,
             full: bool = False) -> list[MapRow]:
    """The map's rows: one per region with `full`, else runs of at least FOLD_MIN
    alike neighbours folded into one row whose size and committed pages are the
    run's totals and whose flags start with `N × SIZE`. O(regions)."""
    rows: list[MapRow] = []
    for root, regions in layout.items():
        i, n = 0, len(regions)
        while i < n:
            j = i + 1
            if not full:
                while j < n and _alike(regions[j - 1], regions[j]):
                    j += 1
            if j - i >= FOLD_MIN:
                rows.append(_row(root, regions[i], fmt, j - i))
            else:
                rows.extend(_row(root, regions[k], fmt, 1) for k in range(i, j))
            i = j
    return rows


def map_table(layout: Mapping[str, list[RegionInfo]], fmt: AddressFormat,
              title: str = "region map", *, full: bool = False) -> Table:
    """Both roots as one table: address, size, mode, prot, type, committed, flags."""
    return _rows_table(map_rows(layout, fmt, full=full), title)


def _rows_table(rows: list[MapRow], title: str) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in MAP_COLUMNS:
        table.add_column(name, justify="right" if name == "size" else "left",
                         no_wrap=name != "flags")
    for cells, style in rows:
        table.add_row(*cells, style=style)
    return table


def map_lines(rows: list[MapRow], title: str = "region map") -> Iterable[str]:
    """The map as plain text lines (the title, heads, a rule, then one line per row):
    what a file or pipe gets, at a cost linear in the rows."""
    widths = [len(name) for name in MAP_COLUMNS]
    for cells, _ in rows:
        for k, cell in enumerate(cells):
            if len(cell) > widths[k]:
                widths[k] = len(cell)
    last = len(MAP_COLUMNS) - 1

    def line(cells: Iterable[str]) -> str:
        parts = [cell.rjust(widths[k]) if MAP_COLUMNS[k] == "size" else
                 cell if k == last else cell.ljust(widths[k])
                 for k, cell in enumerate(cells)]
        return " ".join(parts).rstrip()

    yield title
    yield line(MAP_COLUMNS)
    yield " ".join("─" * w for w in widths)
    for cells, _ in rows:
        yield line(cells)


def print_map(console: Console, layout: Mapping[str, list[RegionInfo]], fmt: AddressFormat,
              *, full: bool = False, title: str = "region map",
              advance: Callable[[int, int], None] | None = None) -> None:
    """The region map: a rich table on a terminal when it is small, else plain lines.

    `advance(done, total)` is told the lines written so far, for a progress display.
    """
    rows = map_rows(layout, fmt, full=full)
    if console.is_terminal and len(rows) <= RICH_MAP_MAX_ROWS:
        console.print(_rows_table(rows, title))
        return
    out = console.file
    total = len(rows) + 3
    for done, text in enumerate(map_lines(rows, title), 1):
        out.write(text + "\n")
        if advance is not None and (done % 1000 == 0 or done == total):
            advance(done, total)


def counts_table(counts: Mapping[str, Mapping[str, int]], title: str = "totals") -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("kind", no_wrap=True)
    table.add_column("total", justify="right")
    table.add_column("by name")
    for category in _ordered(counts):
        names = counts[category]
        table.add_row(CATEGORY_TITLES.get(category, category), str(sum(names.values())),
                      "  ".join(f"{name} {n}" for name, n in names.items()))
    return table


def summary_text(report: Report) -> str:
    s = summary(report)
    parts = [f"{s['calls']} calls", f"{s['failed']} failed", f"{s['not_run']} not run"]
    if s["unexpected"]:
        parts.append(f"{s['unexpected']} not as expected")
    if report.dead is not None:
        parts.append(f"enclave {'aborted' if report.dead.ret == 'ABORT' else 'crashed'} "
                     f"at line {report.dead.line}")
    return ", ".join(parts)


def print_final_text(console: Console, report: Report, *, full_map: bool = False,
                     layout: Mapping[str, list[RegionInfo]] | None = None,
                     advance: Callable[[int, int], None] | None = None) -> None:
    """After the per-call lines: region map of both roots, totals, summary.

    Runs of alike regions share a row unless `full_map`; `layout` saves taking a
    second snapshot; `advance` as for `print_map`.
    """
    fmt = address_format(report)
    console.print()
    print_map(console, report.layout() if layout is None else layout, fmt,
              full=full_map, advance=advance)
    console.print()
    console.print(counts_table(report.counts()))
    console.print()
    console.print(summary_text(report), highlight=False)

"""How replay results, region maps and counts look, as text and as JSON.

The JSON shapes here are the contract;
the text forms are for people: one line per call, then the region map of both
roots as a table (committed pages drawn as a bar, metadata reserves marked) and
the totals of the trace by kind.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sgx_emm import flags as F
from sgx_emm.replay import CallResult, RegionInfo, Report
from sgx_emm.replay.results import committed_per_cell
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

    def __init__(self, user_base: int, user_end: int, base: int | None = None) -> None:
        self.user_base = user_base
        self.user_end = user_end
        #: the enclave base: driver offsets (ioctls) are shown as addresses from it
        self.base = base

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
#: Keys holding SECINFO.FLAGS-shaped words (prot | state | type << 8).
_SECINFO_KEYS = frozenset({"secinfo", "flags_from", "flags_to"})
#: Keys holding plain R/W/X permissions.
_PROT_KEYS = frozenset({"prot", "permissions"})
_MMAP_FLAGS = (("MAP_SHARED", 0x01), ("MAP_PRIVATE", 0x02), ("MAP_FIXED", 0x10),
               ("MAP_ANONYMOUS", 0x20), ("MAP_POPULATE", 0x8000))


def _mmap_flags_text(flags: int) -> str:
    names = [n for n, bit in _MMAP_FLAGS if flags & bit]
    rest = flags & ~sum(bit for _, bit in _MMAP_FLAGS)
    if rest:
        names.append(f"{rest:#x}")
    return f"{'|'.join(names) or '0'} ({flags:#x})"


def _decoded(event: Event, key: str, value: int, addr: AddressFormat,
             decode: bool = True) -> tuple[str, str]:
    """(key, text) of one integer detail: addresses in the input's form, flag words
    decoded with their raw value (unless not `decode`), other numbers in hex."""
    if key in _ADDRESS_KEYS:
        return key, addr(value) or ""
    if key == "offset" and addr.base is not None:   # driver offsets: one address form
        return "addr", addr(addr.base + value) or ""
    if not decode:
        return key, f"{value:#x}"
    if key in _SECINFO_KEYS:
        return key, F.secinfo_text(value)
    if key in _PROT_KEYS:
        return key, F.prot_text(value)
    if key == "flags":
        if event.category == "syscall":
            return key, _mmap_flags_text(value)
        return key, F.alloc_flags_text(value)
    if key == "page_type":
        shifted = value if value > 0xFF else value << 8
        name = F.PAGE_TYPE_SHORT.get(shifted >> 8, f"{value:#x}")
        return key, f"{name} ({value:#x})"
    return key, f"{value:#x}"


def event_fields(event: Event, addr: AddressFormat, decode: bool = True) -> dict[str, object]:
    """An event's details for people: addresses as the input writes them (driver
    offsets too), SECINFO / alloc flags / prot decoded (`REG|RW|PENDING (0x20b)`)
    unless not `decode` (JSON keeps the raw hex), other numbers in hex."""
    out: dict[str, object] = {}
    for key, value in event.details.items():
        if isinstance(value, bool) or not isinstance(value, int):
            out[key] = value if isinstance(value, (str, bool, type(None))) else repr(value)
        else:
            name, text = _decoded(event, key, value, addr, decode)
            out[name] = text
    return out


def event_json(event: Event, addr: AddressFormat, depth: int | None = None) -> dict[str, object]:
    """An event as a JSON object: category, name, depth (when known), details with raw hex values.
    """
    obj: dict[str, object] = {"category": event.category, "name": event.name}
    if depth is not None:
        obj["depth"] = depth
    obj.update(event_fields(event, addr, decode=False))
    return obj


def event_text(event: Event, addr: AddressFormat, depth: int = 0) -> str:
    """One line per event under its call, indented two spaces per enclave entry it
    runs in, e.g. `leaf     EACCEPT   addr=u+0x20000 secinfo=REG|RW|PENDING (0x20b)`."""
    fields = " ".join(f"{k}={v}" for k, v in event_fields(event, addr).items())
    indent = " " * (8 + 2 * depth)
    return f"{indent}{event.category:<8} {event.name:<14} {fields}".rstrip()


class EntryDepth:
    """How many enclave entries are open at each event of a stream, for indenting.

    EENTER opens one (the events after it are inside), EEXIT closes one; AEX and
    ERESUME leave the count alone, so the kernel's work for a fault stays under
    the entry it interrupted and a nested entry (the exception handler's) shows
    one level deeper. `depth(event)` is the level to show the event at.
    """

    def __init__(self) -> None:
        self.open = 0
        self._entering = False

    def depth(self, event: Event) -> int:
        """The level to show `event` at (and the count of open entries after it)."""
        entering, self._entering = self._entering, False
        if entering and event.category == "pf":
            # the EENTER itself faulted (the kernel fixes its TCS/SSA page and the
            # vDSO retries it, with no AEX in between): it never entered
            self.open = max(0, self.open - 1)
        if event.category != "entry":
            return self.open
        if event.name == "EENTER":
            shown = self.open
            self.open += 1
            self._entering = True
            return shown
        if event.name == "EEXIT":
            self.open = max(0, self.open - 1)
            return self.open
        return max(0, self.open - 1)


def event_header() -> str:
    """The column heads above the event lines of --events."""
    return f"{'':8}{'kind':<8} {'event':<14} details"


def address_format(report: Report) -> AddressFormat:
    """The address form of a report's enclave."""
    return AddressFormat(report.enclave.user_base, report.enclave.user_end,
                         report.enclave.base)


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
    """One region of the final layout as JSON."""
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
    """Both roots' regions as JSON."""
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
    """The summary counts of a report (calls, failed, not run, unexpected, dead)."""
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
    """`rwx`-style permissions of a region."""
    return "".join(c if si_flags & bit else "-" for c, bit in (("r", 1), ("w", 2), ("x", 4)))


def type_text(si_flags: int) -> str:
    """The page type of a region (`REG`, `TCS`, ...), `-` for none."""
    t = si_flags & F.PAGE_TYPE_MASK
    return PAGE_TYPES.get(t, f"{t:#x}") if t else "-"


def flags_text(region: RegionInfo) -> str:
    """Placement flags, alignment, `handler` and `meta` of a region."""
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
    return "".join("█" if got == span else "▒" if got else "·"
                   for got, span in committed_per_cell(runs, pages, cells))


#: The map's columns besides the bar, in order, with the cells of one region.
MAP_COLUMNS = ("root", "start", "size", "mode", "prot", "type", "pages", "flags")
#: Widest and narrowest commit bar; below the narrowest the bar is left out.
BAR_MAX, BAR_MIN = 16, 4
#: Room the flags column keeps before the bar shrinks (longer flags then wrap).
FLAGS_MIN = 12


def region_cells(root: str, region: RegionInfo, fmt: AddressFormat) -> dict[str, str]:
    """One region's map cells by column (the bar apart): extend here for new columns."""
    return {
        "root": root,
        "start": fmt(region.start) or "",
        "size": f"{region.size:#x}",
        "mode": commit_mode(region.alloc_flags),
        "prot": prot_text(region.si_flags),
        "type": type_text(region.si_flags),
        "pages": f"{region.committed_pages}/{region.pages}",
        "flags": flags_text(region),
    }


def _build_map(rows: list[dict[str, str]], regions: list[RegionInfo],
               styles: list[str | None], title: str, bar: int,
               flags_width: int | None) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)
    for column in MAP_COLUMNS:
        if column == "pages" and bar:
            table.add_column("committed", no_wrap=True)
        table.add_column("" if column == "pages" and bar else column,
                         justify="right" if column in ("size", "pages") else "left",
                         no_wrap=column != "flags", overflow="fold",
                         max_width=flags_width if column == "flags" else None)
    for cells, style, region in zip(rows, styles, regions, strict=True):
        values = []
        for column in MAP_COLUMNS:
            if column == "pages" and bar:
                values.append(commit_bar(region.runs, region.pages, bar))
            values.append(cells[column])
        table.add_row(*values, style=style)
    return table


#: Alike neighbours (same size, mode, prot, type, flags and commit pattern, each
#: starting where the last ends) from this many on share one row of the text map.
FOLD_MIN = 3
#: Maps with more rows than this are written as plain columns even on a terminal
#: (a rich table lays every cell out more than once), with a progress bar on stderr.
RICH_MAP_MAX_ROWS = 1000


def _alike(a: RegionInfo, b: RegionInfo) -> bool:
    return (b.start == a.start + a.size and b.size == a.size
            and b.alloc_flags == a.alloc_flags and b.si_flags == a.si_flags
            and b.runs == a.runs and b.is_meta == a.is_meta
            and b.has_handler == a.has_handler)


def _repeat_runs(runs: tuple[tuple[bool, int], ...],
                 count: int) -> tuple[tuple[bool, int], ...]:
    """`runs` laid end to end `count` times, touching runs of one state merged."""
    if len(runs) == 1:  # the common case: all or none, O(1)
        committed, n = runs[0]
        return ((committed, n * count),)
    out: list[tuple[bool, int]] = []
    for _ in range(count):
        for committed, n in runs:
            if out and out[-1][0] == committed:
                out[-1] = (committed, out[-1][1] + n)
            else:
                out.append((committed, n))
    return tuple(out)


def map_rows(layout: Mapping[str, list[RegionInfo]], fmt: AddressFormat, *,
             full: bool = False
             ) -> tuple[list[dict[str, str]], list[str | None], list[RegionInfo]]:
    """(cells, styles, regions) of the map's rows. With `full` one row per region;
    else runs of at least FOLD_MIN alike neighbours share a row: its region spans
    the run (size and committed pages are totals) and its flags start with
    `N × SIZE`. O(regions)."""
    rows: list[dict[str, str]] = []
    styles: list[str | None] = []
    regions: list[RegionInfo] = []
    for root, root_regions in layout.items():
        i, n = 0, len(root_regions)
        while i < n:
            j = i + 1
            if not full:
                while j < n and _alike(root_regions[j - 1], root_regions[j]):
                    j += 1
            if j - i >= FOLD_MIN:
                first, count = root_regions[i], j - i
                region = RegionInfo(first.start, first.size * count, first.alloc_flags,
                                    first.si_flags, _repeat_runs(first.runs, count),
                                    first.is_meta, first.has_handler)
                cells = region_cells(root, region, fmt)
                flags = cells["flags"]
                cells["flags"] = f"{count} × {first.size:#x}" + (f" {flags}" if flags else "")
                picked = [(cells, region)]
            else:
                picked = [(region_cells(root, r, fmt), r) for r in root_regions[i:j]]
            for cells, region in picked:
                rows.append(cells)
                styles.append("cyan" if region.is_meta else None)
                regions.append(region)
            i = j
    return rows, styles, regions


def map_lines(layout: Mapping[str, list[RegionInfo]], fmt: AddressFormat, *,
              full: bool = False, title: str = "region map") -> Iterator[str]:
    """The map as plain aligned lines (title, heads, a rule, one line per row), the
    columns of `map_table` with a full-width bar: what a file or pipe gets, at a
    cost linear in the rows."""
    rows, _, regions = map_rows(layout, fmt, full=full)
    heads = [h for column in MAP_COLUMNS
             for h in (("committed", "") if column == "pages" else (column,))]
    table = [[cell for column in MAP_COLUMNS
              for cell in ((commit_bar(region.runs, region.pages, BAR_MAX), cells[column])
                           if column == "pages" else (cells[column],))]
             for cells, region in zip(rows, regions, strict=True)]
    widths = [len(h) for h in heads]
    for line_cells in table:
        for k, cell in enumerate(line_cells):
            if len(cell) > widths[k]:
                widths[k] = len(cell)
    right = {k for k, h in enumerate(heads) if h in ("size", "")}
    last = len(heads) - 1

    def line(cells: list[str]) -> str:
        return " ".join(cell.rjust(widths[k]) if k in right else
                        cell if k == last else cell.ljust(widths[k])
                        for k, cell in enumerate(cells)).rstrip()

    yield title
    yield line(heads)
    yield " ".join("─" * w for w in widths)
    for line_cells in table:
        yield line(line_cells)


def print_map(console: Console, layout: Mapping[str, list[RegionInfo]], fmt: AddressFormat,
              *, full: bool = False, title: str = "region map",
              advance: Callable[[int, int], None] | None = None) -> None:
    """The region map: a table fitted to the terminal when it is small, else plain
    lines. `advance(done, total)` is told the lines written, for a progress display."""
    if console.is_terminal:
        rows = map_rows(layout, fmt, full=full)[0]
        if len(rows) <= RICH_MAP_MAX_ROWS:
            console.print(map_table(layout, fmt, title, width=console.width, full=full))
            return
    lines = list(map_lines(layout, fmt, full=full, title=title))
    out = console.file
    total = len(lines)
    for done, text in enumerate(lines, 1):
        out.write(text + "\n")
        if advance is not None and (done % 1000 == 0 or done == total):
            advance(done, total)


def _table_width(table: Table) -> int:
    return Console(width=100_000, color_system=None).measure(table).maximum


def map_table(layout: Mapping[str, list[RegionInfo]], fmt: AddressFormat,
              title: str = "region map", width: int | None = None, *,
              full: bool = True) -> Table:
    """Both roots as one table: address, size, mode, prot, type, committed, flags.

    Without `full`, runs of alike neighbours share a row (see `map_rows`).
    With `width` (the terminal's) the table fits it: the commit bar narrows first
    (16 cells down to 4, then none), then long flags wrap; root, start, size,
    mode, prot, type and the page counts always keep their full width.
    """
    rows, styles, regions = map_rows(layout, fmt, full=full)
    if width is None:
        return _build_map(rows, regions, styles, title, BAR_MAX, None)
    for bar in (BAR_MAX, 12, 8, BAR_MIN, 0):
        table = _build_map(rows, regions, styles, title, bar, None)
        if _table_width(table) <= width:
            return table
    # still too wide: flags wrap inside what is left (at least FLAGS_MIN)
    without = _table_width(_build_map([{**r, "flags": ""} for r in rows], regions, styles,
                                      title, 0, None))
    return _build_map(rows, regions, styles, title, 0, max(FLAGS_MIN, width - without))


def print_block(console: Console, renderable: Any) -> None:
    """Print a table: as is on a terminal; into a pipe, without the padding rich adds
    to the end of every line."""
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    for line in captured.get().splitlines():
        console.file.write(line.rstrip() + "\n")


def counts_table(counts: Mapping[str, Mapping[str, int]], title: str = "totals") -> Table:
    """The run's totals by kind as a table."""
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
    """The summary as one line of text."""
    s = summary(report)
    parts = [f"{s['calls']} calls", f"{s['failed']} failed", f"{s['not_run']} not run"]
    if s["unexpected"]:
        parts.append(f"{s['unexpected']} not as expected")
    if report.dead is not None:
        parts.append(f"enclave {'aborted' if report.dead.ret == 'ABORT' else 'crashed'} "
                     f"at line {report.dead.line}")
    return ", ".join(parts)


def _width(console: Console) -> int | None:
    """The width a table must fit: the terminal's; unlimited into a pipe."""
    return console.width if console.is_terminal else None


def print_final_text(console: Console, report: Report, *, full_map: bool = False,
                     advance: Callable[[int, int], None] | None = None) -> None:
    """After the per-call lines: region map of both roots, totals, summary.

    Runs of alike regions share a map row unless `full_map`; `advance` as for
    `print_map`.
    """
    fmt = address_format(report)
    console.print()
    print_map(console, report.layout(), fmt, full=full_map, advance=advance)
    console.print()
    print_block(console, counts_table(report.counts()))
    console.print()
    console.print(summary_text(report), highlight=False)

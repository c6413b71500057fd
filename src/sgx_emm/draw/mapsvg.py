"""The region map as a picture: both roots along the ELRANGE, and EPC use over time.

An ELRANGE of 64 GiB holding 4 KiB regions cannot be drawn to scale, so the
axis is segmented: every region and every free gap between regions gets a
width that grows with the logarithm of its size (gaps compressed further and
hatched), so a one-page guard and a 32 GiB heap are both visible and both in
address order. Regions are coloured by commit mode, outlined by page type, and
labelled with their permissions; committed pages are shaded inside each region
to scale; the manager's metadata reserves and PROT_NONE guards are marked.

Elements carry classes for tools and tests: `region` (data-root, data-start,
data-size, data-mode), `gap`, `committed`, `meta`, `guard`, `epc-plot`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from sgx_emm.draw.recording import Recording
from sgx_emm.draw.svg import drawsvg
from sgx_emm.replay import RegionInfo, Report
from sgx_emm.replay.results import committed_per_cell
from sgx_emm.trace import LEAF

PAGE = 0x1000
WIDTH = 1160
LEFT = 20
BAR_Y = 80
BAR_H = 56
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"

MODE_FILL = {"RESERVE": "#cfd8dc", "COMMIT_NOW": "#90caf9", "ON_DEMAND": "#a5d6a7",
             "static": "#ce93d8"}
COMMITTED_FILL = "#263238"
TYPE_STROKE = {"REG": "#37474f", "TCS": "#ef6c00", "TRIM": "#c62828", "SS_FIRST": "#6a1b9a",
               "SS_REST": "#6a1b9a"}
META_STROKE = "#00838f"
#: A stripe along the top of each region says its permissions at a glance.
PROT_STRIPE = {"r--": "#43a047", "rw-": "#1e88e5", "r-x": "#fb8c00", "rwx": "#e53935",
               "---": "#9e9e9e"}
ROOT_COLOURS = {"rts": "#6a1b9a", "user": "#1565c0"}


def human_size(n: int) -> str:
    """4 KiB, 32 GiB, 31.8 GiB: the largest unit that fits, one decimal at most."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            value = n / (1 << shift)
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"


def _mode(alloc_flags: int) -> str:
    mode = alloc_flags & 0x7
    return {1: "RESERVE", 2: "COMMIT_NOW", 4: "ON_DEMAND"}.get(mode, "static" if not mode
                                                               else f"{mode:#x}")


def _ptype(si_flags: int) -> str:
    return {1: "TCS", 2: "REG", 4: "TRIM", 5: "SS_FIRST", 6: "SS_REST"}.get(
        (si_flags >> 8) & 0xFF, "REG")


def _prot(si_flags: int) -> str:
    return "".join(c if si_flags & bit else "-" for c, bit in (("r", 1), ("w", 2), ("x", 4)))


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of the axis: a region of a root, or a free gap."""

    start: int
    size: int
    root: str | None = None
    region: RegionInfo | None = None


def segments(layout: Mapping[str, Sequence[RegionInfo]], base: int, size: int) -> list[Segment]:
    """Regions of both roots in address order, with the free gaps between them."""
    regions = sorted(((r.start, root, r) for root, rs in layout.items() for r in rs),
                     key=lambda t: t[0])
    out: list[Segment] = []
    at = base
    for start, root, region in regions:
        if start > at:
            out.append(Segment(at, start - at))
        out.append(Segment(start, region.size, root, region))
        at = max(at, start + region.size)
    if at < base + size:
        out.append(Segment(at, base + size - at))
    return out


def _weights(segs: Sequence[Segment]) -> list[float]:
    """Log-scaled widths: a page counts 1, a region doubling in size adds 0.6;
    gaps are compressed to half that."""
    out = []
    for s in segs:
        w = 1.0 + 0.6 * math.log2(max(s.size // PAGE, 1))
        out.append(w if s.region is not None else 0.5 * w)
    return out


def _committed_cells(runs: Iterable[tuple[bool, int]], pages: int,
                     cells: int) -> list[float]:
    """Fraction of committed pages in each of `cells` equal columns; O(runs + cells)."""
    return [got / span if span else 0.0
            for got, span in committed_per_cell(runs, pages, cells)]


def map_svg(layout: Mapping[str, Sequence[RegionInfo]], *, base: int, size: int,
            user_base: int, user_end: int, title: str | None = None,
            epc: Sequence[int] | None = None, epc_capacity: int | None = None,
            id_prefix: str = "map") -> str:
    """SVG text of the map; `epc` (pages in use after each call) adds a plot."""
    d = drawsvg()
    segs = segments(layout, base, size)
    weights = _weights(segs)
    scale = (WIDTH - 2 * LEFT) / sum(weights)
    plot_h = 190 if epc else 0
    height = BAR_Y + BAR_H + 190 + plot_h
    dw = d.Drawing(WIDTH, height, id_prefix=id_prefix)
    dw.append(d.Rectangle(0, 0, WIDTH, height, fill="white"))
    hatch = d.Pattern(6, 6, patternUnits="userSpaceOnUse", patternTransform="rotate(45)")
    hatch.append(d.Line(0, 0, 0, 6, stroke="#b0bec5", stroke_width=2))
    guard = d.Pattern(6, 6, patternUnits="userSpaceOnUse", patternTransform="rotate(-45)")
    guard.append(d.Rectangle(0, 0, 6, 6, fill="#eceff1"))
    guard.append(d.Line(0, 0, 0, 6, stroke="#e53935", stroke_width=1.5))
    label = title or (f"ELRANGE {base:#x} + {human_size(size)}: regions of both roots "
                      "(widths log-scaled)")
    dw.append(d.Text(label, 15, LEFT, 24, font_family=FONT, font_weight="bold"))

    def addr_text(a: int) -> str:
        return f"u+{a - user_base:#x}" if user_base <= a < user_end else f"{a:#x}"

    xs: list[tuple[float, float]] = []
    x = float(LEFT)
    for w in weights:
        xs.append((x, w * scale))
        x += w * scale

    def x_of(addr: int) -> float:
        for seg, (sx, sw) in zip(segs, xs, strict=True):
            if seg.start <= addr < seg.start + seg.size:
                return sx + sw * (addr - seg.start) / seg.size
        return float(LEFT) if addr <= base else WIDTH - LEFT

    # the two roots as brackets above the bar
    for name, lo, hi in (("rts root (runtime)", base, user_base), ("user root", user_base,
                                                                    user_end)):
        x0, x1 = x_of(lo), x_of(hi) if hi < base + size else WIDTH - LEFT
        colour = ROOT_COLOURS["user" if name.startswith("user") else "rts"]
        g = d.Group(class_="root", data_name=name.split()[0])
        g.append(d.Line(x0, BAR_Y - 14, x1, BAR_Y - 14, stroke=colour, stroke_width=2))
        g.append(d.Line(x0, BAR_Y - 18, x0, BAR_Y - 8, stroke=colour, stroke_width=2))
        g.append(d.Line(x1, BAR_Y - 18, x1, BAR_Y - 8, stroke=colour, stroke_width=2))
        g.append(d.Text(f"{name}: {addr_text(lo)} .. {human_size(hi - lo)}", 11, x0 + 4,
                        BAR_Y - 20, font_family=FONT, fill=colour))
        dw.append(g)

    labelled = 0
    last_label = -1e9          # rotated labels closer than a line height would overlap
    for seg, (sx, sw) in zip(segs, xs, strict=True):
        r = seg.region
        if r is None:
            g = d.Group(class_="gap", data_start=f"{seg.start:#x}", data_size=f"{seg.size:#x}")
            g.append(d.Rectangle(sx, BAR_Y + 14, sw, BAR_H - 28, fill=hatch, stroke="none"))
            if sw > 70:
                g.append(d.Text(f"free {human_size(seg.size)}", 10, sx + sw / 2,
                                BAR_Y + BAR_H / 2 + 4, text_anchor="middle", font_family=FONT,
                                fill="#546e7a"))
            dw.append(g)
            continue
        mode = _mode(r.alloc_flags)
        ptype = _ptype(r.si_flags)
        prot = _prot(r.si_flags)
        classes = ["region"]
        if r.is_meta:
            classes.append("meta")
        is_guard = prot == "---" and not r.is_meta
        if is_guard:
            classes.append("guard")
        g = d.Group(class_=" ".join(classes), data_root=seg.root or "",
                    data_start=addr_text(r.start), data_size=f"{r.size:#x}", data_mode=mode,
                    data_prot=prot, data_type=ptype,
                    data_committed=str(r.committed_pages))
        g.append(d.Title(f"{seg.root} {addr_text(r.start)} {human_size(r.size)} {mode} "
                         f"{prot} {ptype} committed {r.committed_pages}/{r.pages}"
                         + (" metadata reserve" if r.is_meta else "")
                         + (" guard" if is_guard else "")))
        fill = guard if is_guard else MODE_FILL.get(mode, "#eeeeee")
        stroke = META_STROKE if r.is_meta else TYPE_STROKE.get(ptype, "#37474f")
        g.append(d.Rectangle(sx + 0.5, BAR_Y, max(sw - 1, 1), BAR_H, fill=fill, stroke=stroke,
                             stroke_width=3 if r.is_meta or ptype != "REG" else 1))
        g.append(d.Rectangle(sx + 0.5, BAR_Y, max(sw - 1, 1), 5,
                             fill=PROT_STRIPE.get(prot, "#8d6e63"), class_="prot"))
        # committed pages, to scale inside the region
        cells = max(1, min(int(sw), r.pages))
        fractions = _committed_cells(r.runs, r.pages, cells)
        cw = max(sw - 1, 1) / cells
        i = 0
        while i < cells:
            f = fractions[i]
            j = i
            while j + 1 < cells and fractions[j + 1] == f:
                j += 1
            if f > 0:
                g.append(d.Rectangle(sx + 0.5 + i * cw, BAR_Y + BAR_H - 16, (j - i + 1) * cw, 16,
                                     fill=COMMITTED_FILL, fill_opacity=0.25 + 0.6 * f,
                                     class_="committed"))
            i = j + 1
        if sw > 26:
            g.append(d.Text(prot, 11, sx + sw / 2, BAR_Y + 22, text_anchor="middle",
                            font_family="monospace"))
        if r.is_meta and sw > 26:
            g.append(d.Text("meta", 10, sx + sw / 2, BAR_Y + 35, text_anchor="middle",
                            font_family=FONT, fill=META_STROKE))
        if labelled < 80 and sx + sw / 2 - last_label >= 13:
            lx, ly = sx + sw / 2, BAR_Y + BAR_H + 8
            last_label = lx
            g.append(d.Text(f"{addr_text(r.start)} {human_size(r.size)}", 10, lx, ly,
                            font_family=FONT, transform=f"rotate(40 {lx} {ly})"))
            labelled += 1
        dw.append(g)
    _legend(d, dw, BAR_Y + BAR_H + 120, guard, hatch)
    if epc:
        _epc_plot(d, dw, epc, epc_capacity, height - plot_h + 10, plot_h - 30)
    return str(dw.as_svg())


def _legend(d: ModuleType, dw: Any, y: float, guard: Any, hatch: Any) -> None:
    items: list[tuple[str, object, str]] = [(f"mode {k}", v, "#37474f")
                                            for k, v in MODE_FILL.items()]
    items += [(f"prot {k}", v, v) for k, v in PROT_STRIPE.items()]
    items += [("committed pages", COMMITTED_FILL, COMMITTED_FILL),
              ("metadata reserve", "white", META_STROKE),
              ("TCS page type", "white", TYPE_STROKE["TCS"]),
              ("guard (PROT_NONE)", guard, "#e53935"),
              ("free (compressed)", hatch, "#b0bec5")]
    g = d.Group(class_="legend")
    x = float(LEFT)
    for name, fill, stroke in items:
        width = 30 + 7.2 * len(name)
        if x + width > WIDTH - LEFT:        # wrap to a second row
            x, y = float(LEFT), y + 22
        g.append(d.Rectangle(x, y, 14, 14, fill=fill, stroke=stroke, stroke_width=2))
        g.append(d.Text(name, 11, x + 18, y + 11, font_family=FONT))
        x += width
    dw.append(g)


def _epc_plot(d: ModuleType, dw: Any, epc: Sequence[int], capacity: int | None, y: float,
              h: float) -> None:
    """Pages in use after each call, as a step line; the capacity as a dashed line."""
    g = d.Group(class_="epc-plot")
    x0, x1 = LEFT + 50.0, WIDTH - LEFT - 10.0
    low, top = min(epc), max(epc)
    low = max(0, low - max(1, (top - low) // 10))
    span = max(top - low, 1)
    g.append(d.Text("EPC pages in use after each call", 13, LEFT,
                    y, font_family=FONT, font_weight="bold"))
    y0, y1 = y + h, y + 16
    g.append(d.Line(x0, y0, x1, y0, stroke="#455a64"))
    g.append(d.Line(x0, y0, x0, y1, stroke="#455a64"))
    for value in (low, top):
        vy = y0 - (y0 - y1) * (value - low) / span
        g.append(d.Text(str(value), 10, x0 - 6, vy + 4,
                        text_anchor="end", font_family=FONT))
    n = len(epc)
    step = (x1 - x0) / max(n, 1)
    path = d.Path(stroke="#1565c0", fill="none", stroke_width=1.5)
    path.M(x0, y0 - (y0 - y1) * (epc[0] - low) / span)
    for i, value in enumerate(epc):
        vy = y0 - (y0 - y1) * (value - low) / span
        path.L(x0 + i * step, vy).L(x0 + (i + 1) * step, vy)
    g.append(path)
    g.append(d.Text(f"calls 0..{n - 1}; peak {max(epc)} pages"
                    + (f" of {capacity}" if capacity else ""), 10, x1, y0 + 14,
                    text_anchor="end", font_family=FONT))
    dw.append(g)


#: Leaves that take an EPC page, and leaves that give one back.
EPC_TAKE = frozenset({"EAUG", "EADD", "ELDU", "ECREATE"})
EPC_GIVE = frozenset({"EREMOVE", "EWB"})


def epc_over_time(rec: Recording) -> list[int]:
    """EPC pages in use after each recorded call, from the leaves that take and
    give back pages (starting from the use when the recording began)."""
    used = rec.epc_start or 0
    out = []
    for call in rec.calls:
        for e in call.events:
            if e.category == LEAF:
                if e.name in EPC_TAKE:
                    used += 1
                elif e.name in EPC_GIVE:
                    used -= 1
        out.append(used)
    return out


def map_svg_of(report: Report, recording: Recording | None = None, *,
               title: str | None = None, id_prefix: str = "map") -> str:
    """The map of a finished replay; with its recording, EPC use over time too."""
    e = report.enclave
    epc = epc_over_time(recording) if recording is not None and recording.calls else None
    return map_svg(report.layout(), base=e.base, size=e.size, user_base=e.user_base,
                   user_end=e.user_end, title=title, epc=epc,
                   epc_capacity=recording.epc_pages if recording is not None else None,
                   id_prefix=id_prefix)

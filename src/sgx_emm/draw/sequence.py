"""Sequence diagrams as SVG: the lifelines of the reference's design document
(enclave code, EMM, trusted runtime, untrusted runtime, kernel, CPU), one row per
message, nested entries as stacked activation bars, faults as dashed red arrows,
leaves in blue with their SECINFO decoded. Several calls stack vertically, each
under a band naming its replay line and result.

Elements carry classes for tools and tests: `lifeline` (data-name), `message`
(data-style), `activation` (data-kind), `call` (data-line).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

from sgx_emm.draw.flow import LIFELINES, CallFlow, Message
from sgx_emm.draw.svg import arrow_marker, drawsvg

COL = 190           # distance between lifelines
LEFT = 30
TOP = 60            # below the lifeline heads
ROW = 26
BAND = 30           # the band naming a call
BAR = 10            # activation bar width
FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"

#: Width of one character of the 11 px monospace labels (0.6 em).
CHAR_W = 6.7

STYLES = {  # stroke, dash, marker key
    "call": ("#222222", None, "call"),
    "return": ("#888888", "5 4", "return"),
    "fault": ("#c62828", "6 4", "fault"),
    "leaf": ("#1565c0", None, "leaf"),
    "note": ("#6a1b9a", None, "note"),
}
ACTIVATION_FILL = {
    "ecall": "#fff3e0", "call": "#e3f2fd", "ocall": "#f3e5f5", "ocall_host": "#f3e5f5",
    "syscall": "#e8f5e9", "ioctl": "#e8f5e9", "fault": "#ffebee", "kernel_pf": "#ffebee",
    "exception": "#ffebee", "exc_entry": "#fce4ec", "handler": "#fce4ec",
    "pfhandler": "#e3f2fd", "custom_handler": "#fff3e0",
}


def _label(d: ModuleType, group: Any, text: str, x: float, y: float, colour: str) -> None:
    """A label over the lifelines, on a white backing so the dashed lines do not
    run through it (works in every SVG renderer, unlike paint-order halos)."""
    group.append(d.Rectangle(x - 2, y - 10, len(text) * CHAR_W + 4, 13, fill="white",
                             fill_opacity=0.85))
    group.append(d.Text(text, 11, x, y, fill=colour, font_family=FONT))


def _label_end(msg: Message) -> float:
    """Where a message's label ends, so the drawing can be made wide enough."""
    x1, x2 = _x(msg.src), _x(msg.dst)
    start = x1 + 34 if x1 == x2 else min(x1, x2) + 8
    return start + len(msg.label) * CHAR_W


def _x(lifeline: str) -> float:
    return LEFT + COL / 2 + LIFELINES.index(lifeline) * COL


def call_title(flow: CallFlow) -> str:
    rec = flow.record
    result = rec.result
    ret = "" if result is None else (f" → {result.ret}" if result.error is None
                                     else f" → not run: {result.error}")
    thread = f" (thread {rec.thread})" if rec.thread else ""
    text = rec.note or (result.note if result is not None else None)
    note = f" — {text}" if text else ""
    return f"line {rec.line}: {rec.op}{thread}{ret}{note}"


def sequence_svg(flows: Sequence[CallFlow], title: str | None = None,
                 id_prefix: str = "seq") -> str:
    """SVG text of a sequence diagram of `flows`, one after the other."""
    d = drawsvg()
    width = max([LEFT * 2 + COL * len(LIFELINES)] +
                [_label_end(m) + LEFT for f in flows for m in f.messages])
    rows = sum(len(f.messages) + 1 for f in flows)
    height = TOP + (30 if title else 0) + rows * ROW + len(flows) * BAND + 40
    dw = d.Drawing(width, height, id_prefix=id_prefix)
    dw.append(d.Rectangle(0, 0, width, height, fill="white"))
    markers = {key: arrow_marker(d, colour, open_head=key in ("fault", "return"))
               for key, (colour, _, _) in STYLES.items()}
    y0 = 10.0
    if title:
        dw.append(d.Text(title, 15, LEFT, y0 + 14, font_family=FONT, font_weight="bold"))
        y0 += 30
    head_y = y0
    body_top = head_y + 34
    # lifelines
    for name in LIFELINES:
        x = _x(name)
        g = d.Group(class_="lifeline", data_name=name)
        g.append(d.Line(x, body_top, x, height - 10, stroke="#9e9e9e", stroke_dasharray="3 4"))
        g.append(d.Rectangle(x - COL / 2 + 12, head_y, COL - 24, 28, rx=4, fill="#eceff1",
                             stroke="#455a64"))
        g.append(d.Text(name, 13, x, head_y + 19, text_anchor="middle", font_family=FONT))
        dw.append(g)
    y = body_top + 6
    for flow in flows:
        band = d.Group(class_="call", data_line=str(flow.record.line),
                       data_op=flow.record.op)
        band.append(d.Rectangle(LEFT / 2, y, width - LEFT, BAND - 6, fill="#fafafa",
                                stroke="#cfd8dc"))
        band.append(d.Text(call_title(flow), 12, LEFT, y + 16, font_family=FONT,
                           font_weight="bold"))
        dw.append(band)
        y += BAND
        row_y = {m.row: y + (m.row + 0.7) * ROW for m in flow.messages}
        last = y + (len(flow.messages) + 0.7) * ROW
        # activation bars under the arrows
        for node in flow.nodes():
            x = _x(node.actor) - BAR / 2 + node.depth * (BAR * 0.6)
            top = row_y.get(node.row, last)
            bottom = row_y.get(node.end_row, top) + 4
            dw.append(d.Rectangle(x, top, BAR, max(bottom - top, 6),
                                  fill=ACTIVATION_FILL.get(node.kind, "#eeeeee"),
                                  stroke="#607d8b", stroke_width=0.8,
                                  class_="activation", data_kind=node.kind,
                                  data_actor=node.actor))
        for msg in flow.messages:
            colour, dash, key = STYLES.get(msg.style, STYLES["call"])
            my = row_y[msg.row]
            g = d.Group(class_="message", data_style=msg.style)
            x1, x2 = _x(msg.src), _x(msg.dst)
            if x1 == x2:
                path = d.Path(stroke=colour, fill="none", stroke_width=1.2,
                              marker_end=markers[key])
                path.M(x1 + BAR / 2, my - 6).h(24).v(10).h(-20)
                g.append(path)
                _label(d, g, msg.label, x1 + 34, my - 2, colour)
            else:
                shrink = BAR / 2 if x2 > x1 else -BAR / 2
                kw = {"stroke_dasharray": dash} if dash else {}
                g.append(d.Line(x1 + shrink, my, x2 - shrink, my, stroke=colour,
                                stroke_width=1.3, marker_end=markers[key], **kw))
                tx = min(x1, x2) + 8
                _label(d, g, msg.label, tx, my - 4, colour)
            dw.append(g)
        y = last + ROW * 0.3
    return str(dw.as_svg())

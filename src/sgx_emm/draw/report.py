"""One self-contained HTML page about a replay: what every call did, the map, the
sequence diagrams of the failing (or chosen) calls, where the time would go,
and the Perfetto trace embedded for download. No scripts, fonts or images are
fetched: the page opens offline and can be mailed around.

The page is well-formed XML (XHTML syntax in an HTML5 document), so tools can
parse it; the SVG pictures are inlined. Without the drawing extra the diagrams
fall back to Mermaid text and the map to a note.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from html import escape

from sgx_emm import render
from sgx_emm.cost import CostModel
from sgx_emm.draw.choose import DEFAULT_MAX_CALLS
from sgx_emm.draw.costview import summary_of
from sgx_emm.draw.flow import interpret_all
from sgx_emm.draw.perfetto import trace_events
from sgx_emm.draw.recording import CallRecord, Recording
from sgx_emm.draw.svg import INSTALL_HINT, DrawingUnavailable
from sgx_emm.replay import Report

#: At most this many diagrams on one page (the failing calls come first).
MAX_DIAGRAMS = DEFAULT_MAX_CALLS

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #212121; max-width: 1400px; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #cfd8dc; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #e0e0e0; padding: 2px 8px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.failed td { background: #fff3e0; } tr.unexpected td { background: #ffebee; }
.figure { overflow-x: auto; margin: 1em 0; }
code, pre { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.9em; }
.note { color: #546e7a; }
"""


def _svg_inline(svg: str) -> str:
    """An SVG document as an element to inline: without its XML declaration."""
    if svg.startswith("<?xml"):
        svg = svg[svg.index("?>") + 2:].lstrip()
    return svg


def _diagram_calls(rec: Recording, lines: Sequence[int]) -> list[CallRecord]:
    by_line = {c.line: c for c in rec.closed}
    chosen = [by_line[n] for n in lines if n in by_line]
    failing = [c for c in rec.closed if c.failed and c.line not in lines]
    return (chosen + failing)[:MAX_DIAGRAMS]


def report_html(report: Report, rec: Recording, *, name: str = "replay",
                lines: Sequence[int] = (), cost: CostModel | None = None) -> str:
    """The whole page as text."""
    model = cost or CostModel()
    fmt = render.address_format(report)
    summary = summary_of(rec, model)
    cycles_of = {line: c for line, _, c in summary.per_call}
    parts: list[str] = []
    add = parts.append
    add("<!DOCTYPE html>")
    add('<html lang="en"><head><meta charset="utf-8"/>')
    add(f"<title>sgx-emm report: {escape(name)}</title><style>{_CSS}</style></head><body>")
    add(f"<h1>sgx-emm report: <code>{escape(name)}</code></h1>")
    e = report.enclave
    add(f'<p class="summary">{escape(render.summary_text(report))}. ELRANGE '
        f"<code>{e.base:#x}</code> + <code>{e.size:#x}</code>, user range from "
        f"<code>{e.user_base:#x}</code>. Estimated cost: {summary.total:,} cycles = "
        f"{model.micros(summary.total):,.1f} µs at {model.ghz:g} GHz.</p>")

    # calls
    add('<h2 id="calls">Calls</h2><table class="calls"><thead><tr><th>line</th><th>op</th>'
        "<th>thread</th><th>address</th><th>result</th><th>why</th><th>expected</th>"
        "<th>caused</th>"
        "<th>cycles</th></tr></thead><tbody>")
    for call in rec.closed:
        r = call.result
        if r is None:
            continue
        cls = "unexpected" if r.as_expected is False else "failed" if call.failed else ""
        where = fmt(r.addr if r.addr is not None else r.target) or ""
        ret = f"not run: {r.error}" if r.error is not None else str(r.ret)
        cyc = cycles_of.get(call.line)
        why = (r.reason or r.detail or "") if call.failed else ""
        add(f'<tr class="{cls}"><td class="num">{call.line}</td><td>{escape(call.op)}</td>'
            f'<td class="num">{r.thread}</td><td><code>{escape(where)}</code></td>'
            f"<td>{escape(ret)}</td><td>{escape(why)}</td><td>{escape(r.expect or '')}</td>"
            f"<td>{escape(render.counts_text(r.counts))}</td>"
            f'<td class="num">{"" if cyc is None else f"{cyc:,}"}</td></tr>')
    add("</tbody></table>")

    # map
    add('<h2 id="map">Region map</h2>')
    try:
        from sgx_emm.draw.mapsvg import map_svg_of

        add(f'<div class="figure">{_svg_inline(map_svg_of(report, rec, id_prefix="map"))}</div>')
    except DrawingUnavailable:
        add(f'<p class="note">The map picture needs the drawing extra ({INSTALL_HINT}).</p>')

    # diagrams
    chosen = _diagram_calls(rec, lines)
    add('<h2 id="diagrams">Sequence diagrams</h2>')
    if not chosen:
        add('<p class="note">No call failed; choose calls with --line to draw them.</p>')
    flows = interpret_all(rec, model, chosen)
    for i, flow in enumerate(flows):
        add(f'<h3 id="line-{flow.record.line}">Line {flow.record.line}: '
            f"{escape(flow.record.op)}</h3>")
        try:
            from sgx_emm.draw.sequence import sequence_svg

            add(f'<div class="figure">{_svg_inline(sequence_svg([flow], id_prefix=f"seq{i}"))}'
                "</div>")
        except DrawingUnavailable:
            from sgx_emm.draw.mermaid import sequence_mermaid

            add(f'<pre class="mermaid">{escape(sequence_mermaid([flow]))}</pre>')

    # cost
    add('<h2 id="cost">Estimated cost</h2>')
    add(f"<p>{summary.total:,} cycles = {model.micros(summary.total):,.2f} µs at "
        f"{model.ghz:g} GHz over {len(summary.per_call)} calls. Figures per event come "
        "from published measurements or are estimates (see docs/cost-model.md).</p>")
    add('<table class="cost"><thead><tr><th>kind</th><th>events</th><th>cycles</th>'
        "<th>µs</th><th>share</th></tr></thead><tbody>")
    total = summary.total or 1
    for kind, n, cycles in summary.kinds_by_cost():
        add(f"<tr><td>{escape(kind)}</td><td class=\"num\">{n}</td>"
            f'<td class="num">{cycles:,}</td><td class="num">{model.micros(cycles):.2f}</td>'
            f'<td class="num">{100 * cycles / total:.1f}%</td></tr>')
    add("</tbody></table>")

    # the trace
    trace = json.dumps(trace_events(rec, model)).encode()
    data = base64.b64encode(trace).decode("ascii")
    add('<h2 id="trace">Perfetto trace</h2>')
    add(f'<p><a download="sgx-emm-trace.json" href="data:application/json;base64,{data}">'
        f"Download the trace</a> ({len(trace):,} bytes of trace-event JSON) and open it in "
        "ui.perfetto.dev or chrome://tracing: one track per enclave thread, the untrusted "
        "runtime and the kernel, with arrows from each fault to its handler.</p>")
    add("</body></html>")
    return "\n".join(parts) + "\n"

"""The cost of a run as tables: per call, per kind of event, and the totals."""

from __future__ import annotations

from rich import box
from rich.table import Table

from sgx_emm.cost import CostModel, CostSummary, summarize
from sgx_emm.draw.recording import Recording


def summary_of(rec: Recording, model: CostModel | None = None) -> CostSummary:
    """Cost of every call of a recording that ran (from its per-call counts)."""
    rows = []
    for call in rec.closed:
        result = call.result
        if result is None or result.error is not None:
            continue
        rows.append((call.line, call.op, result.counts))
    return summarize(rows, model)


def call_table(summary: CostSummary, title: str = "estimated cost per call") -> Table:
    m = summary.model
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("line", justify="right")
    table.add_column("op")
    table.add_column("cycles", justify="right")
    table.add_column("µs", justify="right")
    for line, op, cycles in summary.per_call:
        table.add_row(str(line), op, f"{cycles:,}", f"{m.micros(cycles):.2f}")
    return table


def kind_table(summary: CostSummary, title: str = "estimated cost per kind") -> Table:
    m = summary.model
    total = summary.total or 1
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("kind")
    table.add_column("events", justify="right")
    table.add_column("cycles", justify="right")
    table.add_column("µs", justify="right")
    table.add_column("share", justify="right")
    for kind, n, cycles in summary.kinds_by_cost():
        table.add_row(kind, str(n), f"{cycles:,}", f"{m.micros(cycles):.2f}",
                      f"{100 * cycles / total:.1f}%")
    return table


def total_text(summary: CostSummary) -> str:
    m = summary.model
    return (f"estimated total: {summary.total:,} cycles = {m.micros(summary.total):,.2f} µs "
            f"at {m.ghz:g} GHz over {len(summary.per_call)} calls (see docs/cost-model.md)")

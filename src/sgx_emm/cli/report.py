"""`sgx-emm report`: one self-contained HTML page about a replay."""

from __future__ import annotations

from typing import Any

import click

from sgx_emm.cli.common import enclave_options, finish
from sgx_emm.cli.pictures import load_cost_model, record, write_output
from sgx_emm.replay import EXAMPLE_NAME


@click.command("report")
@click.argument("file", required=False)
@click.option("-o", "--output", default=None, metavar="FILE",
              help="Write the page here ('-' or none: standard output).")
@click.option("--line", "lines", type=int, multiple=True, metavar="N",
              help="Also draw the call on line N (the failing calls are always drawn).")
@click.option("--cost-model", "cost_model", metavar="FILE", default=None,
              help="Cycle costs overriding the defaults (.toml or .json).")
@click.option("--strict", is_flag=True,
              help="Stop at the first line that cannot run (exit status 1).")
@enclave_options
def report_cmd(file: str | None, output: str | None, lines: tuple[int, ...],
               cost_model: str | None, strict: bool, **options: Any) -> None:
    """Replay FILE (or the bundled example) and write one HTML page about it.

    The page holds the calls table, the region map with EPC use over time, the
    sequence diagrams of the failing (and chosen) calls, the estimated cost per
    kind of event, and the Perfetto trace for download. It needs no network.
    """
    from sgx_emm.draw.report import report_html

    model = load_cost_model(cost_model)
    name = {None: f"bundled example {EXAMPLE_NAME}", "-": "<stdin>"}.get(file, file or "")
    report, rec = record(file, strict, options)
    known = {c.line for c in rec.closed}
    for n in lines:
        if n not in known:
            raise click.BadParameter(f"line {n} is not a call of this run", param_hint="--line")
    write_output(output, report_html(report, rec, name=name, lines=lines, cost=model))
    finish(report)

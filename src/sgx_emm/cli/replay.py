"""`sgx-emm replay`: run a call sequence and show what each call caused."""

from __future__ import annotations

import json
from typing import Any

import click

from sgx_emm import render
from sgx_emm.cli.common import (
    common_options,
    emit,
    finish,
    full_map_option,
    make_console,
    map_progress,
    progress_console,
    run_replay,
)
from sgx_emm.draw.recording import Recording


@click.command("replay")
@common_options
@click.option("--events", is_flag=True,
              help="Show every event of each call (leaves, ocalls, ioctls, faults, ...).")
@click.option("--trace", "trace_file", metavar="FILE", default=None,
              help="Write the run as Chrome/Perfetto trace-event JSON (ui.perfetto.dev).")
@click.option("--cost", is_flag=True,
              help="Print the estimated cycles and µs per call, per kind and in total.")
@click.option("--cost-model", "cost_model", metavar="FILE", default=None,
              help="Cycle costs overriding the defaults (.toml or .json).")
@full_map_option
def replay_cmd(file: str | None, fmt: str, strict: bool, events: bool, trace_file: str | None,
               cost: bool, cost_model: str | None, full_map: bool, **options: Any) -> None:
    """Replay a JSON Lines call sequence FILE ('-' = stdin; bundled example without FILE).

    Prints one line (or JSON object) per call with its result, the address it
    returned and what it caused, then the region map of both roots and totals.
    """
    from sgx_emm.cli.pictures import load_cost_model

    model = load_cost_model(cost_model)
    recording = Recording() if trace_file or cost else None
    report = run_replay(file, fmt, strict, options, per_call=True, events=events,
                        recording=recording)
    console = make_console()
    summary = None
    if recording is not None:
        recording.detach()
        if trace_file:
            from sgx_emm.cli.pictures import write_output
            from sgx_emm.draw.perfetto import trace_events

            write_output(trace_file, json.dumps(trace_events(recording, model)))
        if cost:
            from sgx_emm.draw.costview import summary_of

            summary = summary_of(recording, model)
    if fmt == "json":
        final = render.final_json(report)
        if summary is not None:
            final["cost"] = summary.to_json()
        emit(console, json.dumps(final))
    else:
        with map_progress(progress_console(console)) as advance:
            render.print_final_text(console, report, full_map=full_map, advance=advance)
        if summary is not None:
            from sgx_emm.draw.costview import call_table, kind_table, total_text

            console.print()
            console.print(call_table(summary))
            console.print(kind_table(summary))
            console.print(total_text(summary), highlight=False)
    finish(report)

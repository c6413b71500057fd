"""`sgx-emm replay`: run a call sequence and show what each call caused."""

from __future__ import annotations

import json
from typing import Any

import click

from sgx_emm import render
from sgx_emm.cli.common import common_options, emit, finish, make_console, run_replay


@click.command("replay")
@common_options
@click.option("--events", is_flag=True,
              help="Show every event of each call (leaves, ocalls, ioctls, faults, ...).")
def replay_cmd(file: str | None, fmt: str, strict: bool, events: bool,
               **options: Any) -> None:
    """Replay a JSON Lines call sequence FILE ('-' = stdin; bundled example without FILE).

    Prints one line (or JSON object) per call with its result, the address it
    returned and what it caused, then the region map of both roots and totals.
    """
    report = run_replay(file, fmt, strict, options, per_call=True, events=events)
    console = make_console()
    if fmt == "json":
        emit(console, json.dumps(render.final_json(report)))
    else:
        render.print_final_text(console, report)
    finish(report)

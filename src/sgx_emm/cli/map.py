"""`sgx-emm map`: replay quietly, then draw the region map of both roots."""

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


@click.command("map")
@common_options
@click.option("--svg", "svg_file", metavar="FILE", default=None,
              help="Also draw the map as an SVG picture (needs the draw extra).")
@click.option("--epc", is_flag=True, help="With --svg: add a plot of EPC use after each call.")
@full_map_option
def map_cmd(file: str | None, fmt: str, strict: bool, svg_file: str | None, epc: bool,
            full_map: bool, **options: Any) -> None:
    """Replay FILE (or the bundled example) quietly, then draw the region map.

    Both roots, one region per row: address, size, commit mode, prot, type,
    committed pages as a bar, flags; the manager's metadata reserves are marked.
    Runs of alike neighbouring regions share a row (N × SIZE) unless --full-map.
    """
    recording = Recording() if svg_file and epc else None
    report = run_replay(file, fmt, strict, options, per_call=False, recording=recording)
    if svg_file:
        from sgx_emm.cli.pictures import write_map_svg

        write_map_svg(svg_file, report, recording)
    console = make_console()
    addr = render.address_format(report)
    if fmt == "json":
        emit(console, json.dumps({"layout": render.layout_json(report.layout(), addr),
                                  "summary": render.summary(report)}))
    else:
        with map_progress(progress_console(console)) as advance:
            render.print_map(console, report.layout(), addr, full=full_map, advance=advance)
        console.print(render.summary_text(report), highlight=False)
    finish(report)

"""What the picture commands share: the cost model option, writing an output
file (or stdout for '-'), and replaying a file with every event recorded."""

from __future__ import annotations

import sys
from typing import Any

import click

from sgx_emm.cli.common import run_replay
from sgx_emm.cost import CostModel
from sgx_emm.draw.recording import Recording
from sgx_emm.replay import Report


def load_cost_model(path: str | None) -> CostModel:
    """The default cost model, or the defaults overridden by FILE (exit status 2 if bad)."""
    if path is None:
        return CostModel()
    try:
        return CostModel.from_file(path)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--cost-model") from None


def write_output(path: str | None, text: str) -> None:
    """Write `text` to FILE, or to stdout for None or '-'."""
    if path is None or path == "-":
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as e:
        raise click.ClickException(f"cannot write {path}: {e.strerror or e}") from None


def record(file: str | None, strict: bool, options: dict[str, Any]) -> tuple[Report, Recording]:
    """Replay FILE quietly, keeping every event per call."""
    recording = Recording()
    report = run_replay(file, "text", strict, options, per_call=False, recording=recording)
    recording.detach()
    return report, recording


def write_map_svg(path: str, report: Report, recording: Recording | None) -> None:
    """The region map of a finished replay as SVG (with EPC use when recorded)."""
    from sgx_emm.draw.mapsvg import map_svg_of
    from sgx_emm.draw.svg import DrawingUnavailable

    try:
        text = map_svg_of(report, recording)
    except DrawingUnavailable as e:
        raise click.ClickException(str(e)) from None
    write_output(path, text)

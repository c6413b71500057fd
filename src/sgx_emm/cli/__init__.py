"""The `sgx-emm` command line, one module per command.

`replay` runs a call sequence and shows what each call caused; `map` draws the
region map after a quiet replay; `diagram` and `report` draw recorded calls.
docs/cli.md is the user's guide. A new command is a module here with a
`click.command`, added to `main` below.

`PROGRESS_MIN_LINES` and `progress_for` are re-exported for tests and tools.
"""

from __future__ import annotations

import click

from sgx_emm.cli.attacks import attacks_cmd
from sgx_emm.cli.common import PROGRESS_MIN_LINES, progress_for
from sgx_emm.cli.diagram import diagram_cmd
from sgx_emm.cli.map import map_cmd
from sgx_emm.cli.replay import replay_cmd
from sgx_emm.cli.report import report_cmd


@click.group()
@click.version_option(package_name="sgx-emm")
def main() -> None:
    """Enclave Memory Manager on a simulated SGX2 platform."""


main.add_command(replay_cmd)
main.add_command(map_cmd)
main.add_command(attacks_cmd)
main.add_command(diagram_cmd)
main.add_command(report_cmd)

__all__ = ["PROGRESS_MIN_LINES", "main", "progress_for"]

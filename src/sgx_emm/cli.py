"""The `sgx-emm` command line (placeholder until the replay runner lands)."""

from __future__ import annotations

import click


@click.group()
def main() -> None:
    """Enclave Memory Manager on a simulated SGX2 platform."""


@main.command()
@click.argument("file", required=False)
def replay(file: str | None) -> None:
    """Replay a JSON Lines call sequence (bundled example without FILE)."""
    click.echo("replay: not implemented yet")

"""`sgx-emm attacks`: run the attack library against the bundled victims.

One row per attack: its name, what SGX and the manager guarantee against it, and
the outcome (detected: error / abort / crash with its cause; no effect; leaks:
what the attacker learned; SILENT: the attack went unnoticed, a bug). Exit status
1 if any row is SILENT, else 0.
"""

from __future__ import annotations

import click
from rich.table import Table

from sgx_emm.cli.common import emit, make_console
from sgx_emm.hostile import ATTACKS, Outcome, run_all, table_json
from sgx_emm.hostile.suite import counts

_STYLE = {Outcome.DETECTED: "green", Outcome.NO_EFFECT: "cyan", Outcome.LEAKS: "yellow",
          Outcome.SILENT: "bold red"}


@click.command("attacks")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="A table, or one JSON document.")
@click.option("--only", "only", multiple=True, metavar="NAME",
              help="Run only these attacks (repeatable; a family prefix such as "
                   "'paging.' selects the family).")
@click.option("--list", "list_only", is_flag=True, help="List the attacks and stop.")
def attacks_cmd(fmt: str, only: tuple[str, ...], list_only: bool) -> None:
    """Run the hostile-OS attack library and print what each attack achieved."""
    chosen = [a for name, a in ATTACKS.items()
              if not only or any(name == o or (o.endswith(".") and name.startswith(o))
                                 for o in only)]
    if only and not chosen:
        raise click.UsageError(f"no attack matches {', '.join(only)}; "
                               "see `sgx-emm attacks --list`")
    console = make_console()
    if list_only:
        for a in chosen:
            emit(console, f"{a.name}\t{a.family}\t{a.does}")
        return
    results = run_all(chosen)
    if fmt == "json":
        emit(console, table_json(results))
    else:
        table = Table(title="Attacks on the enclave's memory", show_lines=False)
        for col in ("attack", "guarantee", "outcome", "detail"):
            table.add_column(col, overflow="fold")
        for r in results:
            table.add_row(r.attack, r.guarantee, f"[{_STYLE[r.outcome]}]{r.outcome.value}[/]",
                          r.detail)
        console.print(table)
        summary = ", ".join(f"{n} {o}" for o, n in counts(results).items())
        console.print(f"{len(results)} attacks: {summary}", highlight=False)
    if any(r.outcome is Outcome.SILENT for r in results):
        raise SystemExit(1)

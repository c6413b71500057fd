"""`sgx-emm diagram`: a sequence diagram of chosen calls of a replay."""

from __future__ import annotations

from typing import Any

import click

from sgx_emm.cli.common import enclave_options, finish
from sgx_emm.cli.pictures import load_cost_model, record, write_output


@click.command("diagram")
@click.argument("file", required=False)
@click.option("--line", "lines", type=int, multiple=True, metavar="N",
              help="Draw the call on line N (0-based; repeat for several). Default: every "
                   "call of a short file, else the failing ones.")
@click.option("-o", "--output", default=None, metavar="FILE",
              help="Write here ('-' or none: standard output).")
@click.option("--format", "fmt", type=click.Choice(["svg", "mermaid"]), default="svg",
              show_default=True, help="SVG picture, or Mermaid text for Markdown.")
@click.option("--title", default=None, help="A title above the diagram.")
@click.option("--strict", is_flag=True,
              help="Stop at the first line that cannot run (exit status 1).")
@enclave_options
def diagram_cmd(file: str | None, lines: tuple[int, ...], output: str | None, fmt: str,
                title: str | None, strict: bool, **options: Any) -> None:
    """Replay FILE (or the bundled example) and draw chosen calls as a sequence diagram.

    Lifelines: enclave code, EMM, trusted runtime, untrusted runtime, kernel,
    CPU. Nested entries are activation bars, faults dashed red arrows, leaves
    blue arrows with their SECINFO decoded.
    """
    from sgx_emm.draw.choose import NoSuchLine, choose_calls
    from sgx_emm.draw.flow import interpret_all
    from sgx_emm.draw.svg import DrawingUnavailable

    report, rec = record(file, strict, options)
    try:
        chosen = choose_calls(rec, lines)
    except NoSuchLine as e:
        raise click.BadParameter(str(e), param_hint="--line") from None
    flows = interpret_all(rec, load_cost_model(None), chosen)
    if fmt == "mermaid":
        from sgx_emm.draw.mermaid import sequence_mermaid

        text = sequence_mermaid(flows, title)
    else:
        try:
            from sgx_emm.draw.sequence import sequence_svg

            text = sequence_svg(flows, title)
        except DrawingUnavailable as e:
            raise click.ClickException(str(e)) from None
    write_output(output, text)
    finish(report)

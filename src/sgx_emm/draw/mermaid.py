"""Sequence diagrams as Mermaid text, which GitHub and many Markdown viewers render.

Same model as the SVG: one participant per lifeline, `activate`/`deactivate`
for nested entries, dashed open arrows (`--)`) for faults, dashed returns.
"""

from __future__ import annotations

from collections.abc import Sequence

from sgx_emm.draw.flow import LIFELINES, CallFlow
from sgx_emm.draw.sequence import call_title

ALIASES = {"enclave code": "App", "EMM": "EMM", "trusted runtime": "TRTS",
           "untrusted runtime": "URTS", "kernel": "Kernel", "CPU": "CPU"}
ARROWS = {"call": "->>", "return": "-->>", "fault": "--)", "leaf": "->>"}


def _text(label: str) -> str:
    """Mermaid reads ';' as a line end and '#' as the start of an entity."""
    return label.replace(";", ",").replace("#", "#35;")


def sequence_mermaid(flows: Sequence[CallFlow], title: str | None = None) -> str:
    lines = ["sequenceDiagram"]
    if title:
        lines.append(f"    title {_text(title)}")
    for name in LIFELINES:
        lines.append(f"    participant {ALIASES[name]} as {name}")
    first, last = ALIASES[LIFELINES[0]], ALIASES[LIFELINES[-1]]
    for flow in flows:
        lines.append(f"    Note over {first},{last}: {_text(call_title(flow))}")
        nodes = flow.nodes()
        opens: dict[int, list[str]] = {}
        closes: dict[int, list[tuple[int, str]]] = {}
        for node in nodes:
            opens.setdefault(node.row, []).append(ALIASES[node.actor])
            closes.setdefault(node.end_row, []).append((-node.row, ALIASES[node.actor]))
        for msg in flow.messages:
            src, dst = ALIASES[msg.src], ALIASES[msg.dst]
            if msg.style == "note":
                lines.append(f"    Note over {src}: {_text(msg.label)}")
            else:
                lines.append(f"    {src}{ARROWS.get(msg.style, '->>')}{dst}: {_text(msg.label)}")
            for actor in opens.get(msg.row, []):
                lines.append(f"    activate {actor}")
            for _, actor in sorted(closes.get(msg.row, [])):
                lines.append(f"    deactivate {actor}")
    return "\n".join(lines) + "\n"

#!/usr/bin/env python3
"""Regenerate the pictures in docs/ from the bundled replays.

    python scripts/make_docs.py           # write docs/flows/* and docs/images/*
    python scripts/make_docs.py --check   # exit 1 and name the files that differ

Each EDMM flow is a small replay in src/sgx_emm/examples/flows/; the line that
shows the flow is drawn as an SVG sequence diagram and as Mermaid text, and
docs/flows/README.md collects them. docs/images/ holds the pictures the README
shows (the #PF-based commit and the map of the bundled tour). Everything is
drawn from replays, so the pictures change when the simulator does: the test
suite fails when they are stale, and this script brings them up to date.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from sgx_emm import replay  # noqa: E402  (after the path set-up above)
from sgx_emm.draw import record_replay  # noqa: E402
from sgx_emm.draw.flow import interpret_all  # noqa: E402
from sgx_emm.draw.mapsvg import map_svg_of  # noqa: E402
from sgx_emm.draw.mermaid import sequence_mermaid  # noqa: E402
from sgx_emm.draw.sequence import sequence_svg  # noqa: E402


@dataclass(frozen=True)
class Flow:
    name: str       # file stem in examples/flows/
    title: str
    lines: tuple[int, ...]
    about: str


FLOWS = (
    Flow("pf-commit", "#PF-based commit", (1,),
         "The first write to a COMMIT_ON_DEMAND page: the kernel EAUGs on the first #PF, "
         "the second #PF (the page is PENDING) is reported into the enclave, where the "
         "EMM's handler EACCEPTs the page and the write is retried."),
    Flow("commit-now", "COMMIT_NOW allocation", (0,),
         "sgx_mm_alloc with COMMIT_NOW: the range is mapped through alloc_ocall (mmap), "
         "then every page is EACCEPTed; the #PF of each EACCEPT makes the kernel EAUG it."),
    Flow("commit-data", "commit_data", (3,),
         "sgx_mm_commit_data: EACCEPTCOPY copies the data into a fresh page (EAUGed on its "
         "#PF), then the permissions are restricted through the driver and EACCEPTed."),
    Flow("restrict", "Permission restriction", (1,),
         "RW to R: the modify ocall makes the driver EMODPR the page and ETRACK, the "
         "runtime mprotects, and the EMM EACCEPTs with PR set."),
    Flow("extend", "Permission extension", (2,),
         "R to RW: after the modify ocall the enclave itself adds the permission with "
         "EMODPE and EACCEPTs."),
    Flow("trim", "Trim (uncommit)", (1,),
         "sgx_mm_uncommit: EMODT to TRIM through the driver, EACCEPT inside, then a second "
         "ocall lets the driver EREMOVE the page."),
    Flow("tcs", "TCS creation", (2,),
         "sgx_mm_modify_type to TCS: the driver EMODTs the page, the EMM EACCEPTs it with "
         "TCS|MODIFIED."),
    Flow("dealloc", "Dealloc", (2,),
         "sgx_mm_dealloc of a partly committed region: the committed page is trimmed and "
         "removed, the whole range unmapped."),
)

#: The README's pictures.
README_FLOW = "pf-commit"


def flow_lines(name: str) -> list[str]:
    text = (resources.files("sgx_emm") / "examples" / "flows" / f"{name}.jsonl").read_text(
        "utf-8")
    return replay.read_lines(text)


def build() -> dict[str, str]:
    """Every generated file, relative path -> text."""
    out: dict[str, str] = {}
    index = [
        "# EDMM flows, drawn from replays",
        "",
        "Each flow below is a small replay in `src/sgx_emm/examples/flows/`, run on the",
        "simulated platform and drawn from its event stream (`sgx-emm diagram FILE --line N`).",
        "Lifelines: the enclave code, the EMM, the trusted runtime, the untrusted runtime,",
        "the kernel and the CPU. Activation bars are nested entries, dashed red arrows",
        "faults, blue arrows leaves with their SECINFO decoded (permissions, state bits,",
        "page type). Regenerate with `python scripts/make_docs.py`.",
        "",
    ]
    for flow in FLOWS:
        _, rec = record_replay(flow_lines(flow.name))
        calls = [c for c in rec.closed if c.line in flow.lines]
        flows = interpret_all(rec, calls=calls)
        out[f"docs/flows/{flow.name}.svg"] = sequence_svg(flows, flow.title,
                                                         id_prefix=flow.name)
        mermaid = sequence_mermaid(flows, flow.title)
        out[f"docs/flows/{flow.name}.mmd"] = mermaid
        lines = ", ".join(str(n) for n in flow.lines)
        index += [
            f"## {flow.title}",
            "",
            flow.about,
            "",
            f"Replay: `src/sgx_emm/examples/flows/{flow.name}.jsonl`, line {lines}.",
            "",
            f"![{flow.title}]({flow.name}.svg)",
            "",
            "<details><summary>As Mermaid</summary>",
            "",
            "```mermaid",
            mermaid.rstrip("\n"),
            "```",
            "",
            "</details>",
            "",
        ]
    out["docs/flows/README.md"] = "\n".join(index).rstrip("\n") + "\n"
    out["docs/images/pf-commit.svg"] = out[f"docs/flows/{README_FLOW}.svg"]
    report, rec = record_replay(replay.example_lines())
    out["docs/images/tour-map.svg"] = map_svg_of(
        report, rec, title="The bundled tour: both roots along the ELRANGE (widths log-scaled)")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="compare instead of writing; exit 1 if a file differs")
    args = parser.parse_args(argv)
    stale = []
    for rel, text in build().items():
        path = ROOT / rel
        current = path.read_text("utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(rel)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, "utf-8")
    if args.check and stale:
        print("stale (run python scripts/make_docs.py):", *stale, sep="\n  ")
        return 1
    if not args.check:
        print(f"wrote {len(stale)} file(s)" + (": " + ", ".join(stale) if stale else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

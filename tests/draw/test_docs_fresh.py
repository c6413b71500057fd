"""docs/flows and docs/images are drawn from the bundled replays: they must match
what the simulator does now. The comparison reads what a reader sees (the arrows,
their kinds and endpoints, and the first word of each label, e.g. the leaf), so
a change in how operands are written does not make the docs stale, but a changed
flow does. Regenerate with `python scripts/make_docs.py`."""

from __future__ import annotations

import importlib.util
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SVG = "{http://www.w3.org/2000/svg}"
HINT = "docs are stale: run python scripts/make_docs.py and commit the result"


@pytest.fixture(scope="module")
def make_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_docs", ROOT / "scripts" / "make_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_docs"] = module         # its dataclasses look themselves up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(make_docs: ModuleType) -> dict[str, str]:
    files: dict[str, str] = make_docs.build()
    return files


def _first_word(text: str | None) -> str:
    return (text or "").split(" ", 1)[0].split("(", 1)[0]


def svg_signature(text: str) -> list[tuple[str, ...]]:
    """What a reader sees: lifelines, calls, message kinds with their first word,
    regions with their mode and committed count."""
    root = ET.fromstring(text)
    out: list[tuple[str, ...]] = []
    for g in root.iter(f"{SVG}g"):
        cls = g.get("class") or ""
        if cls == "lifeline":
            out.append(("lifeline", g.get("data-name", "")))
        elif cls == "call":
            out.append(("call", g.get("data-line", ""), g.get("data-op", "")))
        elif cls == "message":
            label = next((t.text for t in g.iter(f"{SVG}text")), "")
            out.append(("message", g.get("data-style", ""), _first_word(label)))
        elif "region" in cls.split():
            out.append(("region", cls, g.get("data-start", ""), g.get("data-mode", ""),
                        g.get("data-committed", "")))
    return out


def text_signature(text: str) -> list[str]:
    """Headings and Mermaid arrows (kind and endpoints), without label details."""
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            out.append(line)
        m = re.match(r"\s*(\w+)(->>|-->>|--\))(\w+): (\S+)", line)
        if m:
            out.append(f"{m[1]}{m[2]}{m[3]} {_first_word(m[4])}")
        elif line.strip().startswith(("activate", "deactivate", "participant")):
            out.append(line.strip())
    return out


def test_every_generated_file_is_committed_and_current(built: dict[str, str]) -> None:
    assert {"docs/flows/README.md", "docs/images/pf-commit.svg",
            "docs/images/tour-map.svg"} <= built.keys()
    flows = [p for p in built if p.startswith("docs/flows/") and p.endswith(".svg")]
    assert len(flows) == 8
    for rel, text in built.items():
        path = ROOT / rel
        assert path.exists(), f"{rel} is missing: {HINT}"
        current = path.read_text("utf-8")
        if rel.endswith(".svg"):
            assert svg_signature(current) == svg_signature(text), f"{rel}: {HINT}"
        else:
            assert text_signature(current) == text_signature(text), f"{rel}: {HINT}"


def test_the_signature_notices_a_changed_flow(built: dict[str, str]) -> None:
    text = built["docs/flows/pf-commit.svg"]
    changed = text.replace(">EAUG ", ">EACCEPT ", 1)
    assert changed != text
    assert svg_signature(changed) != svg_signature(text)
    # while operand details alone do not count
    assert svg_signature(text.replace("u+0x21000", "u+0x21fff")) == svg_signature(text)


def test_the_readme_shows_a_diagram_and_a_map() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    assert "docs/images/pf-commit.svg" in readme and "docs/images/tour-map.svg" in readme

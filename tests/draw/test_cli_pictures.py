"""The picture options and commands of the CLI, on the real enclave, in-process."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sgx_emm import cli
from sgx_emm.draw import svg as draw_svg

FLOW = [
    '{"op": "alloc", "addr": null, "size": "0x2000", "flags": "COMMIT_ON_DEMAND"}',
    '{"op": "write", "addr": "$0", "data": "01"}',
    '{"op": "commit", "addr": "$0", "size": "0x3000", "expect": "EINVAL"}',
]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli.main, list(args))


@pytest.fixture
def flow_file(tmp_path: Path) -> str:
    path = tmp_path / "flow.jsonl"
    path.write_text("\n".join(FLOW) + "\n")
    return str(path)


def test_replay_trace_and_cost(flow_file: str, tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    got = invoke("replay", flow_file, "--trace", str(out), "--cost")
    assert got.exit_code == 0, got.output
    events = json.loads(out.read_text())["traceEvents"]
    assert sum(1 for e in events if e["ph"] == "X" and e["cat"] == "ecall") == 3
    assert "estimated cost per call" in got.output and "estimated cost per kind" in got.output
    assert "leaf:EAUG" in got.output and "estimated total:" in got.output


def test_replay_cost_json_and_a_cost_file(flow_file: str, tmp_path: Path) -> None:
    costs = tmp_path / "c.toml"
    costs.write_text('ghz = 1.0\n[cycles]\n"call:*" = 0\nEAUG = 1000000\n')
    got = invoke("replay", flow_file, "--format", "json", "--cost", "--cost-model", str(costs))
    assert got.exit_code == 0, got.output
    final = json.loads(got.output.splitlines()[-1])
    cost = final["cost"]
    assert cost["ghz"] == 1.0
    write = next(c for c in cost["per_call"] if c["line"] == 1)
    assert write["cycles"] >= 1_000_000 and write["us"] >= 1000
    assert cost["total_cycles"] == sum(c["cycles"] for c in cost["per_call"])


def test_a_bad_cost_file_is_a_usage_error(flow_file: str, tmp_path: Path) -> None:
    costs = tmp_path / "c.json"
    costs.write_text('{"EAUG": -3}')
    got = invoke("replay", flow_file, "--cost", "--cost-model", str(costs))
    assert got.exit_code == 2
    assert "EAUG" in got.output and "whole number" in got.output


def test_diagram_svg_and_mermaid(flow_file: str, tmp_path: Path) -> None:
    out = tmp_path / "d.svg"
    got = invoke("diagram", flow_file, "--line", "1", "-o", str(out))
    assert got.exit_code == 0, got.output
    root = ET.parse(out).getroot()
    calls = [g.get("data-line") for g in root.iter("{http://www.w3.org/2000/svg}g")
             if g.get("class") == "call"]
    assert calls == ["1"]
    got = invoke("diagram", flow_file, "--format", "mermaid")
    assert got.exit_code == 0, got.output
    assert got.output.startswith("sequenceDiagram")
    assert got.output.count("Note over App,CPU: line") == 3     # a short file: every call


def test_diagram_refuses_a_line_that_is_not_a_call(flow_file: str, tmp_path: Path) -> None:
    out = tmp_path / "d.svg"
    got = invoke("diagram", flow_file, "--line", "7", "-o", str(out))
    assert got.exit_code == 2
    assert "line 7 is not a call" in got.output
    assert not out.exists()


def test_map_svg_with_epc(flow_file: str, tmp_path: Path) -> None:
    out = tmp_path / "m.svg"
    got = invoke("map", flow_file, "--svg", str(out), "--epc")
    assert got.exit_code == 0, got.output
    root = ET.parse(out).getroot()
    classes = [g.get("class") or "" for g in root.iter("{http://www.w3.org/2000/svg}g")]
    assert any("region" in c.split() for c in classes)
    assert "epc-plot" in classes
    assert "region map" in got.output          # the table is still printed


def test_report_page(flow_file: str, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    got = invoke("report", flow_file, "-o", str(out))
    assert got.exit_code == 0, got.output
    page = out.read_text()
    root = ET.fromstring(page.removeprefix("<!DOCTYPE html>"))
    assert root.find(".//h1") is not None
    assert "line-2" in {e.get("id") for e in root.iter()}    # the failing commit is drawn


def test_svg_without_the_drawing_library_says_how_to_install(
        flow_file: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise draw_svg.DrawingUnavailable("drawing SVG needs the drawsvg package: "
                                          + draw_svg.INSTALL_HINT)

    monkeypatch.setattr("sgx_emm.draw.sequence.drawsvg", missing)
    got = invoke("diagram", flow_file, "-o", str(tmp_path / "d.svg"))
    assert got.exit_code == 1
    assert "pip install 'sgx-emm[draw]'" in got.output
    # Mermaid needs nothing extra
    assert invoke("diagram", flow_file, "--format", "mermaid").exit_code == 0

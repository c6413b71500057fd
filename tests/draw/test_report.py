"""The HTML report: one well-formed, self-contained page with every part."""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET

from sgx_emm.draw import Recording
from sgx_emm.draw.report import report_html
from sgx_emm.replay import Report


def test_report_has_every_part_and_fetches_nothing(tour: tuple[Report, Recording]) -> None:
    report, rec = tour
    page = report_html(report, rec, name="tour", lines=(4,))
    assert page.startswith("<!DOCTYPE html>")
    root = ET.fromstring(page.removeprefix("<!DOCTYPE html>"))     # well-formed
    assert root.tag == "html"
    ids = {e.get("id") for e in root.iter() if e.get("id")}
    assert {"calls", "map", "diagrams", "cost", "trace", "line-4"} <= ids
    # one row per line of the tour, failing rows marked
    rows = root.findall(".//table[@class='calls']/tbody/tr")
    assert len(rows) == len(rec.closed)
    assert sum(1 for r in rows if r.get("class") == "failed") == report.failed
    # diagrams: the chosen line and every failing call, inlined SVG
    svgs = [e for e in root.iter() if e.tag.endswith("svg")]
    assert len(svgs) == 1 + 1 + report.failed
    # the trace is embedded and is the recording's
    link = next(e for e in root.iter("a") if e.get("download"))
    data = link.get("href", "").removeprefix("data:application/json;base64,")
    trace = json.loads(base64.b64decode(data))
    assert trace["traceEvents"] and trace["otherData"]["calls"] == len(rec.calls)
    # self-contained: no external references at all
    assert not re.search(r"""(src|href)=["'](https?:)?//""", page)
    assert "<script" not in page

"""The map picture: every region drawn in address order, tiny and huge ones visible."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from sgx_emm.draw import Recording
from sgx_emm.draw.mapsvg import (
    _committed_cells,
    epc_over_time,
    human_size,
    map_svg,
    map_svg_of,
    segments,
)
from sgx_emm.replay import RegionInfo, Report

SVG = "{http://www.w3.org/2000/svg}"
BASE = 0x7F0000000000
SIZE = 1 << 36
USER = BASE + SIZE // 2


def groups(svg: str, cls: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    return [g for g in root.iter(f"{SVG}g") if cls in (g.get("class") or "").split()]


def width_of(g: ET.Element) -> float:
    rect = g.find(f"{SVG}rect")
    assert rect is not None
    return float(rect.get("width", "0"))


def test_a_page_and_32_gib_are_both_visible() -> None:
    layout = {"user": [RegionInfo(USER, 0x1000, 0x2, 0x203, ((True, 1),)),
                       RegionInfo(USER + 0x10000, 32 << 30, 0x4, 0x203,
                                  ((True, 3), (False, (8 << 18) - 3)))],
              "rts": []}
    svg = map_svg(layout, base=BASE, size=SIZE, user_base=USER, user_end=BASE + SIZE)
    regions = groups(svg, "region")
    assert [g.get("data-start") for g in regions] == ["u+0x0", "u+0x10000"]
    small, big = (width_of(g) for g in regions)
    assert small >= 4 and big > small and big < 40 * small
    assert [g.get("data-mode") for g in regions] == ["COMMIT_NOW", "ON_DEMAND"]
    assert regions[1].get("data-committed") == "3"
    # committed pages are shaded inside their region; gaps are marked free
    assert any(e.get("class") == "committed" for e in regions[1].iter(f"{SVG}rect"))
    assert len(groups(svg, "gap")) == 2           # rts half + between the two regions
    assert {g.get("data-name") for g in groups(svg, "root")} == {"rts", "user"}


def test_meta_reserves_and_guards_are_marked() -> None:
    layout = {"user": [RegionInfo(USER, 0x8000, 0x1, 0x0, ((False, 8),), is_meta=True)],
              "rts": [RegionInfo(BASE + 0x100000, 0x2000, 0x81, 0x0, ((False, 2),))]}
    svg = map_svg(layout, base=BASE, size=SIZE, user_base=USER, user_end=BASE + SIZE)
    assert [g.get("data-start") for g in groups(svg, "meta")] == ["u+0x0"]
    assert [g.get("data-start") for g in groups(svg, "guard")] == [f"{BASE + 0x100000:#x}"]


def test_segments_cover_the_elrange_in_order() -> None:
    layout = {"user": [RegionInfo(USER + 0x2000, 0x1000, 2, 3, ())],
              "rts": [RegionInfo(BASE, 0x1000, 2, 3, ())]}
    segs = segments(layout, BASE, SIZE)
    assert segs[0].start == BASE and segs[0].root == "rts"
    assert sum(s.size for s in segs) == SIZE
    assert all(a.start + a.size == b.start for a, b in zip(segs, segs[1:], strict=False))


def test_committed_cells_and_sizes() -> None:
    assert _committed_cells([(True, 2), (False, 2)], 4, 2) == [1.0, 0.0]
    assert _committed_cells([(False, 1), (True, 1)], 2, 1) == [0.5]
    assert human_size(0x1000) == "4 KiB"
    assert human_size(32 << 30) == "32 GiB"
    assert human_size((32 << 30) - (256 << 20)) == "31.8 GiB"


def test_tour_map_with_epc_plot(tour: tuple[Report, Recording]) -> None:
    report, rec = tour
    svg = map_svg_of(report, rec)
    layout = report.layout()
    assert len(groups(svg, "region")) == sum(len(v) for v in layout.values())
    assert groups(svg, "epc-plot")
    epc = epc_over_time(rec)
    assert len(epc) == len(rec.calls)
    assert rec.epc_start is not None
    assert epc[0] == rec.epc_start                  # line 0 only reserves
    assert epc[1] == rec.epc_start + 2              # line 1 commits two pages now
    assert epc[-1] == report.enclave.machine.epc.used   # type: ignore[attr-defined]

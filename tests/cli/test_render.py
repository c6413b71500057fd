"""Rendering: JSON shapes of replay-format.md, the text line per call, the map table."""

from __future__ import annotations

import io
import json

from hypothesis import given
from hypothesis import strategies as st
from replay_fakes import USER_BASE, FakeEnclave
from rich.console import Console

from sgx_emm import render
from sgx_emm.replay import CallResult, RegionInfo, run

FMT = render.AddressFormat(USER_BASE, USER_BASE + 0x1000000)


def text_of(renderable: object, width: int = 200) -> str:
    console = Console(width=width, color_system=None, record=True, file=io.StringIO())
    console.print(renderable, soft_wrap=True)
    return console.export_text()


def test_addresses_are_user_relative_inside_the_user_range_else_absolute_hex() -> None:
    assert FMT(USER_BASE + 0x20000) == "u+0x20000"
    assert FMT(USER_BASE) == "u+0x0"
    assert FMT(USER_BASE - 0x1000) == hex(USER_BASE - 0x1000)
    assert FMT(USER_BASE + 0x1000000) == hex(USER_BASE + 0x1000000)
    assert FMT(None) is None


def test_committed_string_is_run_length() -> None:
    assert render.committed_string(((True, 3), (False, 5))) == "3c5u"
    assert render.committed_string(()) == ""


def test_call_json_shapes() -> None:
    ok = CallResult(2, "alloc", 0, addr=USER_BASE + 0x2000, target=USER_BASE + 0x2000,
                    counts={"leaf": {"EACCEPT": 2}})
    assert render.call_json(ok, FMT) == {"line": 2, "op": "alloc", "ret": 0,
                                         "addr": "u+0x2000", "counts": {"leaf": {"EACCEPT": 2}}}
    read = CallResult(3, "read", 0, target=USER_BASE, data=b"\xc0\xff", thread=2)
    assert render.call_json(read, FMT) == {"line": 3, "op": "read", "ret": 0,
                                           "addr": "u+0x0", "target": "u+0x0", "thread": 2,
                                           "data": "c0ff", "counts": {}}
    failed = CallResult(4, "commit", "EINVAL", target=USER_BASE, expect="EINVAL")
    got = render.call_json(failed, FMT)
    assert got["ret"] == "EINVAL" and got["as_expected"] is True
    crash = CallResult(5, "read", "CRASH", target=USER_BASE, detail="unhandled #PF")
    assert render.call_json(crash, FMT)["detail"] == "unhandled #PF"
    bad = CallResult(6, None, error="malformed JSON: Expecting value (column 1)")
    assert render.call_json(bad, FMT) == {"line": 6,
                                          "error": "malformed JSON: Expecting value (column 1)"}
    bad_op = CallResult(7, "commit", error='commit: missing field "size"')
    assert render.call_json(bad_op, FMT) == {"line": 7, "op": "commit",
                                             "error": 'commit: missing field "size"'}


def test_final_json_has_layout_of_both_roots_and_counts() -> None:
    enc = FakeEnclave()
    report = run([json.dumps(o) for o in (
        {"op": "alloc", "size": "0x3000", "flags": "COMMIT_ON_DEMAND"},
        {"op": "commit", "addr": "$0", "size": "0x1000"},
        {"op": "mm_alloc", "size": "0x1000", "flags": "COMMIT_NOW|SYSTEM"},
    )], enclave=enc)
    final = render.final_json(report)
    assert final["layout"]["user"] == [{"start": "u+0x100000", "size": "0x3000",
                                        "alloc_flags": 4, "si_flags": 0x203,
                                        "committed": "1c2u", "meta": False, "handler": False}]
    (rts,) = final["layout"]["rts"]
    assert rts["start"] == "0x7f0001000000" and rts["committed"] == "1c"
    assert final["counts"]["leaf"] == {"EACCEPT": 2}
    assert final["summary"] == {"calls": 3, "failed": 0, "not_run": 0, "unexpected": 0}
    json.dumps(final)  # serialisable as is


def test_counts_text_leaves_out_the_runners_own_entries() -> None:
    counts = {"entry": {"EENTER": 1, "EEXIT": 1, "ERESUME": 2}, "leaf": {"EAUG": 1},
              "pf": {"0x8006": 1}, "aex": {"#PF": 1}}
    assert render.counts_text(counts) == "EAUG=1 pf:0x8006=1 AEX:#PF=1 ERESUME=2"
    assert "EENTER=1" in render.counts_text(counts, routine=True)


def test_call_text_lines() -> None:
    line = text_of(render.call_text(CallResult(0, "alloc", 0, addr=USER_BASE + 0x2000,
                                               counts={"leaf": {"EACCEPT": 1}}), FMT))
    assert line.split() == ["0", "alloc", "→", "u+0x2000", "0", "EACCEPT=1"]
    line = text_of(render.call_text(CallResult(3, "read", 0, target=USER_BASE, thread=1,
                                               data=b"\xab" * 40), FMT))
    assert "read@t1" in line and "ab" * 32 + "… (40 bytes)" in line
    line = text_of(render.call_text(CallResult(5, "commit", "EACCES", target=USER_BASE,
                                               expect="0"), FMT))
    assert "EACCES" in line and "UNEXPECTED (expected 0)" in line
    line = text_of(render.call_text(CallResult(6, None, error="unknown op 'mmap'"), FMT))
    assert line.split(None, 2) == ["6", "?", "error: unknown op 'mmap'\n"]


def test_commit_bar() -> None:
    assert render.commit_bar(((True, 4),), 4) == "████"
    assert render.commit_bar(((False, 2), (True, 2)), 4) == "··██"
    # 32 pages in 16 cells: a cell holds two pages
    assert render.commit_bar(((True, 3), (False, 29)), 32) == "█▒" + "·" * 14
    assert render.commit_bar(((False, 1 << 24),), 1 << 24) == "·" * 16
    assert render.commit_bar(((False, (1 << 24) - 1), (True, 1)), 1 << 24) == "·" * 15 + "▒"
    assert render.commit_bar((), 0) == ""


def test_map_table_shows_mode_prot_type_bar_and_meta() -> None:
    layout = {
        "user": [RegionInfo(USER_BASE, 0x20000, 0x01, 0x0, ((False, 32),)),
                 RegionInfo(USER_BASE + 0x8000, 0x10000, 0x44, 0x203,
                            ((True, 2), (False, 14)), is_meta=True)],
        "rts": [RegionInfo(0x7F0000001000, 0x1000, 0x80 | 0x2, 0x100, ((True, 1),))],
    }
    out = text_of(render.map_table(layout, FMT))
    rows = [line.split() for line in out.splitlines()]
    assert ["user", "u+0x0", "0x20000", "RESERVE", "---", "-", "················", "0/32"] \
        in rows
    assert ["user", "u+0x8000", "0x10000", "ON_DEMAND", "rw-", "REG", "██··············",
            "2/16", "FIXED", "meta"] in rows
    assert ["rts", "0x7f0000001000", "0x1000", "COMMIT_NOW", "---", "TCS", "█", "1/1",
            "SYSTEM"] in rows


def test_flags_text_names_alignment_handler_and_meta() -> None:
    region = RegionInfo(0, 0x1000, 0x22 | (16 << 24), 0x203, ((True, 1),))
    assert render.flags_text(region) == "GROWSUP ALIGNED(16)"
    region = RegionInfo(0, 0x1000, 0x84, 0x203, ((True, 1),), is_meta=True, has_handler=True)
    assert render.flags_text(region) == "SYSTEM handler meta"


def test_commit_modes() -> None:
    assert render.commit_mode(0x01) == "RESERVE"
    assert render.commit_mode(0x02 | 0x40) == "COMMIT_NOW"
    assert render.commit_mode(0x04 | 0x80) == "ON_DEMAND"
    assert render.commit_mode(0x80) == "static"  # mm_init_ema of loaded pages
    assert render.commit_mode(0x06) == "0x6"  # not a valid combination: shown as it is


def _pages(n: int, committed: bool, start: int, count: int = 1) -> list[RegionInfo]:
    return [RegionInfo(start + k * n * 0x1000, n * 0x1000, 0x04, 0x203, ((committed, n),))
            for k in range(count)]


def _cells(layout: dict[str, list[RegionInfo]], full: bool = False) -> list[list[str]]:
    rows, _, regions = render.map_rows(layout, FMT, full=full)
    return [[cells[c] for c in render.MAP_COLUMNS] + [render.commit_bar(r.runs, r.pages)]
            for cells, r in zip(rows, regions, strict=True)]


def test_map_folds_runs_of_alike_neighbours_into_one_row_with_totals() -> None:
    user = (_pages(1, True, USER_BASE, 5)                   # five alike, adjacent
            + _pages(1, False, USER_BASE + 0x5000, 2)       # only two: not folded
            + _pages(1, True, USER_BASE + 0x10000, 3))      # three, after a gap
    assert _cells({"user": user}) == [
        ["user", "u+0x0", "0x5000", "ON_DEMAND", "rw-", "REG", "5/5", "5 × 0x1000", "█████"],
        ["user", "u+0x5000", "0x1000", "ON_DEMAND", "rw-", "REG", "0/1", "", "·"],
        ["user", "u+0x6000", "0x1000", "ON_DEMAND", "rw-", "REG", "0/1", "", "·"],
        ["user", "u+0x10000", "0x3000", "ON_DEMAND", "rw-", "REG", "3/3", "3 × 0x1000", "███"],
    ]
    full = _cells({"user": user}, full=True)
    assert [row[1] for row in full] == [FMT(r.start) for r in user]
    assert len(text_of(render.map_table({"user": user}, FMT)).splitlines()) > len(
        text_of(render.map_table({"user": user}, FMT, full=False)).splitlines())


def test_map_folds_only_equal_commit_patterns_and_keeps_partial_bars() -> None:
    half = ((True, 1), (False, 1))
    user = [RegionInfo(USER_BASE + k * 0x2000, 0x2000, 0x04, 0x203, half) for k in range(4)]
    user.append(RegionInfo(USER_BASE + 0x8000, 0x2000, 0x04, 0x203, ((True, 2),)))
    rows = _cells({"user": user})
    assert rows[0][2] == "0x8000" and rows[0][6] == "4/8" and rows[0][8] == "█·█·█·█·"
    assert rows[0][7] == "4 × 0x2000"
    assert rows[1][1] == "u+0x8000" and rows[1][6] == "2/2"


def test_plain_map_lines_align_columns() -> None:
    layout = {"user": _pages(1, True, USER_BASE, 3) + _pages(4, False, USER_BASE + 0x3000)}
    lines = list(render.map_lines(layout, FMT))
    assert lines[0] == "region map"
    assert lines[1].split()[:7] == ["root", "start", "size", "mode", "prot", "type",
                                    "committed"]
    assert lines[3].split() == ["user", "u+0x0", "0x3000", "ON_DEMAND", "rw-", "REG", "███",
                                "3/3", "3", "×", "0x1000"]
    assert lines[4].split()[:3] == ["user", "u+0x3000", "0x4000"]
    assert len({line.index("ON_DEMAND") for line in lines[3:]}) == 1  # one column


def test_print_map_writes_plain_lines_off_a_terminal_and_reports_progress() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=100)
    layout = {"user": [r for k in range(500)
                       for r in _pages(1, k % 2 == 0, USER_BASE + k * 0x1000)]}
    seen: list[tuple[int, int]] = []
    render.print_map(console, layout, FMT, full=True, advance=lambda d, t: seen.append((d, t)))
    text = out.getvalue().splitlines()
    assert len(text) == 503 and seen[-1] == (503, 503)
    out = io.StringIO()
    render.print_map(Console(file=out, force_terminal=False), layout, FMT)
    assert len(out.getvalue().splitlines()) == 503  # nothing alike next to each other


@given(st.lists(st.tuples(st.booleans(), st.integers(1, 50)), min_size=1, max_size=20),
       st.integers(1, 40))
def test_cells_share_out_every_page_and_every_committed_page(
        runs: list[tuple[bool, int]], width: int) -> None:
    """One cell walk serves the text bar and the SVG map: each page lands in exactly
    one cell, and each committed page is counted in its cell."""
    from sgx_emm.replay import committed_per_cell

    pages = sum(n for _, n in runs)
    cells = committed_per_cell(runs, pages, min(width, pages))
    assert sum(span for _, span in cells) == pages
    assert sum(got for got, _ in cells) == sum(n for c, n in runs if c)
    assert all(0 <= got <= span for got, span in cells)

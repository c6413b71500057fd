"""Readable output: indented, decoded events; a map that fits 80 columns; no padding."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from rich.console import Console

from sgx_emm import cli, render
from sgx_emm.replay import example_lines, run
from sgx_emm.trace import Event

BASE, USER = 0x7F0000000000, 0x7F0800000000
FMT = render.AddressFormat(USER, USER + (1 << 30), BASE)


def test_events_are_decoded_and_use_one_address_form() -> None:
    eaccept = Event("leaf", "EACCEPT", {"addr": USER + 0x21000, "secinfo": 0x20B})
    assert render.event_text(eaccept, FMT).split(None, 2)[2] == \
        "addr=u+0x21000 secinfo=REG|RW|PENDING (0x20b)"
    ioctl = Event("ioctl", "MODIFY_TYPES", {"offset": USER - BASE + 0x5000, "length": 0x1000,
                                            "page_type": 1})
    assert "addr=u+0x5000" in render.event_text(ioctl, FMT)
    assert "page_type=TCS (0x1)" in render.event_text(ioctl, FMT)
    ocall = Event("ocall", "alloc_ocall", {"addr": USER, "flags": 0x42, "page_type": 0x200})
    text = render.event_text(ocall, FMT)
    assert "flags=COMMIT_NOW|FIXED (0x42)" in text and "page_type=REG (0x200)" in text
    mmap = Event("syscall", "mmap", {"addr": USER, "prot": 3, "flags": 0x11})
    assert "prot=RW (0x3) flags=MAP_SHARED|MAP_FIXED (0x11)" in render.event_text(mmap, FMT)
    # JSON keeps the raw values
    assert render.event_json(eaccept, FMT)["secinfo"] == "0x20b"


def test_events_are_indented_by_entry_depth() -> None:
    depth = render.EntryDepth()
    stream = [Event("entry", "EENTER"), Event("leaf", "EACCEPT"), Event("aex", "#PF"),
              Event("pf", "0x8007"), Event("entry", "EENTER"), Event("pf", "0x6"),
              Event("entry", "EENTER"), Event("leaf", "EACCEPT"), Event("entry", "EEXIT"),
              Event("entry", "ERESUME"), Event("leaf", "EACCEPT"), Event("entry", "EEXIT")]
    got = [depth.depth(e) for e in stream]
    # the second EENTER faulted (a pf with no AEX before it): it never entered
    assert got == [0, 1, 1, 1, 1, 1, 1, 2, 1, 0, 1, 0]
    assert render.event_text(stream[7], FMT, 2).startswith(" " * 12 + "leaf")


def test_encls_leaves_name_their_page() -> None:
    report = run(['{"op": "alloc", "addr": null, "size": "0x1000", "flags": "COMMIT_NOW"}',
                  '{"op": "uncommit", "addr": "$0", "size": "0x1000"}'], size=1 << 30)
    assert report.results[1].ret == 0
    seen: list[Event] = []
    enc = report.enclave
    enc.trace.subscribe(seen.append)  # type: ignore[attr-defined]
    with enc.enter():
        addr = enc.emm.alloc(None, 0x1000, 2)
        enc.emm.uncommit(addr, 0x1000)
    leaves = {e.name: e.details for e in seen if e.category == "leaf"}
    assert leaves["EMODT"]["addr"] == addr and leaves["EREMOVE"]["addr"] == addr


def test_the_map_fits_80_columns_with_every_column_but_the_bar() -> None:
    report = run(example_lines())
    fmt = render.address_format(report)
    console = Console(width=80, force_terminal=True, color_system=None)
    with console.capture() as captured:
        console.print(render.map_table(report.layout(), fmt, width=80))
    lines = captured.get().splitlines()
    assert max(len(line) for line in lines) <= 80
    head = lines[2].split()
    assert head[:4] == ["root", "start", "size", "mode"] and "flags" in head
    text = "\n".join(lines)
    for word in ("meta", "FIXED", "handler", "16/16", "SYSTEM", "ON_DEMAND", "rts", "TCS"):
        assert word in text, word
    wide = Console(width=200, force_terminal=True, color_system=None)
    with wide.capture() as captured:
        wide.print(render.map_table(report.layout(), fmt, width=200))
    assert "████████████████" in captured.get()  # the full bar when there is room


def test_piped_output_has_no_trailing_padding(tmp_path: Path) -> None:
    for command in ("map", "replay"):
        got = CliRunner().invoke(cli.main, [command])
        assert got.exit_code == 0, got.output
        assert all(line == line.rstrip() for line in got.output.splitlines()), command

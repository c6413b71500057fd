"""Sequence diagrams: the model read from events, the SVG and the Mermaid text."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from sgx_emm.draw import Recording, record_replay
from sgx_emm.draw.flow import (
    CPU,
    EMM,
    ENCLAVE,
    KERNEL,
    LIFELINES,
    TRTS,
    URTS,
    decode_secinfo,
    interpret,
    interpret_all,
)
from sgx_emm.draw.mermaid import sequence_mermaid
from sgx_emm.draw.recording import CallRecord
from sgx_emm.draw.sequence import sequence_svg
from sgx_emm.replay import CallResult, Report
from sgx_emm.trace import Event

SVG = "{http://www.w3.org/2000/svg}"


def one_call(lines: list[str], line: int):  # type: ignore[no-untyped-def]
    _, rec = record_replay(lines)
    call = next(c for c in rec.closed if c.line == line)
    return rec, interpret(call, rec)


def test_secinfo_is_decoded() -> None:
    assert decode_secinfo(0x20B) == "R|W PENDING REG"
    assert decode_secinfo(0x410) == "NONE MODIFIED TRIM"
    assert decode_secinfo(0x125) == "R|X PR TCS"


def test_fault_driven_commit_reads_as_the_design_describes() -> None:
    rec, flow = one_call([
        '{"op": "alloc", "addr": null, "size": "0x2000", "flags": "COMMIT_ON_DEMAND"}',
        '{"op": "write", "addr": "$0", "data": "01"}'], 1)
    arrows = [(m.src, m.dst, m.style) for m in flow.messages]
    # the first #PF goes to the kernel, which EAUGs and lets the runtime ERESUME
    first = arrows.index((CPU, KERNEL, "fault"))
    assert arrows[first + 1] == (KERNEL, CPU, "leaf")
    assert flow.messages[first + 1].label.startswith("EAUG")
    assert (URTS, CPU, "leaf") in arrows[first + 2:first + 4]
    # the second is reported: the runtime enters the exception handler, which calls
    # the EMM's handler, which EACCEPTs
    kinds = [n.kind for n in flow.nodes()]
    assert kinds.count("fault") == 2
    assert {"exception", "exc_entry", "handler", "pfhandler"} <= set(kinds)
    pfh = next(n for n in flow.nodes() if n.kind == "pfhandler")
    assert pfh.actor == EMM and pfh.caller == TRTS
    accept = next(m for m in flow.messages if m.label.startswith("EACCEPT"))
    assert accept.src == EMM and "R|W PENDING REG" in accept.label
    # each fault knows what fixed it: the kernel first, then the enclave's handler
    faults = flow.faults()
    assert faults[0].fixed_by is faults[0]
    assert faults[1].fixed_by is not None and faults[1].fixed_by.kind == "handler"
    # nesting: every node ends after it starts and lies inside its parent
    for node in flow.nodes():
        assert node.start <= node.end and node.row <= node.end_row
        for child in node.children:
            assert node.start <= child.start and child.end <= node.end


def test_ocall_leaves_and_reenters_the_enclave() -> None:
    _, flow = one_call(['{"op": "alloc", "addr": null, "size": "0x1000", '
                        '"flags": "COMMIT_ON_DEMAND"}'], 0)
    labels = [(m.src, m.dst, m.label) for m in flow.messages]
    assert labels[0] == (URTS, ENCLAVE, "EENTER (ecall)")
    assert labels[1][:2] == (ENCLAVE, EMM) and labels[1][2].startswith("sgx_mm_alloc(")
    assert labels[2][:2] == (EMM, TRTS) and labels[2][2].startswith("alloc_ocall(")
    assert labels[3] == (TRTS, URTS, "EEXIT: alloc_ocall")
    assert labels[4][:2] == (URTS, KERNEL) and labels[4][2].startswith("mmap(")
    assert "MAP_SHARED|MAP_FIXED" in labels[4][2]
    assert (URTS, TRTS, "EENTER (ocall return)") in labels
    assert labels[-2] == (EMM, ENCLAVE, "0, u+0x20000")
    assert labels[-1] == (ENCLAVE, URTS, "EEXIT")


def test_unknown_events_become_instants_not_losses() -> None:
    rec = Recording()
    call = CallRecord(0, "commit", 0, [Event("entry", "EENTER", {"tcs": 1}),
                                       Event("mystery", "THING", {"x": 5}),
                                       Event("entry", "EEXIT", {"tcs": 1})],
                      CallResult(0, "commit", ret=0))
    flow = interpret(call, rec)
    assert [(i.category, i.name, i.args) for i in flow.instants] == \
        [("mystery", "THING", {"x": "0x5"})]
    assert [n.kind for n in flow.nodes()] == ["ecall", "call"]


def test_svg_has_lifelines_messages_and_activations(tour: tuple[Report, Recording]) -> None:
    _, rec = tour
    calls = [c for c in rec.closed if c.line in (4, 7)]
    flows = interpret_all(rec, calls=calls)
    root = ET.fromstring(sequence_svg(flows, "two calls"))
    assert root.tag == f"{SVG}svg"
    groups = list(root.iter(f"{SVG}g"))
    lifelines = [g.get("data-name") for g in groups if g.get("class") == "lifeline"]
    assert lifelines == list(LIFELINES)
    assert [g.get("data-line") for g in groups if g.get("class") == "call"] == ["4", "7"]
    messages = [g for g in groups if g.get("class") == "message"]
    assert len(messages) == sum(len(f.messages) for f in flows)
    faults = [g for g in messages if g.get("data-style") == "fault"]
    assert faults and all(any(e.get("stroke-dasharray") for e in g) for g in faults)
    bars = [e for e in root.iter(f"{SVG}rect") if e.get("class") == "activation"]
    assert len(bars) == sum(len(f.nodes()) for f in flows)
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert "EACCEPT u+0x21000 [NONE MODIFIED TRIM]" in texts    # SECINFO decoded


def test_mermaid_balances_activations(tour: tuple[Report, Recording]) -> None:
    _, rec = tour
    text = sequence_mermaid(interpret_all(rec, calls=rec.closed[:10]))
    lines = text.splitlines()
    assert lines[0] == "sequenceDiagram"
    assert sum(1 for ln in lines if ln.strip().startswith("participant")) == len(LIFELINES)
    depth: dict[str, int] = {}
    for ln in lines:
        word, _, who = ln.strip().partition(" ")
        if word == "activate":
            depth[who] = depth.get(who, 0) + 1
        elif word == "deactivate":
            depth[who] -= 1
            assert depth[who] >= 0, ln
    assert all(v == 0 for v in depth.values())
    assert "--)" in text and "#35;PF" in text and ";PF" not in text.replace("#35;PF", "")


@pytest.mark.parametrize("bad", [[1, 2], [99]])
def test_choose_calls_refuses_unknown_lines(tour: tuple[Report, Recording],
                                            bad: list[int]) -> None:
    from sgx_emm.draw.choose import NoSuchLine, choose_calls

    if bad == [1, 2]:
        assert [c.line for c in choose_calls(tour[1], bad)] == [1, 2]
        return
    with pytest.raises(NoSuchLine, match="line 99 is not a call"):
        choose_calls(tour[1], bad)


def test_a_failing_call_returns_its_reason(tour: tuple[Report, Recording]) -> None:
    _, rec = tour
    call = next(c for c in rec.closed if c.line == 3)      # SYSTEM in the public API
    flow = interpret(call, rec)
    back = [m for m in flow.messages if m.src == EMM and m.dst == ENCLAVE]
    assert len(back) == 1
    assert back[0].style == "return" and back[0].label.startswith("EINVAL: ")
    assert "SYSTEM" in back[0].label and len(back[0].label) <= len("EINVAL: ") + 72


def test_a_faulting_entry_is_retried_before_the_call_starts() -> None:
    rec = Recording()
    events = [Event("entry", "EENTER", {"tcs": 1}), Event("pf", "0x4", {"addr": 0x5000}),
              Event("entry", "EENTER", {"tcs": 1}), Event("leaf", "EACCEPT", {"addr": 0x9000}),
              Event("entry", "EENTER", {"tcs": 2}), Event("entry", "EEXIT", {"tcs": 2}),
              Event("entry", "EEXIT", {"tcs": 1})]
    flow = interpret(CallRecord(0, "commit", 0, events, CallResult(0, "commit", ret=0)), rec)
    labels = [m.label for m in flow.messages]
    assert labels[:4] == ["EENTER (ecall)", "#PF errcd=0x4 0x5000 (no AEX)", "EENTER (again)",
                          "sgx_mm_commit()"]
    kinds = [(n.kind, n.name) for n in flow.nodes()]
    assert kinds == [("ecall", "ecall"), ("kernel_pf", "#PF 0x4"), ("call", "commit"),
                     ("ecall", "nested ecall")]
    root = flow.roots[0]
    assert root.end == flow.end       # the outer EEXIT closes the ecall last

"""Perfetto / Chrome trace-event JSON: the format's fields, tracks, nesting, flows."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from sgx_emm import Enclave, draw, flags
from sgx_emm.cost import CostModel
from sgx_emm.draw import Recording
from sgx_emm.draw.perfetto import PID_ENCLAVE, PID_KERNEL, PID_URTS, trace_events, write_trace
from sgx_emm.replay import Report

REQUIRED = {"X": {"ph", "name", "cat", "pid", "tid", "ts", "dur", "args"},
            "i": {"ph", "name", "pid", "tid", "ts", "s"},
            "s": {"ph", "id", "name", "cat", "pid", "tid", "ts"},
            "f": {"ph", "id", "name", "cat", "pid", "tid", "ts"},
            "M": {"ph", "name", "pid", "tid", "args"}}


def check_format(doc: dict[str, Any]) -> list[dict[str, Any]]:
    events = doc["traceEvents"]
    for e in events:
        assert REQUIRED[e["ph"]] <= e.keys(), e
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        if "ts" in e:
            assert e["ts"] >= 0
        if e["ph"] == "X":
            assert e["dur"] >= 0
    return events


def test_tour_trace_has_the_tracks_slices_and_flows(tour: tuple[Report, Recording]) -> None:
    _, rec = tour
    doc = json.loads(json.dumps(trace_events(rec)))        # plain JSON all the way
    events = check_format(doc)
    meta = {(e["pid"], e["tid"], e["name"]): e["args"] for e in events if e["ph"] == "M"}
    assert meta[(PID_ENCLAVE, 0, "process_name")] == {"name": "enclave"}
    assert meta[(PID_URTS, 0, "process_name")] == {"name": "untrusted runtime"}
    assert meta[(PID_KERNEL, 0, "process_name")] == {"name": "kernel"}
    # the tour uses threads 0..3: one enclave track each
    enclave_threads = {tid for (pid, tid, name) in meta if pid == PID_ENCLAVE
                       and name == "thread_name"}
    assert enclave_threads == {1, 2, 3, 4}
    slices = [e for e in events if e["ph"] == "X"]
    cats = Counter(e["cat"] for e in slices)
    assert {"ecall", "emm", "ocall", "ioctl", "syscall", "pf", "exception"} <= cats.keys()
    # one ecall and one manager call per line that ran
    ran = sum(1 for c in rec.closed if c.result is not None and c.result.error is None)
    assert sum(1 for e in slices if e["name"] == "ecall") == ran
    assert sum(1 for e in slices if e["cat"] == "emm" and e["name"] ==
               "sgx_mm_alloc") == sum(1 for c in rec.closed if c.op == "alloc")
    # every leaf is an instant with its operands; EACCEPTs carry decoded SECINFO
    leaves = [e for e in events if e["ph"] == "i" and e["cat"] == "leaf"]
    counts = rec.closed[-1].result
    assert counts is not None
    assert len(leaves) == sum(n for c in rec.closed if c.result
                              for n in c.result.counts.get("leaf", {}).values())
    accepts = [e for e in leaves if e["name"] == "EACCEPT"]
    assert accepts and all("REG" in e["args"]["secinfo"] or "TRIM" in e["args"]["secinfo"]
                           or "TCS" in e["args"]["secinfo"] for e in accepts)
    # flows: each fault starts one, fixed by the kernel or by a handler
    starts = {e["id"]: e for e in events if e["ph"] == "s"}
    ends = {e["id"]: e for e in events if e["ph"] == "f"}
    assert starts and starts.keys() == ends.keys()
    aex = sum(n for c in rec.closed if c.result for n in c.result.counts.get("aex", {}).values())
    assert len(starts) == aex
    assert {e["pid"] for e in ends.values()} == {PID_KERNEL, PID_ENCLAVE}
    for fid, s in starts.items():
        assert ends[fid]["ts"] >= s["ts"]


def test_slices_nest_on_every_track(tour: tuple[Report, Recording]) -> None:
    """The format requires complete events of one track to nest, never overlap."""
    events = trace_events(tour[1])["traceEvents"]
    tracks: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
    for e in events:
        if e["ph"] == "X":
            tracks[(e["pid"], e["tid"])].append((e["ts"], e["ts"] + e["dur"]))
    eps = 1e-3
    for spans in tracks.values():
        spans.sort(key=lambda s: (s[0], -s[1]))
        stack: list[tuple[float, float]] = []
        for start, end in spans:
            while stack and stack[-1][1] <= start + eps:
                stack.pop()
            if stack:
                assert end <= stack[-1][1] + eps, (start, end, stack[-1])
            stack.append((start, end))


def test_time_follows_the_cost_model(tour: tuple[Report, Recording]) -> None:
    rec = tour[1]
    slow = trace_events(rec, CostModel(ghz=1.0))["traceEvents"]
    fast = trace_events(rec, CostModel(ghz=2.0))["traceEvents"]
    end = max(e["ts"] + e.get("dur", 0) for e in slow if "ts" in e)
    assert end > 0
    assert max(e["ts"] + e.get("dur", 0) for e in fast if "ts" in e) * 2 == pytest.approx(end)


def test_a_python_run_can_be_recorded_and_written(tmp_path: Path) -> None:
    enc = Enclave.create()
    with Recording().attach(enc) as rec, enc.enter() as t:
        addr = enc.emm.alloc(None, 0x2000, flags.COMMIT_ON_DEMAND)
        t.write(addr, b"x")
    out = tmp_path / "run.json"
    write_trace(rec, str(out))
    events = check_format(json.loads(out.read_text()))
    names = {e["name"] for e in events}
    assert {"ecall", "alloc_ocall", "mmap", "EAUG", "EACCEPT"} <= names
    assert [c.op for c in rec.calls] == ["run"]
    # after detaching nothing more is kept
    n = len(rec.events())
    with enc.enter():
        enc.emm.alloc(None, 0x1000, flags.COMMIT_NOW)
    assert len(rec.events()) == n


def test_record_is_the_python_call_on_a_trace(tmp_path: Path) -> None:
    enc = Enclave.create()
    with draw.record(enc.trace) as rec, enc.enter():
        enc.emm.alloc(None, 0x1000, flags.COMMIT_NOW)
    out = tmp_path / "t.json"
    draw.write_trace(rec, str(out))
    events = check_format(json.loads(out.read_text()))
    assert {"ecall", "EAUG", "EACCEPT", "mmap"} <= {e["name"] for e in events}


def test_a_python_run_on_two_threads_gets_a_track_each() -> None:
    import threading

    enc = Enclave.create()
    tcs = enc.tcs_addresses
    done = threading.Barrier(2)

    def work(k: int) -> None:
        with enc.enter(tcs=tcs[k]):
            enc.emm.alloc(None, 0x1000, flags.COMMIT_NOW)
            done.wait()

    with draw.record(enc) as rec:
        workers = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    runs = rec.calls
    assert sorted(c.thread for c in runs) == [0, 1] and {c.op for c in runs} == {"run"}
    events = trace_events(rec)["traceEvents"]
    ecalls = [e for e in events if e["ph"] == "X" and e["cat"] == "ecall"]
    assert sorted(e["tid"] for e in ecalls) == [1, 2]


def test_each_ecall_lasts_what_the_cost_summary_says(tour: tuple[Report, Recording]) -> None:
    from sgx_emm.draw.costview import summary_of

    _, rec = tour
    per_call = {line: cycles for line, _, cycles in summary_of(rec).per_call}
    ecalls = [e for e in trace_events(rec)["traceEvents"]
              if e["ph"] == "X" and e["name"] == "ecall"]      # the replay's own entries
    assert len(ecalls) == len(per_call)
    assert [e["args"]["cycles"] for e in ecalls] == list(per_call.values())

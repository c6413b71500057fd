"""A recording as Chrome trace-event JSON, which ui.perfetto.dev and chrome://tracing open.

Processes and tracks: the enclave (pid 1) with one track per enclave thread; the
untrusted runtime (pid 2) and the kernel (pid 3), each with a track per enclave
thread whose work they do. Complete events ("X") are the ecalls, the manager's
calls, ocalls, system calls and ioctls, the #PF path from AEX to ERESUME and the
exception handlers; instant events ("i") are the leaves with their operands;
flow events ("s" then "f", sharing an id) draw an arrow from each fault to the
handler that fixed it. Metadata events ("M") name processes and threads.

Time is simulated: each event lasts what the cost model says, so the picture
shows where the time would go on hardware. Timestamps are microseconds.
"""

from __future__ import annotations

import json
from typing import Any

from sgx_emm.cost import CostModel
from sgx_emm.draw.flow import (
    C_NAMES,
    CPU,
    ENCLAVE,
    IN_ENCLAVE,
    URTS,
    CallFlow,
    Node,
    interpret_all,
)
from sgx_emm.draw.recording import Recording

PID_ENCLAVE = 1
PID_URTS = 2
PID_KERNEL = 3
PROCESS_NAMES = {PID_ENCLAVE: "enclave", PID_URTS: "untrusted runtime", PID_KERNEL: "kernel"}

#: Category ("cat") of each node kind in the trace.
_CATEGORIES = {
    "ecall": "ecall", "call": "emm", "ocall": "ocall", "ocall_host": "ocall",
    "syscall": "syscall", "ioctl": "ioctl", "fault": "pf", "kernel_pf": "pf",
    "exception": "exception", "exc_entry": "exception", "handler": "exception",
    "pfhandler": "emm", "custom_handler": "exception",
}


def _pid(actor: str) -> int:
    if actor in IN_ENCLAVE or actor == CPU:
        return PID_ENCLAVE
    return PID_URTS if actor == URTS else PID_KERNEL


class _Writer:
    def __init__(self, cost: CostModel) -> None:
        self.cost = cost
        self.events: list[dict[str, Any]] = []
        self.tracks: set[tuple[int, int]] = set()
        self.flow_id = 0

    def us(self, cycles: float) -> float:
        return round(self.cost.micros(cycles), 4)

    def slice(self, pid: int, thread: int, name: str, cat: str, start: float, end: float,
              args: dict[str, Any]) -> None:
        tid = thread + 1
        self.tracks.add((pid, tid))
        self.events.append({"ph": "X", "name": name, "cat": cat, "pid": pid, "tid": tid,
                            "ts": self.us(start), "dur": self.us(max(end - start, 0.0)),
                            "args": args})

    def node(self, node: Node) -> None:
        cat = _CATEGORIES.get(node.kind, node.kind)
        if node.kind == "call" and node.actor == ENCLAVE:
            cat = "access"          # a read, write or fetch by the enclave's code
        args: dict[str, Any] = dict(node.args)
        args["cycles"] = round(node.end - node.start)
        if node.kind == "fault":
            # the path as the enclave thread sees it, and the kernel's handling
            self.slice(PID_ENCLAVE, node.thread, f"{node.name} (AEX to ERESUME)", cat,
                       node.start, node.end, args)
            self.slice(PID_KERNEL, node.thread, f"{node.name} handler", cat, node.start,
                       node.end, args)
        else:
            name = node.name if node.kind != "call" else _call_name(node)
            self.slice(_pid(node.actor), node.thread, name, cat, node.start, node.end, args)
        for child in node.children:
            self.node(child)

    def flow(self, flow: CallFlow) -> None:
        for node in flow.roots:
            self.node(node)
        for inst in flow.instants:
            pid = _pid(inst.actor)
            tid = flow.record.thread + 1
            self.tracks.add((pid, tid))
            self.events.append({"ph": "i", "s": "t", "name": inst.name, "cat": inst.category,
                                "pid": pid, "tid": tid, "ts": self.us(inst.time),
                                "args": dict(inst.args)})
        for fault in flow.faults():
            target = fault.fixed_by
            if target is None:
                continue
            self.flow_id += 1
            tid = fault.thread + 1
            # "s" binds to the enclosing slice on the enclave thread (the #PF path);
            # "f" with bp=e binds to the slice enclosing its timestamp (the handler)
            self.events.append({"ph": "s", "id": self.flow_id, "name": "fault to handler",
                                "cat": "flow", "pid": PID_ENCLAVE, "tid": tid,
                                "ts": self.us(fault.start)})
            pid = PID_KERNEL if target is fault else _pid(target.actor)
            self.events.append({"ph": "f", "bp": "e", "id": self.flow_id,
                                "name": "fault to handler", "cat": "flow", "pid": pid,
                                "tid": tid, "ts": self.us(target.start)})

    def metadata(self, rec: Recording) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for pid in sorted({p for p, _ in self.tracks}):
            out.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
                        "args": {"name": PROCESS_NAMES[pid]}})
            out.append({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0,
                        "args": {"sort_index": pid}})
        for pid, tid in sorted(self.tracks):
            who = {PID_ENCLAVE: "enclave thread", PID_URTS: "runtime for thread",
                   PID_KERNEL: "kernel for thread"}[pid]
            out.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                        "args": {"name": f"{who} {tid - 1}"}})
        return out


def _call_name(node: Node) -> str:
    return C_NAMES.get(node.name, node.name)


def trace_events(rec: Recording, cost: CostModel | None = None) -> dict[str, Any]:
    """The JSON object: {"traceEvents": [...], "displayTimeUnit": "ns", "otherData": {...}}."""
    model = cost or CostModel()
    writer = _Writer(model)
    for flow in interpret_all(rec, model):
        writer.flow(flow)
    events = writer.metadata(rec) + writer.events
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "otherData": {"generator": "sgx-emm", "clock": f"simulated, {model.ghz} GHz",
                          "calls": len(rec.calls)}}


def write_trace(rec: Recording, path: str, cost: CostModel | None = None) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(trace_events(rec, cost), fh)


__all__ = ["PID_ENCLAVE", "PID_KERNEL", "PID_URTS", "trace_events", "write_trace"]

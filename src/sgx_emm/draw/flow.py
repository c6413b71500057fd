"""From a flat event stream to who called whom: the model every picture draws.

The trace reports point events in the order they happened (EENTER, an ocall,
EEXIT, a system call, a leaf, an AEX, ...). Read in order with a stack, they
tell the nesting the design of SGX2 implies: an ecall holds the manager's call;
an ocall leaves the enclave with EEXIT and comes back with EENTER; a #PF goes
from the CPU to the kernel, which either fixes it (EAUG) and lets the untrusted
runtime ERESUME, or reports it, so the runtime enters the enclave's exception
handler, which calls the manager's fault handler. `interpret` turns one call's
events into that tree of `Node`s (with simulated times from the cost model) and
the ordered `Message`s between the lifelines, which the sequence diagram, the
Mermaid text and the Perfetto trace all read.

An event that fits no rule (a new kind, or an unusual order) is kept as an
instant on the lifeline that was active, so a picture never drops anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sgx_emm.cost import CostModel
from sgx_emm.draw.recording import CallRecord, Recording
from sgx_emm.trace import AEX, ENTRY, HANDLER, IOCTL, LEAF, OCALL, PAGE_FAULT, SYSCALL, Event

ENCLAVE = "enclave code"
EMM = "EMM"
TRTS = "trusted runtime"
URTS = "untrusted runtime"
KERNEL = "kernel"
CPU = "CPU"
#: The lifelines, left to right, as the reference's design document draws them.
LIFELINES = (ENCLAVE, EMM, TRTS, URTS, KERNEL, CPU)
IN_ENCLAVE = frozenset({ENCLAVE, EMM, TRTS})

#: Leaves the driver executes (ENCLS); every other leaf is the enclave's (ENCLU).
ENCLS_LEAVES = frozenset({"ECREATE", "EADD", "EEXTEND", "EINIT", "EAUG", "EMODPR", "EMODT",
                          "EREMOVE", "ETRACK", "EWB", "ELDU", "ELDB", "EBLOCK", "EPA"})

#: The C names of the replay ops, for labels.
C_NAMES = {
    "alloc": "sgx_mm_alloc", "commit": "sgx_mm_commit", "uncommit": "sgx_mm_uncommit",
    "dealloc": "sgx_mm_dealloc", "commit_data": "sgx_mm_commit_data",
    "modify_permissions": "sgx_mm_modify_permissions", "modify_type": "sgx_mm_modify_type",
    "fault": "sgx_mm_enclave_pfhandler",
}
ACCESS_OPS = frozenset({"read", "write", "fetch"})
_SUCCESS = (0, "CONTINUE_EXECUTION", "CONTINUE_SEARCH")
#: Longest reason shown on a return arrow.
REASON_CHARS = 72


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= REASON_CHARS else text[:REASON_CHARS - 1] + "…"

_ADDRESS_KEYS = frozenset({"addr", "src", "dest", "target", "maddr", "tcs", "base"})
_PAGE_TYPES = {0: "SECS", 1: "TCS", 2: "REG", 3: "VA", 4: "TRIM", 5: "SS_FIRST", 6: "SS_REST"}


def decode_secinfo(value: int) -> str:
    """SECINFO.FLAGS for people: `R|W PENDING REG` (permissions, state bits, type)."""
    prot = "|".join(c for c, bit in (("R", 1), ("W", 2), ("X", 4)) if value & bit) or "NONE"
    state = [n for n, bit in (("PENDING", 0x8), ("MODIFIED", 0x10), ("PR", 0x20)) if value & bit]
    pt = (value >> 8) & 0xFF
    return " ".join([prot, *state, _PAGE_TYPES.get(pt, f"PT={pt:#x}")])


_MAP_FLAGS = (("MAP_SHARED", 0x1), ("MAP_PRIVATE", 0x2), ("MAP_FIXED", 0x10),
              ("MAP_ANONYMOUS", 0x20))
_ALLOC_FLAGS = (("RESERVE", 0x1), ("COMMIT_NOW", 0x2), ("COMMIT_ON_DEMAND", 0x4),
                ("GROWSDOWN", 0x10), ("GROWSUP", 0x20), ("FIXED", 0x40), ("SYSTEM", 0x80))


def _page_type(pt: int) -> str:
    return _PAGE_TYPES.get(pt, f"PT={pt:#x}")


def _bit_names(value: int, names: tuple[tuple[str, int], ...]) -> str:
    """`A|B` for the known bits of value, any others in hex; `0` for none."""
    parts = [n for n, bit in names if value & bit]
    rest = value & ~sum(bit for _, bit in names)
    if rest:
        parts.append(f"{rest:#x}")
    return "|".join(parts) or "0"


def prot_text(value: int) -> str:
    return "|".join(c for c, bit in (("R", 1), ("W", 2), ("X", 4)) if value & bit) or "NONE"


def event_args(event: Event, rec: Recording) -> dict[str, str]:
    """An event's operands as text: addresses as the replay writes them, SECINFO
    and protections decoded, other numbers in hex; values of other types as is."""
    out: dict[str, str] = {}
    for key, value in event.details.items():
        if isinstance(value, bool) or not isinstance(value, int):
            out[key] = str(value)
        elif key in _ADDRESS_KEYS:
            out[key] = rec.address(value)
        elif key == "secinfo":
            out[key] = decode_secinfo(value)
        elif key in ("prot", "permissions"):
            out[key] = prot_text(value)
        elif key in ("flags_from", "flags_to"):
            out[key] = f"{prot_text(value)} {_page_type(value >> 8)}"
        elif key == "page_type":
            out[key] = _page_type(value if value < 0x100 else value >> 8)
        elif key == "flags" and event.category == SYSCALL:
            out[key] = _bit_names(value, _MAP_FLAGS)
        elif key == "flags" and event.category == OCALL:
            out[key] = _bit_names(value, _ALLOC_FLAGS)
        else:
            out[key] = f"{value:#x}"
    return out


@dataclass(eq=False, slots=True)
class Node:
    """Something with a duration: an ecall, the manager's call, an ocall, a system
    call, the #PF path, an exception handler. `actor` is its lifeline."""

    kind: str
    name: str
    actor: str
    caller: str
    start: float
    row: int
    args: dict[str, str] = field(default_factory=dict)
    style: str = "call"           # "call" or "fault" (drawn dashed)
    ret_label: str | None = None  # the return message, if one is drawn
    ret_to: str | None = None
    end: float = 0.0
    end_row: int = 0
    depth: int = 0                # activations of the same lifeline below this one
    thread: int = 0
    children: list[Node] = field(default_factory=list)
    fixed_by: Node | None = None  # for a fault: the node that handled it


@dataclass(frozen=True, slots=True)
class Message:
    """One arrow of a sequence diagram; `style` is call, return, fault or leaf;
    a `note` has src == dst."""

    row: int
    src: str
    dst: str
    label: str
    style: str
    time: float


@dataclass(frozen=True, slots=True)
class Instant:
    """A point event on a lifeline: a leaf with its operands, or anything else."""

    time: float
    actor: str
    name: str
    category: str
    args: dict[str, str]


@dataclass(slots=True)
class CallFlow:
    """One call, interpreted: its tree of nodes, messages and instants."""

    record: CallRecord
    roots: list[Node]
    messages: list[Message]
    instants: list[Instant]
    start: float
    end: float

    def nodes(self) -> list[Node]:
        """All nodes, depth first in start order."""
        out: list[Node] = []
        todo = list(reversed(self.roots))
        while todo:
            node = todo.pop()
            out.append(node)
            todo.extend(reversed(node.children))
        return out

    def faults(self) -> list[Node]:
        return [n for n in self.nodes() if n.kind == "fault"]


class _Interpreter:
    def __init__(self, record: CallRecord, rec: Recording, cost: CostModel, t0: float) -> None:
        self.record = record
        self.rec = rec
        self.cost = cost
        self.t = t0
        self.row = 0
        self.stack: list[Node] = []
        self.roots: list[Node] = []
        self.messages: list[Message] = []
        self.instants: list[Instant] = []
        self.events = record.events
        self.index = 0
        # the call starts once the entry succeeded: an EENTER can fault (the kernel
        # maps the TCS or SSA page) and be retried first
        self.call_pending = False

    # -- building blocks
    def message(self, src: str, dst: str, label: str, style: str) -> None:
        self.messages.append(Message(self.row, src, dst, label, style, self.t))
        self.row += 1

    def open(self, kind: str, name: str, actor: str, caller: str, *, label: str | None = None,
             style: str = "call", ret: str | None = None, ret_to: str | None = None,
             args: dict[str, str] | None = None) -> Node:
        node = Node(kind, name, actor, caller, self.t, self.row, dict(args or {}), style,
                    ret, ret_to, thread=self.record.thread)
        node.depth = sum(1 for n in self.stack if n.actor == actor)
        (self.stack[-1].children if self.stack else self.roots).append(node)
        self.stack.append(node)
        self.message(caller, actor, label if label is not None else name, style)
        return node

    def close(self) -> Node:
        node = self.stack.pop()
        if node.ret_label is not None:
            self.message(node.actor, node.ret_to or node.caller, node.ret_label, "return")
        node.end = self.t
        node.end_row = max(self.row - 1, node.row)
        return node

    def close_through(self, node: Node) -> None:
        while self.stack:
            if self.close() is node:
                return

    def top(self) -> Node | None:
        return self.stack[-1] if self.stack else None

    def find(self, kind: str) -> Node | None:
        for node in reversed(self.stack):
            if node.kind == kind:
                return node
        return None

    def inside_actor(self) -> str:
        """The in-enclave lifeline that is running now (who executes an ENCLU leaf)."""
        for node in reversed(self.stack):
            if node.actor in IN_ENCLAVE:
                return node.actor
        return EMM

    def instant(self, event: Event, actor: str) -> None:
        args = event_args(event, self.rec)
        self.instants.append(Instant(self.t, actor, event.name, event.category, args))

    def settle(self, event: Event) -> None:
        """Close what `event` shows has ended: a system call, ioctl or fault the
        kernel handled without an AEX ends at the next event that is not one of
        its leaves; an ocall that never left the enclave ends at anything but EEXIT."""
        is_encls = event.category == LEAF and event.name in ENCLS_LEAVES
        is_eexit = event.category == ENTRY and event.name == "EEXIT"
        while (top := self.top()) is not None:
            kernel_done = top.kind in ("syscall", "ioctl", "kernel_pf") and not is_encls
            ocall_done = top.kind == "ocall" and not is_eexit
            if not (kernel_done or ocall_done):
                return
            self.close()

    # -- the run
    def run(self) -> CallFlow:
        t0 = self.t
        events = self.events
        first_is_enter = bool(events) and events[0].category == ENTRY \
            and events[0].name == "EENTER"
        if not first_is_enter:
            self.open_call()
        for i, event in enumerate(events):
            self.index = i
            cost = self.cost.of(event.category, event.name)
            if self.call_pending and not self.entry_retry(event):
                self.call_pending = False
                self.open_call()
            self.dispatch(event, cost)
        while self.stack:
            self.close()
        return CallFlow(self.record, self.roots, self.messages, self.instants, t0, self.t)

    def open_call(self) -> Node:
        """The node of the call itself; the manager's own work is its first cost."""
        node = self._open_call()
        if node.name != "run":
            self.t += self.cost.of("call", "*")
        return node

    def _open_call(self) -> Node:
        rec = self.record
        op = rec.op
        args = dict(rec.args)
        result = rec.result
        ret: str | None = None
        if result is not None:
            if result.error is not None:
                ret = "not run"
            elif result.addr is not None and result.ret == 0:
                ret = f"0, {self.rec.address(result.addr)}"
            else:
                ret = str(result.ret)
                why = result.reason or result.detail
                if why and result.ret not in _SUCCESS:
                    ret = f"{ret}: {_shorten(why)}"
        where = args.pop("addr", None)
        if result is not None and result.target is not None:
            where = self.rec.address(result.target)
        shown = ", ".join(str(v) for v in ([where] if where is not None else []) +
                          [f"{k}={v}" for k, v in args.items()])
        args = {k: str(v) for k, v in args.items()}
        if where is not None:
            args = {"addr": str(where), **args}
        if op in ACCESS_OPS:
            label = f"{op} {shown}".strip()
            return self.open("call", op, ENCLAVE, ENCLAVE, label=label, ret=ret, args=args)
        if op.startswith("mm_"):
            return self.open("call", op, EMM, TRTS, label=f"{op}({shown})", ret=ret,
                             args=args)
        if op == "run":
            return self.open("call", "run", ENCLAVE, ENCLAVE, label="run", ret=None)
        if op in C_NAMES:
            return self.open("call", op, EMM, ENCLAVE, label=f"{C_NAMES[op]}({shown})",
                             ret=ret, args=args)
        # an op another package registered: the enclave's code does it
        return self.open("call", op, ENCLAVE, ENCLAVE, label=f"{op}({shown})", ret=ret,
                         args=args)

    def dispatch(self, event: Event, cost: int) -> None:
        cat, name = event.category, event.name
        self.settle(event)
        if cat == ENTRY and name == "EENTER":
            self.eenter(event, cost)
        elif cat == ENTRY and name == "EEXIT":
            self.t += cost
            self.eexit(event)
        elif cat == ENTRY and name == "ERESUME":
            self.eresume(event, cost)
        elif cat == AEX and name != "INTR":
            node = self.open("fault", name, KERNEL, CPU, style="fault",
                             label=self.fault_label(event, "AEX"), args=event_args(event, self.rec))
            node.ret_to = URTS
            self.t += cost
        elif cat == PAGE_FAULT:
            self.page_fault(event, cost)
        elif cat == LEAF:
            self.leaf(event, cost)
        elif cat == OCALL:
            args = event_args(event, self.rec)
            label = f"{name}({', '.join(args.values())})"
            self.open("ocall", name, TRTS, self.inside_actor(), label=label, ret="return",
                      args=args)
            self.t += cost
        elif cat in (SYSCALL, IOCTL):
            args = event_args(event, self.rec)
            label = f"{name}({', '.join(f'{k}={v}' for k, v in args.items())})"
            if cat == IOCTL:
                label = "ioctl " + label
            self.open(cat, name, KERNEL, URTS, label=label, ret="0", args=args)
            self.t += cost
        elif cat == HANDLER:
            self.t += cost
            self.handler(event)
        else:
            actor = KERNEL if cat in (SYSCALL, IOCTL, PAGE_FAULT) else self.inside_actor()
            self.instant(event, actor)
            self.t += cost

    def fault_label(self, event: Event, how: str) -> str:
        args = event_args(event, self.rec)
        where = args.get("addr", args.get("maddr", ""))
        errcd = args.get("errcd")
        parts = [event.name if event.category == AEX else "#PF"]
        if errcd is None and event.category == PAGE_FAULT:
            errcd = event.name          # the kernel names its faults by error code
        if errcd is not None:
            parts.append(f"errcd={errcd}")
        if where:
            parts.append(where)
        return " ".join(parts) + f" ({how})"

    def entry_retry(self, event: Event) -> bool:
        """A fault of the entry itself (no AEX) or the EENTER that retries it."""
        if event.category == PAGE_FAULT:
            return True
        previous = self.events[self.index - 1] if self.index else None
        return (event.category == ENTRY and event.name == "EENTER" and previous is not None
                and previous.category == PAGE_FAULT)

    def eenter(self, event: Event, cost: int) -> None:
        top = self.top()
        if top is None:
            self.open("ecall", "ecall", ENCLAVE, URTS, label="EENTER (ecall)", ret="EEXIT")
            self.t += cost
            self.call_pending = True
        elif self.entry_retry(event) and top.kind in ("ecall", "exc_entry"):
            self.message(URTS, ENCLAVE if top.kind == "ecall" else TRTS, "EENTER (again)",
                         "call")
            self.t += cost
        elif top.kind == "ocall_host":
            self.t += cost
            self.close()                       # the untrusted side returns: ORET
            self.message(URTS, TRTS, "EENTER (ocall return)", "call")
            if (ocall := self.top()) is not None and ocall.kind == "ocall":
                self.close()
        elif top.kind == "fault":
            # the kernel did not fix it: the fault is reported to the untrusted
            # runtime, which enters the enclave's exception handler
            top.ret_label = None
            self.open("exception", "exception", URTS, KERNEL, style="fault",
                      label=f"reported: {top.name} errcd={top.args.get('errcd', '?')}")
            self.open("exc_entry", "exception entry", TRTS, URTS,
                      label="EENTER (exception, next SSA frame)", ret="EEXIT")
            self.t += cost
        elif top.kind == "exception":
            self.open("exc_entry", "exception entry", TRTS, URTS,
                      label="EENTER (exception, next SSA frame)", ret="EEXIT")
            self.t += cost
        else:
            # an entry while the call runs: another ecall (e.g. through another TCS)
            self.open("ecall", "nested ecall", ENCLAVE, URTS, label="EENTER (another ecall)",
                      ret="EEXIT")
            self.t += cost

    def eexit(self, event: Event) -> None:
        top = self.top()
        if top is None:
            return
        if top.kind == "ocall":
            self.open("ocall_host", top.name, URTS, TRTS, label=f"EEXIT: {top.name}")
        elif top.kind == "exc_entry":
            self.close()
        elif (ecall := self.find("ecall")) is not None:
            self.close_through(ecall)
        else:
            self.instant(event, self.inside_actor())

    def eresume(self, event: Event, cost: int) -> None:
        top = self.top()
        self.t += cost
        if top is not None and top.kind == "fault":
            top.ret_label = "fixed: return to AEP"
            top.fixed_by = top
            self.close()
            self.message(URTS, CPU, "ERESUME", "leaf")
        elif top is not None and top.kind == "exception":
            self.close()
            fault = self.top()
            self.message(URTS, CPU, "ERESUME", "leaf")
            handler_event = next((e for e in self.events[self.index + 1:]
                                  if e.category == HANDLER), None)
            if fault is not None and fault.kind == "fault":
                self.close()
            handler = self.open("handler", "exception handler", TRTS, CPU,
                                label="exception handler (second phase)",
                                ret="continue at the faulting access", ret_to=CPU)
            if fault is not None and fault.kind == "fault":
                fault.fixed_by = handler
            if handler_event is not None and handler_event.name == "emm":
                args = event_args(handler_event, self.rec)
                self.open("pfhandler", "sgx_mm_enclave_pfhandler", EMM, TRTS,
                          label=f"sgx_mm_enclave_pfhandler({', '.join(args.values())})",
                          ret="CONTINUE_EXECUTION", args=args)
            elif handler_event is not None and handler_event.name == "custom":
                self.open("custom_handler", "custom handler", ENCLAVE, TRTS,
                          label="registered exception handler", ret="CONTINUE_EXECUTION")
        else:
            self.message(URTS, CPU, "ERESUME", "leaf")

    def page_fault(self, event: Event, cost: int) -> None:
        top = self.top()
        if event.name == "SIGBUS":
            self.instant(event, KERNEL)
            self.message(KERNEL, KERNEL, "SIGBUS", "note")
        elif top is not None and top.kind == "fault" and "kernel" not in top.args:
            top.args["kernel"] = f"#PF {event.name}"
        else:
            self.open("kernel_pf", f"#PF {event.name}", KERNEL, CPU, style="fault",
                      label=self.fault_label(event, "no AEX"), args=event_args(event, self.rec))
        self.t += cost

    def leaf(self, event: Event, cost: int) -> None:
        args = event_args(event, self.rec)
        caller = KERNEL if event.name in ENCLS_LEAVES else self.inside_actor()
        shown = " ".join(args[k] for k in ("addr", "dest") if k in args)
        if "src" in args:
            shown += f" from {args['src']}"
        if "secinfo" in args:
            shown += f" [{args['secinfo']}]"
        self.message(caller, CPU, f"{event.name} {shown}".strip(), "leaf")
        self.instants.append(Instant(self.t, caller, event.name, LEAF, args))
        self.t += cost

    def handler(self, event: Event) -> None:
        node = self.find("handler")
        if node is not None:
            self.close_through(node)
        else:
            self.instant(event, TRTS)


def interpret(record: CallRecord, rec: Recording, cost: CostModel | None = None,
              t0: float = 0.0) -> CallFlow:
    """One call's events as a tree with times (cycles from `t0`) and messages."""
    return _Interpreter(record, rec, cost or CostModel(), t0).run()


def interpret_all(rec: Recording, cost: CostModel | None = None,
                  calls: Iterable[CallRecord] | None = None) -> list[CallFlow]:
    """Every call of a recording, one after the other on one simulated clock."""
    model = cost or CostModel()
    flows: list[CallFlow] = []
    t = 0.0
    for record in (rec.calls if calls is None else calls):
        flow = interpret(record, rec, model, t)
        flows.append(flow)
        t = flow.end
    return flows


def used_lifelines(flows: Iterable[CallFlow]) -> list[str]:
    """The lifelines some message of `flows` touches, in the standard order."""
    used = {m.src for f in flows for m in f.messages} | \
        {m.dst for f in flows for m in f.messages}
    return [name for name in LIFELINES if name in used]

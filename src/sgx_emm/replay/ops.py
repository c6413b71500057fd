"""The replay ops: what each op's fields are and how it runs inside the enclave.

Ops live in a registry so that packages above the manager (services, the attack
library) can add their own ops without editing the runner: `register_op(name,
fields, run)`. A field kind is one of "addr", "addr?" (null = anywhere), "size",
"number", "flags", "prot", "type", "bytes", "bool", "handler" or "text"; a
trailing "=" marks an optional field. `run` gets an `OpContext` and records what
the line returned on `ctx.result` (`addr` for an address it returned, `ret` for
a non-zero result, `data` for bytes it read).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sgx_emm import flags as F
from sgx_emm.emm.rt import FaultHandler, PfInfo
from sgx_emm.errors import EmmError
from sgx_emm.replay.interfaces import EnclaveLike, EnclaveThread
from sgx_emm.replay.results import CallResult

#: PFEC bits a synthetic `fault` line sets: P and SGX always, W/R from "write".
PF_PRESENT = 0x1
PF_WRITE = 0x2
PF_SGX = 0x8000

#: What a fault handler's result is called in the output.
HANDLER_RESULTS = {
    F.EXCEPTION_CONTINUE_EXECUTION: "CONTINUE_EXECUTION",
    F.EXCEPTION_CONTINUE_SEARCH: "CONTINUE_SEARCH",
}

#: Built-in fault handlers an alloc line may name.
HANDLER_KINDS = ("commit", "skip")


@dataclass(slots=True)
class OpContext:
    """Everything an op needs while it runs: the enclave, the entered thread, the
    line's resolved arguments and the result it fills in."""

    op: str
    enclave: EnclaveLike
    thread: EnclaveThread
    args: dict[str, Any]
    result: CallResult

    @property
    def emm(self) -> Any:
        return self.enclave.emm


OpRunner = Callable[[OpContext], None]

#: op name -> {field name: kind}; the parser reads it.
OPS: dict[str, dict[str, str]] = {}
#: op name -> the function that runs it.
RUNNERS: dict[str, OpRunner] = {}


def register_op(name: str, fields: dict[str, str], run: OpRunner) -> None:
    """Add an op to the replay format. Names are unique: a second registration of
    the same name is a programming error, not an override."""
    if name in OPS:
        raise ValueError(f"replay op {name!r} is already registered")
    OPS[name] = dict(fields)
    RUNNERS[name] = run


def handler_for(kind: str, commit: Callable[[int, int], object]) -> FaultHandler:
    """A built-in custom fault handler.

    "commit" commits the faulting page with `commit` (emm.commit, or mm_commit for
    runtime regions) and asks for the access to be retried; if the commit fails
    it passes the fault on instead (retrying would fault forever). "skip" always
    passes the fault on (CONTINUE_SEARCH).
    """
    if kind == "skip":
        def skip(pfinfo: PfInfo, private: Any) -> int:
            return F.EXCEPTION_CONTINUE_SEARCH
        return skip

    def commit_faulting_page(pfinfo: PfInfo, private: Any) -> int:
        try:
            commit(pfinfo.maddr & ~(F.PAGE_SIZE - 1), F.PAGE_SIZE)
        except EmmError:
            return F.EXCEPTION_CONTINUE_SEARCH
        return F.EXCEPTION_CONTINUE_EXECUTION
    return commit_faulting_page


# --------------------------------------------------------------------------
# The manager's calls, public and private (mm_*), and the enclave accesses.


def _manager_op(name: str, private: bool) -> OpRunner:
    """The runner of one manager call; private ops call the mm_* twin."""
    method = ("mm_" if private else "") + name

    def run(ctx: OpContext) -> None:
        a, emm = ctx.args, ctx.emm
        call = getattr(emm, method)
        if name == "alloc":
            handler = None
            if "handler" in a:
                handler = handler_for(a["handler"], emm.mm_commit if private else emm.commit)
            ctx.result.addr = call(a.get("addr"), a["size"], a["flags"], handler=handler)
            ctx.result.target = ctx.result.addr
        elif name in ("dealloc", "commit", "uncommit"):
            call(a["addr"], a["size"])
        elif name == "commit_data":
            call(a["addr"], a["size"], a["data"], a["prot"])
        elif name == "modify_permissions":
            call(a["addr"], a["size"], a["prot"])
        else:  # modify_type
            call(a["addr"], a["size"], a["type"])
    return run


def _init_ema(ctx: OpContext) -> None:
    a, emm = ctx.args, ctx.emm
    handler = handler_for(a["handler"], emm.mm_commit) if "handler" in a else None
    emm.mm_init_ema(a["addr"], a["size"], a["flags"], a["prot"], handler=handler)


def _read(ctx: OpContext) -> None:
    ctx.result.data = bytes(ctx.thread.read(ctx.args["addr"], ctx.args["size"]))


def _fetch(ctx: OpContext) -> None:
    ctx.result.data = bytes(ctx.thread.fetch(ctx.args["addr"], ctx.args["size"]))


def _write(ctx: OpContext) -> None:
    ctx.thread.write(ctx.args["addr"], ctx.args["data"])


def _fault(ctx: OpContext) -> None:
    a = ctx.args
    errcd = a.get("errcd")
    if errcd is None:
        errcd = PF_PRESENT | PF_SGX | (PF_WRITE if a.get("write") else 0)
    got = ctx.emm.handle_page_fault(PfInfo(a["addr"], errcd))
    ctx.result.ret = HANDLER_RESULTS.get(got, str(got))


_RANGE = {"addr": "addr", "size": "size"}
_MANAGER_FIELDS: dict[str, dict[str, str]] = {
    "alloc": {"addr": "addr?=", "size": "size", "flags": "flags", "handler": "handler="},
    "dealloc": _RANGE,
    "commit": _RANGE,
    "uncommit": _RANGE,
    "commit_data": {**_RANGE, "data": "addr", "prot": "prot"},
    "modify_permissions": {**_RANGE, "prot": "prot"},
    "modify_type": {**_RANGE, "type": "type"},
}
for _name, _fields in _MANAGER_FIELDS.items():
    register_op(_name, _fields, _manager_op(_name, private=False))
register_op("read", _RANGE, _read)
register_op("fetch", _RANGE, _fetch)
register_op("write", {"addr": "addr", "data": "bytes"}, _write)
register_op("fault", {"addr": "addr", "write": "bool=", "errcd": "number="}, _fault)
register_op("mm_init_ema", {**_RANGE, "flags": "flags", "prot": "prot",
                            "handler": "handler="}, _init_ema)
for _name, _fields in _MANAGER_FIELDS.items():
    register_op("mm_" + _name, _fields, _manager_op(_name, private=True))

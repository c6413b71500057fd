"""Replay ops for the services, registered with the replay format's op registry.

Each op runs inside the line's enclave entry, like the manager's ops, and
reports what the service returned: an address (`$N` names it), or the POSIX
errno name of a refused call (ENOMEM for a malloc that found no memory, EINVAL,
EEXIST, EACCES, ...). A misuse the service refuses with ValueError (a double
free, an unknown thread handle) reports EINVAL with the message as its detail.

    {"op": "malloc", "size": 100}              {"op": "free", "addr": "$0"}
    {"op": "calloc", "count": 4, "size": 32}   {"op": "realloc", "addr": "$0", "size": 300}
    {"op": "mmap", "addr": null, "size": "0x4000", "prot": "READ|WRITE",
     "flags": "MAP_PRIVATE|MAP_ANONYMOUS"}
    {"op": "munmap" | "mprotect" | "madvise", "addr": ..., "size": ..., "prot"/"advice"}
    {"op": "thread_create", "job": "malloc", "size": 64}   -> handle 1, 2, ... in order
    {"op": "thread_join", "handle": 1}         (the job's address, if it made one)
    {"op": "load_code", "data": "c3", "jit": true}          {"op": "unload", "addr": "$7"}
    {"op": "add_thread"}  {"op": "enter", "addr": "$9"}  {"op": "remove_thread", "addr": "$9"}
    {"op": "stack_touch", "size": "0x3000"}
    {"op": "write_tcs", "addr": TCS, "ssa": SSA, "nssa": 1}

Thread jobs (`job`): "malloc" (size), "calloc" (size), "touch_stack" (size),
"write" (addr, data), "mmap" (size: map read-write and touch every page),
"idle".
"""

from __future__ import annotations

import errno as _errno
import threading
from collections.abc import Callable
from typing import Any

from sgx_emm.flags import PAGE_SIZE, PROT_READ_EXEC
from sgx_emm.platform import TcsImage
from sgx_emm.replay.ops import OpContext, register_op
from sgx_emm.services import mman as M
from sgx_emm.services.stack import StackView

_MAP_FLAGS = {name: getattr(M, name) for name in (
    "MAP_SHARED", "MAP_PRIVATE", "MAP_FIXED", "MAP_ANONYMOUS", "MAP_NORESERVE",
    "MAP_POPULATE", "MAP_FIXED_NOREPLACE")}
_ADVICE = {"MADV_NORMAL": M.MADV_NORMAL, "MADV_WILLNEED": M.MADV_WILLNEED,
           "MADV_DONTNEED": M.MADV_DONTNEED}


def _enc(ctx: OpContext) -> Any:
    """The replay's enclave: the services' ops need the simulated enclave's services
    (`heap`, `mman`, `threads`, `loader`, `add_thread`), which EnclaveLike omits."""
    return ctx.enclave


def _refused(ctx: OpContext, err: int, detail: str) -> None:
    ctx.result.ret = _errno.errorcode.get(err, str(err))
    ctx.result.detail = detail


def _service_call(run: Callable[[OpContext], None]) -> Callable[[OpContext], None]:
    """Report POSIX errors and refused misuse as the line's result, not as crashes."""
    def wrapped(ctx: OpContext) -> None:
        try:
            run(ctx)
        except ValueError as e:
            _refused(ctx, _errno.EINVAL, str(e))
        except OSError as e:
            if type(e).__module__ != "builtins":
                raise  # EmmError and friends: the runner reports them itself
            _refused(ctx, e.errno or _errno.EINVAL, e.strerror or str(e))
    return wrapped


def _names(value: str, table: dict[str, int], what: str) -> int:
    out = 0
    for piece in value.split("|"):
        name = piece.strip().upper()
        if not name:
            continue
        if name in table:
            out |= table[name]
        elif ("MAP_" + name) in table:
            out |= table["MAP_" + name]
        elif ("MADV_" + name) in table:
            out |= table["MADV_" + name]
        else:
            raise ValueError(f"{what}: unknown name {piece.strip()!r} (known: "
                             f"{', '.join(table)})")
    return out


# ------------------------------------------------------------------ heap
def _malloc(ctx: OpContext) -> None:
    addr = _enc(ctx).heap.malloc(ctx.args["size"])
    if addr is None:
        _refused(ctx, _errno.ENOMEM, "the heap is out of memory")
    ctx.result.addr = addr


def _calloc(ctx: OpContext) -> None:
    addr = _enc(ctx).heap.calloc(ctx.args["count"], ctx.args["size"])
    if addr is None:
        _refused(ctx, _errno.ENOMEM, "the heap is out of memory")
    ctx.result.addr = addr


def _realloc(ctx: OpContext) -> None:
    size = ctx.args["size"]
    addr = _enc(ctx).heap.realloc(ctx.args.get("addr"), size)
    if addr is None and size:
        _refused(ctx, _errno.ENOMEM, "the heap is out of memory (the old block is kept)")
    ctx.result.addr = addr


def _free(ctx: OpContext) -> None:
    _enc(ctx).heap.free(ctx.args["addr"])


# ------------------------------------------------------------------ mman
def _mmap(ctx: OpContext) -> None:
    a = ctx.args
    flags = _names(a.get("flags", "MAP_PRIVATE|MAP_ANONYMOUS"), _MAP_FLAGS, "mmap.flags")
    ctx.result.addr = _enc(ctx).mman.mmap(a.get("addr"), a["size"], a["prot"], flags)


def _munmap(ctx: OpContext) -> None:
    _enc(ctx).mman.munmap(ctx.args["addr"], ctx.args["size"])


def _mprotect(ctx: OpContext) -> None:
    _enc(ctx).mman.mprotect(ctx.args["addr"], ctx.args["size"], ctx.args["prot"])


def _madvise(ctx: OpContext) -> None:
    advice = _names(ctx.args["advice"], _ADVICE, "madvise.advice")
    _enc(ctx).mman.madvise(ctx.args["addr"], ctx.args["size"], advice)


# ------------------------------------------------------------------ threads
_HANDLES_LOCK = threading.Lock()


def _handles(enc: Any) -> dict[int, Any]:
    """The replay's thread handles of one enclave, by number (1, 2, ... in order)."""
    with _HANDLES_LOCK:
        table: dict[int, Any] | None = getattr(enc, "_replay_thread_handles", None)
        if table is None:
            table = {}
            enc._replay_thread_handles = table
        return table


def _job(enc: Any, args: dict[str, Any]) -> Callable[[], int | None]:
    job = args.get("job", "idle")
    size = args.get("size", PAGE_SIZE)

    jobs: dict[str, Callable[[], int | None]] = {
        "idle": lambda: None,
        "malloc": lambda: enc.heap.malloc(size),
        "calloc": lambda: enc.heap.calloc(1, size),
        "touch_stack": lambda: StackView(enc.current()).touch(size),
        "write": lambda: enc.current().write(args["addr"], args.get("data", b"\0")),
        "mmap": lambda: _mmap_and_touch(enc, size),
    }
    if job not in jobs:
        raise ValueError(f"thread_create: unknown job {job!r} (known: {', '.join(jobs)})")
    if job == "write" and "addr" not in args:
        raise ValueError("thread_create: the write job needs an addr")
    return jobs[job]


def _mmap_and_touch(enc: Any, size: int) -> int:
    addr = int(enc.mman.mmap(None, size, 3))
    t = enc.current()
    for page in range(addr, addr + size, PAGE_SIZE):
        t.write(page, b"\1")
    return addr


def _thread_create(ctx: OpContext) -> None:
    enc = _enc(ctx)
    handle = enc.threads.create(_job(enc, ctx.args))
    table = _handles(enc)
    with _HANDLES_LOCK:
        number = len(table) + 1
        table[number] = handle
    ctx.result.ret = 0
    ctx.result.detail = f"handle {number} on TCS {handle.tcs:#x}"


def _thread_join(ctx: OpContext) -> None:
    number = ctx.args["handle"]
    handle = _handles(ctx.enclave).get(number)
    if handle is None:
        raise ValueError(f"thread_join: no thread_create line made handle {number}")
    got = _enc(ctx).threads.join(handle)
    if isinstance(got, int):
        ctx.result.addr = got


# ------------------------------------------------------------------ code and TCSes
def _load_code(ctx: OpContext) -> None:
    a = ctx.args
    ctx.result.addr = _enc(ctx).loader.load(a["data"], jit=a.get("jit", False),
                                              prot=a.get("prot", PROT_READ_EXEC))


def _unload(ctx: OpContext) -> None:
    _enc(ctx).loader.unload(ctx.args["addr"])


def _add_thread(ctx: OpContext) -> None:
    ctx.result.addr = _enc(ctx).add_thread()


def _remove_thread(ctx: OpContext) -> None:
    _enc(ctx).remove_thread(ctx.args["addr"])


def _enter(ctx: OpContext) -> None:
    """EENTER through a TCS from another OS thread (an ecall there), then leave."""
    enc = _enc(ctx)
    failure: list[BaseException] = []

    def ecall() -> None:
        try:
            with enc.enter(tcs=ctx.args["addr"]):
                pass
        except BaseException as e:  # handed back to the line
            failure.append(e)

    worker = threading.Thread(target=ecall, name="replay-enter")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]


def _stack_touch(ctx: OpContext) -> None:
    ctx.result.addr = StackView(ctx.thread).touch(ctx.args["size"])  # type: ignore[arg-type]


def _write_tcs(ctx: OpContext) -> None:
    """Fill a TCS page as the SDK does before EMODT: SSA frames, entry, TLS."""
    a, enc = ctx.args, _enc(ctx)
    tls = a.get("tls")
    image = TcsImage(ossa=a["ssa"] - enc.base, nssa=a.get("nssa", 1),
                     oentry=enc.layout.find("code").offset,
                     ofsbase=(tls - enc.base) if tls is not None else 0,
                     ogsbase=(tls - enc.base) if tls is not None else 0,
                     fslimit=PAGE_SIZE - 1 if tls is not None else 0,
                     gslimit=PAGE_SIZE - 1 if tls is not None else 0)
    ctx.thread.write(a["addr"], image.to_bytes())


_SIZE = {"size": "size"}
_RANGE = {"addr": "addr", "size": "size"}
OPS: dict[str, tuple[dict[str, str], Callable[[OpContext], None]]] = {
    "malloc": (_SIZE, _malloc),
    "calloc": ({"count": "number", "size": "size"}, _calloc),
    "realloc": ({"addr": "addr?", "size": "size"}, _realloc),
    "free": ({"addr": "addr"}, _free),
    "mmap": ({"addr": "addr?=", "size": "size", "prot": "prot", "flags": "text="}, _mmap),
    "munmap": (_RANGE, _munmap),
    "mprotect": ({**_RANGE, "prot": "prot"}, _mprotect),
    "madvise": ({**_RANGE, "advice": "text"}, _madvise),
    "thread_create": ({"job": "text=", "size": "size=", "addr": "addr=", "data": "bytes="},
                      _thread_create),
    "thread_join": ({"handle": "number"}, _thread_join),
    "load_code": ({"data": "bytes", "jit": "bool=", "prot": "prot="}, _load_code),
    "unload": ({"addr": "addr"}, _unload),
    "add_thread": ({}, _add_thread),
    "remove_thread": ({"addr": "addr"}, _remove_thread),
    "enter": ({"addr": "addr"}, _enter),
    "stack_touch": (_SIZE, _stack_touch),
    "write_tcs": ({"addr": "addr", "ssa": "addr", "nssa": "number=", "tls": "addr="},
                  _write_tcs),
}

for _name, (_fields, _run) in OPS.items():
    register_op(_name, _fields, _service_call(_run))

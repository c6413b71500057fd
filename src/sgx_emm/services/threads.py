"""Enclave threads: the SDK's dynamic thread creation, and a create/join pool on top.

A thread of an enclave is a TCS with its SSA frames, a stack and a TLS page. The
image holds TCSNum of them (laid out by `sgx_emm.runtime.layout`); more, up to
TCSMaxNum, are built at run time the way the SDK's trts does it on EDMM hardware,
here through the public manager API in the user range (`ThreadContexts.add`):

1. reserve the thread's whole context: guard | stack on demand | committed stack |
   guard | TCS | SSA frames | TLS (`alloc(RESERVE)`), then carve out of it the
   GROWSDOWN on-demand stack (StackMaxSize - StackMinSize), the committed stack
   (StackMinSize), the TCS page and the SSA and TLS pages (`alloc(COMMIT_NOW|FIXED)`:
   EAUG + EACCEPT); the guard pages stay reserved;
2. write the TCS image into the (still regular, RW) TCS page: OSSA and NSSA name
   the SSA frames, OENTRY the entry point, OFSBASE/OGSBASE the TLS page and the
   FS/GS limits its size, CSSA 0;
3. `modify_type(TCS)`: EMODT through the driver, then EACCEPT(TCS|MODIFIED), which
   checks the image. From then on `enc.enter(tcs=...)` enters through it.

`ThreadContexts.remove` deallocates the whole context: every page is trimmed
(EMODT(TRIM), EACCEPT, REMOVE_PAGES), the TCS included.

`Threads` (`enc.threads`) runs a Python function inside the enclave on a TCS of
its own: `create(fn, *args) -> handle`, `join(handle) -> result`. The TCS comes
from the image's pool, else from idle dynamic threads, else a new one is built
(up to TCSMaxNum); TCSMinPool free TCSes are kept ready, as the SDK's urts
does, so that building one never waits for a free TCS. TCSPolicy decides when a
TCS goes back to the pool: unbound (1) when `fn` returns, bound (0) only when the
thread is joined. Dynamic TCSes beyond the pool's needs are trimmed at join.
"""

from __future__ import annotations

import errno
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sgx_emm.errors import EmmError
from sgx_emm.flags import (
    COMMIT_NOW,
    COMMIT_ON_DEMAND,
    EXCEPTION_CONTINUE_EXECUTION,
    EXCEPTION_CONTINUE_SEARCH,
    FIXED,
    GROWSDOWN,
    PAGE_SIZE,
    PAGE_TYPE_TCS,
    RESERVE,
)
from sgx_emm.platform import TcsImage
from sgx_emm.runtime.layout import NSSA
from sgx_emm.services.config import TCS_POLICY_BOUND, EnclaveConfig
from sgx_emm.services.entry import inside

if TYPE_CHECKING:
    from sgx_emm.services.host import Host

#: The FS/GS limit written into every TCS: the TLS is one page.
TLS_LIMIT = PAGE_SIZE - 1


@dataclass(frozen=True, slots=True)
class ThreadMemory:
    """Where one thread's pieces lie (absolute addresses).

    The stack grows down from `stack_top` to `stack_limit` (StackMaxSize below);
    `guard` is the reserved page just below `stack_limit`, whose touch is a stack
    overflow. `context` is the (start, size) of the whole reserved context of a
    dynamic thread, None for a thread of the image.
    """

    tcs: int
    ssa: int
    tls: int
    stack_top: int
    stack_limit: int
    stack_min: int
    guard: int
    context: tuple[int, int] | None = None

    @property
    def dynamic(self) -> bool:
        return self.context is not None

    @property
    def stack_max(self) -> int:
        return self.stack_top - self.stack_limit


def image_threads(enc: Host) -> dict[int, ThreadMemory]:
    """The threads laid out in the image, by TCS address."""
    out: dict[int, ThreadMemory] = {}
    layout, base = enc.layout, enc.base
    for t in range(len(layout.tcs_offsets())):
        stack = layout.find("stack", t)
        try:
            low = layout.find("stack_dyn", t).offset
        except KeyError:
            low = stack.offset
        top = base + stack.offset + stack.size
        out[base + layout.find("tcs", t).offset] = ThreadMemory(
            tcs=base + layout.find("tcs", t).offset, ssa=base + layout.find("ssa", t).offset,
            tls=base + layout.find("tls", t).offset, stack_top=top, stack_limit=base + low,
            stack_min=stack.size, guard=base + low - PAGE_SIZE)
    return out


def grows_down_batch(emm: Any, low: int, pages: int) -> Any:
    """A fault handler for a GROWSDOWN stack region starting at `low` that commits
    `pages` pages at once, from the faulting page down (the batch commit on
    GROWSDOWN faults the reference leaves as a TODO); pages already committed are
    skipped by the commit. If the commit fails the fault is passed on."""
    def commit_batch(pfinfo: Any, private: Any) -> int:
        page = pfinfo.maddr & ~(PAGE_SIZE - 1)
        first = max(low, page - (pages - 1) * PAGE_SIZE)
        try:
            emm.commit(first, page + PAGE_SIZE - first)
        except EmmError:
            return int(EXCEPTION_CONTINUE_SEARCH)
        return int(EXCEPTION_CONTINUE_EXECUTION)
    return commit_batch


def tcs_image(enc: Host, ssa: int, tls: int) -> TcsImage:
    """A TCS that EACCEPT accepts and EENTER enters: SSA frames and TLS in the enclave,
    offsets from the enclave base, entry at the image's code."""
    return TcsImage(ossa=ssa - enc.base, nssa=NSSA, oentry=enc.layout.find("code").offset,
                    ofsbase=tls - enc.base, ogsbase=tls - enc.base,
                    fslimit=TLS_LIMIT, gslimit=TLS_LIMIT)


class ThreadContexts:
    """Builds and trims dynamic threads (`enc.add_thread`, `enc.remove_thread`)."""

    def __init__(self, enc: Host, config: EnclaveConfig) -> None:
        self._enc = enc
        self._config = config
        self._lock = threading.Lock()
        self._image = image_threads(enc)
        self._dynamic: dict[int, ThreadMemory] = {}
        self._building = 0
        self._guards = {m.guard: m for m in self._image.values()}

    def by_guard(self, page: int) -> ThreadMemory | None:
        """The thread whose stack guard page is `page` (one lookup per fault)."""
        return self._guards.get(page)

    @property
    def dynamic(self) -> list[int]:
        """The TCS addresses of the live dynamic threads, oldest first."""
        with self._lock:
            return list(self._dynamic)

    def memory(self, tcs: int) -> ThreadMemory | None:
        """Where the thread of `tcs` lies; None for an address that is no thread's TCS."""
        found = self._image.get(tcs)
        if found is not None:
            return found
        with self._lock:
            return self._dynamic.get(tcs)

    def count(self) -> int:
        """Threads that exist or are being built."""
        with self._lock:
            return len(self._image) + len(self._dynamic) + self._building

    def threads(self) -> list[ThreadMemory]:
        with self._lock:
            return [*self._image.values(), *self._dynamic.values()]

    def add(self, via: int | None = None) -> int:
        """Build a new thread through the manager; returns its TCS address.

        Runs inside the caller's entry, else in an ecall through `via` (a TCS the
        caller holds and nobody runs on) or a free TCS of the image.

        Raises EmmError(ENOMEM) when the user range or the EPC has no room (nothing
        is left behind), and RuntimeError when TCSMaxNum threads exist already (a
        configuration without TCSMaxNum puts no bound on threads added by hand;
        `Threads` then adds none of its own).
        """
        cfg = self._config
        with self._lock:
            # count threads being built too, so concurrent adds cannot pass TCSMaxNum
            if (cfg.tcs_max_num is not None and len(self._image) + len(self._dynamic)
                    + self._building >= cfg.max_threads):
                raise RuntimeError(f"the enclave has TCSMaxNum = {cfg.max_threads} threads "
                                   "already; raise TCSMaxNum to add more")
            self._building += 1
        try:
            return self._build(via)
        finally:
            with self._lock:
                self._building -= 1

    def _build(self, via: int | None) -> int:
        """The SDK's flow for one new thread (see the module doc)."""
        cfg = self._config
        on_demand = cfg.stack_max_size - cfg.stack_min_size
        pages_after_guard = 1 + NSSA + 1           # TCS, SSA frames, TLS
        size = PAGE_SIZE + cfg.stack_max_size + PAGE_SIZE + pages_after_guard * PAGE_SIZE
        with inside(self._enc, via) as t:
            emm = self._enc.emm
            start = emm.alloc(None, size, RESERVE)
            try:
                stack_low = start + PAGE_SIZE
                stack = stack_low + on_demand
                top = stack + cfg.stack_min_size
                tcs = top + PAGE_SIZE
                ssa = tcs + PAGE_SIZE
                tls = ssa + NSSA * PAGE_SIZE
                if on_demand:
                    batch = cfg.policy.stack_fault_pages
                    handler = (grows_down_batch(emm, stack_low, batch) if batch > 1 else None)
                    emm.alloc(stack_low, on_demand, COMMIT_ON_DEMAND | GROWSDOWN | FIXED,
                              handler=handler)
                emm.alloc(stack, cfg.stack_min_size, COMMIT_NOW | FIXED)
                emm.alloc(tcs, PAGE_SIZE, COMMIT_NOW | FIXED)
                emm.alloc(ssa, (NSSA + 1) * PAGE_SIZE, COMMIT_NOW | FIXED)
                t.write(tcs, tcs_image(self._enc, ssa, tls).to_bytes())
                emm.modify_type(tcs, PAGE_SIZE, PAGE_TYPE_TCS)
            except BaseException:
                if not self._enc.crashed:
                    emm.dealloc(start, size)
                raise
        memory = ThreadMemory(tcs=tcs, ssa=ssa, tls=tls, stack_top=top,
                              stack_limit=stack_low, stack_min=cfg.stack_min_size,
                              guard=start, context=(start, size))
        with self._lock:
            self._dynamic[tcs] = memory
            self._guards[memory.guard] = memory
        return tcs

    def remove(self, tcs: int) -> None:
        """Trim a dynamic thread's context (TCS, SSA, stack, TLS). ValueError for a TCS
        of the image, an address that is no live dynamic thread's, or one in use."""
        with self._lock:
            memory = self._dynamic.get(tcs)
            if memory is None:
                what = ("a thread of the enclave image (only threads added at run time "
                        "can be removed)" if tcs in self._image
                        else "not the TCS of a thread added with add_thread")
                raise ValueError(f"remove_thread({tcs:#x}): {what}")
            if self._enc.tcs_busy(tcs):
                raise ValueError(f"remove_thread({tcs:#x}): a thread is inside the enclave "
                                 "through this TCS")
            del self._dynamic[tcs]
            del self._guards[memory.guard]
        assert memory.context is not None
        start, size = memory.context
        try:
            with inside(self._enc):
                self._enc.emm.dealloc(start, size)
        except EmmError:
            with self._lock:
                self._dynamic[tcs] = memory
                self._guards[memory.guard] = memory
            raise


class OutOfTcs(EmmError, RuntimeError):
    """No TCS for a new thread: every one is busy and no more may be built
    (errno EAGAIN, as the SDK's SGX_ERROR_OUT_OF_TCS)."""

    def __init__(self, message: str) -> None:
        EmmError.__init__(self, errno.EAGAIN, message)


@dataclass(eq=False)
class ThreadHandle:
    """One thread started by `Threads.create`; pass it to `join`."""

    ident: int
    tcs: int
    fn: Callable[..., Any]
    result: Any = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    joined: bool = False
    released: bool = False
    _thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = "done" if self.done.is_set() else "running"
        return f"<ThreadHandle {self.ident} tcs={self.tcs:#x} {state}>"


class Threads:
    """`enc.threads`: run functions inside the enclave, each on a TCS of its own."""

    def __init__(self, enc: Host, contexts: ThreadContexts, config: EnclaveConfig) -> None:
        self._enc = enc
        self._contexts = contexts
        self._config = config
        self._lock = threading.Lock()
        self._idle: list[int] = []          # dynamic TCSes waiting for work
        self._ids = itertools.count(1)

    @property
    def idle(self) -> list[int]:
        """Dynamic TCSes kept ready (TCSMinPool), not running anything."""
        with self._lock:
            return list(self._idle)

    def create(self, fn: Callable[..., Any], *args: Any) -> ThreadHandle:
        """Start `fn(*args)` on a new enclave thread; `join` returns what it returned.

        `fn` runs inside the enclave (`enc.current()` is its ThreadContext). Raises
        OutOfTcs when every TCS is busy and TCSMaxNum threads exist.
        """
        if not callable(fn):
            raise TypeError(f"fn: expected a callable, got {type(fn).__name__}")
        tcs = self._take()
        try:
            self._keep_pool(tcs)
        except BaseException:
            self._give_back(tcs)
            raise
        handle = ThreadHandle(next(self._ids), tcs, fn)
        worker = threading.Thread(target=self._run, args=(handle, args),
                                  name=f"enclave-thread-{handle.ident}", daemon=True)
        handle._thread = worker
        worker.start()
        return handle

    def join(self, handle: ThreadHandle, timeout: float | None = None) -> Any:
        """Wait for the thread; its result, or the exception `fn` raised.

        TimeoutError if it is still running after `timeout` seconds; ValueError for a
        handle joined already or from another enclave.
        """
        if not isinstance(handle, ThreadHandle):
            raise TypeError(f"handle: expected a ThreadHandle, got {type(handle).__name__}")
        if handle.joined:
            raise ValueError(f"thread {handle.ident} was joined already")
        if not handle.done.wait(timeout):
            raise TimeoutError(f"thread {handle.ident} is still running")
        handle.joined = True
        if not handle.released:
            self._release(handle)
        self._trim()
        if handle.error is not None:
            raise handle.error
        return handle.result

    # ------------------------------------------------------------ the pool
    def _run(self, handle: ThreadHandle, args: tuple[Any, ...]) -> None:
        try:
            with self._enc.enter(tcs=handle.tcs):
                handle.result = handle.fn(*args)
        except BaseException as exc:  # handed to join
            handle.error = exc
        finally:
            if self._config.tcs_policy != TCS_POLICY_BOUND:
                self._release(handle)
            handle.done.set()

    def _take(self) -> int:
        tcs = self._enc.take_tcs()
        if tcs is not None:
            return tcs
        with self._lock:
            if self._idle:
                return self._idle.pop()
        if not self._room():
            raise OutOfTcs(f"every TCS is busy and TCSMaxNum = {self._config.max_threads} "
                           "threads exist")
        try:
            return self._contexts.add()
        except RuntimeError as exc:
            if isinstance(exc, EmmError) and exc.errno == errno.EAGAIN:
                raise OutOfTcs("every TCS is busy, and building a new one needs a free TCS "
                               "to run on: keep one ready with TCSMinPool") from None
            raise OutOfTcs(f"every TCS is busy: {exc}") from None

    def _release(self, handle: ThreadHandle) -> None:
        handle.released = True
        self._give_back(handle.tcs)

    def _give_back(self, tcs: int) -> None:
        memory = self._contexts.memory(tcs)
        if memory is None:
            return
        if memory.dynamic:
            with self._lock:
                self._idle.append(tcs)
        else:
            self._enc.give_tcs(tcs)

    def _free_count(self) -> int:
        with self._lock:
            return self._enc.free_tcs_count() + len(self._idle)

    def _room(self) -> bool:
        """Whether the pool may build another dynamic thread (below TCSMaxNum)."""
        return self._contexts.count() < self._config.max_threads

    def _keep_pool(self, held: int) -> None:
        """Build dynamic TCSes until TCSMinPool are free (or TCSMaxNum exist), in an
        ecall through `held`, the TCS just taken for the new thread (the SDK's urts
        likewise fills its pool before the last free TCS is gone)."""
        cfg = self._config
        while self._free_count() < cfg.tcs_min_pool and self._room():
            try:
                tcs = self._contexts.add(via=held)
            except (RuntimeError, EmmError):
                return
            with self._lock:
                self._idle.append(tcs)

    def _trim(self) -> None:
        """Trim idle dynamic TCSes the pool does not need (beyond TCSMinPool)."""
        while True:
            with self._lock:
                surplus = self._enc.free_tcs_count() + len(self._idle) - self._config.tcs_min_pool
                if surplus <= 0 or not self._idle:
                    return
                tcs = self._idle.pop(0)
            try:
                self._contexts.remove(tcs)
            except (ValueError, EmmError):
                with self._lock:
                    self._idle.append(tcs)
                return


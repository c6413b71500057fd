"""A simulated SGX2 enclave with the manager inside.

`Enclave.create` does what an Intel SDK application does at start-up: the loader
ECREATEs, EADDs the static pages of the image layout, EINITs and maps every
segment through the Linux driver; then the first ecall runs the trusted runtime's
init, which starts the manager (`sgx_mm_init`: the #PF handler and the first
metadata reserve) and builds one EMA per layout entry, as the SDK's
`init_rts_emas` does. `enc.enter()` is an ecall: EENTER on a free TCS through the
vDSO, with the untrusted runtime's exception handler installed, so every fault
takes the whole path (AEX, kernel, nested EENTER for the dispatcher's phase 1,
ERESUME into phase 2, the manager's handler first).
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, TypeVar

from sgx_emm import diagnosis
from sgx_emm.books import BooksDisagree, Difference, check_books
from sgx_emm.emm import EnclaveMemoryManager
from sgx_emm.emm.rt import eaccept_each
from sgx_emm.errors import EmmError, EnclaveAbort, EnclaveCrashed, NotEntered
from sgx_emm.flags import (
    COMMIT_ON_DEMAND,
    FIXED,
    GROWSDOWN,
    GROWSUP,
    PAGE_SIZE,
    PAGE_TYPE_TCS,
    PROT_NONE,
    RESERVE,
    SYSTEM,
)
from sgx_emm.guard import GuardedManager
from sgx_emm.platform import (
    MAP_FIXED,
    MAP_SHARED,
    CpuFault,
    EnclaveFd,
    EnclaveThread,
    FaultReported,
    Kernel,
    Machine,
    Run,
    SecsImage,
    TcsImage,
    secinfo_flags,
)
from sgx_emm.platform.secinfo import ERESUME, MISC_EXINFO, PT_REG, PT_TCS
from sgx_emm.runtime.dispatcher import ExceptionDispatcher, ExceptionHandler, ExceptionRecord
from sgx_emm.runtime.layout import NSSA, EntryKind, ImageLayout, build_layout
from sgx_emm.runtime.trts import LeafIssuer, OcallTarget, TrustedPrimitives, TrustedRuntime
from sgx_emm.runtime.urts import UntrustedRuntime
from sgx_emm.trace import Trace

if TYPE_CHECKING:
    import os

    from sgx_emm.services.config import EnclaveConfig
    from sgx_emm.services.heap import Heap
    from sgx_emm.services.loader import Loader
    from sgx_emm.services.mman import Mman
    from sgx_emm.services.stack import StackView
    from sgx_emm.services.threads import ThreadContexts, Threads

T = TypeVar("T")
#: Builds the untrusted runtime's ocall services for one loaded enclave.
UntrustedFactory = Callable[[Kernel, EnclaveFd], OcallTarget]

DEFAULT_BASE = 0x7F00_0000_0000
DEFAULT_SIZE = 1 << 36
#: EPC pages when the caller does not say: 2 GiB of EPC, or the whole ELRANGE if
#: smaller. The EPC costs about 34 bytes of Python memory per page up front.
DEFAULT_EPC_PAGES = 1 << 19

#: How deep exception handling may nest on one thread before the enclave is
#: considered crashed (a real enclave's stack overflows somewhere around here).
MAX_NESTED_EXCEPTIONS = 32

_tls = threading.local()


class OutOfTcs(EmmError, RuntimeError):
    """Every load-time TCS is in use (the SDK's SGX_ERROR_OUT_OF_TCS).

    An `EmmError` with errno EAGAIN, so a manager call made outside any entry
    (each leaf then needs a TCS of its own) fails with a documented error; it
    stays a RuntimeError for code written against the earlier class.
    """

    def __init__(self, message: str) -> None:
        EmmError.__init__(self, errno.EAGAIN, message)


def _entries() -> list[tuple[Enclave, EnclaveThread]]:
    stack: list[tuple[Enclave, EnclaveThread]] | None = getattr(_tls, "stack", None)
    if stack is None:
        stack = []
        _tls.stack = stack
    return stack


def current_enclave() -> Enclave:
    """The enclave the calling Python thread is inside (innermost `enter`)."""
    stack = _entries()
    if not stack:
        raise NotEntered("not inside an enclave: call this inside `with enc.enter():`")
    return stack[-1][0]


class ThreadContext:
    """What code running inside sees of its enclave thread (`with enc.enter() as t`)."""

    def __init__(self, enclave: Enclave, thread: EnclaveThread) -> None:
        self.enclave = enclave
        self.thread = thread
        #: False once the `with` block that made this context has ended
        self.active = True

    @property
    def tcs(self) -> int:
        """The address of the TCS this thread entered through."""
        return self.thread.tcs_addr

    def _run(self, op: Callable[[], T]) -> T:
        if not self.active:
            raise NotEntered(f"this thread context (TCS {self.tcs:#x}) was used after its "
                             "`with enc.enter()` block ended; enter again")
        return self.enclave._guarded(op)

    def read(self, addr: int, n: int) -> bytes:
        """Read `n` bytes at `addr` from inside; faults take the whole #PF path. EnclaveCrashed if
        nobody handles one.
        """
        return self._run(lambda: self.thread.read(addr, n))

    def write(self, addr: int, data: bytes) -> None:
        """Write `data` at `addr` from inside (faults as for `read`)."""
        self._run(lambda: self.thread.write(addr, bytes(data)))

    def fetch(self, addr: int, n: int) -> bytes:
        """Fetch `n` bytes at `addr` as instructions (needs EXEC; faults as for `read`)."""
        return self._run(lambda: self.thread.fetch(addr, n))

    def eaccept(self, secinfo: int, addr: int) -> int:
        """EACCEPT on this thread; returns the SGX code (0 = success)."""
        return self._run(lambda: self.thread.eaccept(secinfo, addr))

    def eacceptcopy(self, secinfo: int, dest: int, src: int) -> int:
        """EACCEPTCOPY on this thread; returns the SGX code (0 = success)."""
        return self._run(lambda: self.thread.eacceptcopy(secinfo, dest, src))

    def emodpe(self, secinfo: int, addr: int) -> int:
        """EMODPE on this thread; returns the SGX code (0 = success)."""
        return self._run(lambda: self.thread.emodpe(secinfo, addr))

    @property
    def stack(self) -> StackView:
        """This thread's stack: `top`, `committed`, `max`, `touch(depth)` (services.stack)."""
        from sgx_emm.services.stack import StackView

        return StackView(self)


class Enclave:
    """One loaded enclave on its own simulated machine.

    Attributes: `emm`, the manager as code inside calls it (a `GuardedManager`:
    only inside `with enc.enter():`, arguments type-checked); `manager`, the same
    manager unguarded; `trace`, the machine's event stream (`by_category()`
    counts, `subscribe(listener)` events); `base` and `size`, ELRANGE;
    `user_base` and `user_end`, the range the public API allocates in;
    `tcs_addresses`, the load-time TCSes; `machine` and `fd`, the platform and
    the enclave's driver handle; `crashed`, True once it aborted or crashed.
    """

    def __init__(self, machine: Machine, layout: ImageLayout, base: int, size: int,
                 user_base: int, user_end: int, fd: EnclaveFd, untrusted: OcallTarget) -> None:
        self.machine = machine
        #: the enclave's driver handle: its ioctls and per-page kernel records
        self.fd = fd
        self.layout = layout
        self.base = base
        self.size = size
        self.user_base = user_base
        self.user_end = user_end
        self.untrusted = untrusted
        self.trace: Trace = machine.trace
        self.dispatcher = ExceptionDispatcher(self.trace)
        self.tcs_addresses = [base + off for off in layout.tcs_offsets()]
        self._free_tcs = list(reversed(self.tcs_addresses))
        #: TCSes that broke while in use (never handed out again)
        self._retired: set[int] = set()
        self._tcs_lock = threading.Lock()
        self._entered: dict[int, int] = {}     # TCS -> entries through it now
        self._config: EnclaveConfig | None = None
        self._services: dict[str, object] = {}
        self._services_lock = threading.RLock()
        self._dead: BaseException | None = None
        self.runtime = TrustedRuntime(base, size, untrusted, self.dispatcher, self.trace,
                                      self._ocall_bridge)
        self.primitives = TrustedPrimitives(self._on_leaf_thread, self._eaccept_pages)
        #: the manager itself, unguarded: for tests and tools that drive it directly
        self.manager: EnclaveMemoryManager
        #: the manager as users call it: inside `with enc.enter():`, typed arguments
        self.emm: GuardedManager

    # ------------------------------------------------------------ creation
    @classmethod
    def create(
        cls,
        base: int = DEFAULT_BASE,
        size: int = DEFAULT_SIZE,
        user_base: int | None = None,
        user_size: int | None = None,
        epc_pages: int | None = None,
        emalloc_initial: int = 0x10000,
        threads: int | None = None,
        *,
        config: EnclaveConfig | str | os.PathLike[str] | None = None,
        sgx2: bool = True,
        reclaim: bool = False,
        leaky_emalloc: bool = True,
        emalloc_legacy_2022: bool = False,
        emalloc_merge_right: bool | None = None,
        machine: Machine | None = None,
        untrusted_runtime: UntrustedFactory = UntrustedRuntime,
    ) -> Enclave:
        """Build the platform, load the image, run the trusted init; see module doc.

        `reclaim=True` lets the driver page EPC out (EWB/ELDU) when it runs short, so
        an enclave may commit more than `epc_pages`. `untrusted_runtime(kernel, fd)`
        builds the ocall services: pass a subclass
        of `UntrustedRuntime` that skips, repeats or lies to model a hostile OS
        (the trusted side must cope using only what the hardware tells it).

        `config` sizes the image as the Intel SDK's config.xml does: an
        `sgx_emm.services.EnclaveConfig`, or the path of a config.xml (heap, stacks,
        TCSNum/TCSMaxNum/TCSMinPool/TCSPolicy, reserved memory, user region). Without
        it the image is `EnclaveConfig()`'s, with `threads` TCSes (default 4).

        `emalloc_legacy_2022=True` gives the manager the metadata allocator of the
        reference before 2023, whose freed blocks never merged (`emalloc_merge_right=
        False` is the older spelling); `leaky_emalloc=False` one whose merged blocks
        are re-used.
        """
        if size <= 0 or size & (size - 1) or size < 1 << 20:
            raise ValueError("size must be a power of two of at least 1 MiB (SECS.SIZE)")
        if base <= 0 or base % size:
            raise ValueError("base must be non-zero and aligned to size (SECS.BASEADDR)")
        cfg = _resolve_config(config, threads)
        layout = cfg.layout() if config is not None else build_layout(cfg.tcs_num)
        if user_base is None:
            user_base = (base + size // 2 if not cfg.user_region_size
                         else base + layout.image_size)
        if user_size is None:
            user_size = cfg.user_region_size or base + size - user_base
        user_end = user_base + user_size
        if (user_base % PAGE_SIZE or user_size <= 0 or user_size % PAGE_SIZE
                or user_base < base + layout.image_size or user_end > base + size):
            raise ValueError("the user range must be page aligned, non-empty, above the "
                             f"image (ends at {base + layout.image_size:#x}) and inside "
                             "ELRANGE")
        if emalloc_initial <= 0 or emalloc_initial % PAGE_SIZE:
            raise ValueError("emalloc_initial must be a positive multiple of the page size")
        if machine is None:
            pages = epc_pages if epc_pages is not None else min(DEFAULT_EPC_PAGES,
                                                                 size // PAGE_SIZE)
            machine = Machine(pages, sgx2=sgx2, reclaim=reclaim)
        fd = _load_image(machine, layout, base, size)
        enclave = cls(machine, layout, base, size, user_base, user_end, fd,
                      untrusted_runtime(machine.kernel, fd))
        enclave._config = cfg
        enclave._trusted_init(emalloc_initial, leaky_emalloc, emalloc_legacy_2022,
                              emalloc_merge_right)
        from sgx_emm.services.stack import stack_overflow_cause

        enclave.dispatcher.add_fatal_check(lambda record: stack_overflow_cause(enclave, record))
        if cfg.heap_init_size > cfg.heap_min_size:
            from sgx_emm.services.heap import commit_initial_heap

            commit_initial_heap(enclave)
        return enclave

    def _trusted_init(self, emalloc_initial: int, leaky_emalloc: bool,
                      emalloc_legacy_2022: bool, emalloc_merge_right: bool | None) -> None:
        """The SDK's first ecall: sgx_mm_init, then one EMA per layout entry."""
        meta = self.base + self.layout.meta_area_offset
        self.manager = EnclaveMemoryManager(self.runtime, self.primitives,
                                            meta_area_base=meta, leaky_emalloc=leaky_emalloc,
                                            emalloc_legacy_2022=emalloc_legacy_2022,
                                            emalloc_merge_right=emalloc_merge_right)
        self.emm = GuardedManager(self, self.manager)
        with self.enter():
            self.manager.init(self.user_base, self.user_end, emalloc_initial=emalloc_initial)
            for entry in self.layout.entries:
                addr = self.base + entry.offset
                if entry.kind is EntryKind.GUARD:
                    self.emm.mm_init_ema(addr, entry.size, RESERVE | SYSTEM, PROT_NONE)
                elif entry.kind is EntryKind.DYNAMIC:
                    order = GROWSDOWN if entry.grows_down else GROWSUP
                    handler = None
                    if entry.name == "heap_dyn":
                        from sgx_emm.services.heap import heap_fault_handler

                        handler = heap_fault_handler(self.emm, self.config,
                                                     addr + entry.size)
                    self.emm.mm_alloc(addr, entry.size,
                                      COMMIT_ON_DEMAND | order | SYSTEM | FIXED | entry.page_type,
                                      handler=handler)
                elif entry.page_type == PAGE_TYPE_TCS:
                    self.emm.mm_init_ema(addr, entry.size, SYSTEM | PAGE_TYPE_TCS, PROT_NONE)
                else:
                    self.emm.mm_init_ema(addr, entry.size, SYSTEM | entry.page_type, entry.prot)

    # ------------------------------------------------------------ running code
    def enter(self, tcs: int | None = None) -> AbstractContextManager[ThreadContext]:
        """An ecall: EENTER on `tcs` (default: a free load-time TCS) until the block ends.

        Raises EnclaveCrashed when the enclave is dead (or EENTER itself faults, with
        the cause), ValueError when `tcs` is not a TCS page of this enclave (the
        enclave stays alive), OutOfTcs when no load-time TCS is free. A dead enclave
        and a wrong `tcs` are refused by the call itself, before any `with`, so a
        caller learns of them where it named the TCS; the entry happens at `with`.
        """
        self._check_alive()
        if tcs is not None:
            self._check_tcs(tcs)
        return self._entry(tcs)

    @contextmanager
    def _entry(self, tcs: int | None) -> Iterator[ThreadContext]:
        self._check_alive()
        if tcs is not None:
            self._check_tcs(tcs)
        chosen = tcs if tcs is not None else self._take_tcs()
        # an explicit TCS that sits in the free pool is taken out of it meanwhile,
        # so a concurrent enter() without a TCS does not pick the busy one
        borrowed = tcs is not None and self._borrow_tcs(tcs)
        with self._tcs_lock:
            self._entered[chosen] = self._entered.get(chosen, 0) + 1
        try:
            run = Run(chosen, user_handler=self._untrusted_exception_handler)
            try:
                inline = self.machine.vdso.inline(run)
                thread = inline.__enter__()
            except FaultReported as exc:
                raise self._crash(f"EENTER through {chosen:#x} faulted", exc) from None
            stack = _entries()
            stack.append((self, thread))
            ctx = ThreadContext(self, thread)
            try:
                yield ctx
            except (EnclaveAbort, EnclaveCrashed) as exc:
                self._dead = self._dead or exc
                raise
            finally:
                ctx.active = False
                stack.pop()
                inline.__exit__(None, None, None)
        finally:
            with self._tcs_lock:
                left = self._entered[chosen] - 1
                if left:
                    self._entered[chosen] = left
                else:
                    del self._entered[chosen]
            if (tcs is None or borrowed) and chosen not in self._retired:
                self._give_tcs(chosen)

    def _borrow_tcs(self, tcs: int) -> bool:
        with self._tcs_lock:
            if tcs in self._free_tcs:
                self._free_tcs.remove(tcs)
                return True
            return False

    def take_tcs(self) -> int | None:
        """Take a free TCS of the image out of the pool (None if every one is busy);
        for runtimes that schedule threads themselves (`services.threads`)."""
        with self._tcs_lock:
            return self._free_tcs.pop() if self._free_tcs else None

    def give_tcs(self, tcs: int) -> None:
        """Put a TCS taken with `take_tcs` back into the pool."""
        self._give_tcs(tcs)

    def free_tcs_count(self) -> int:
        """How many TCSes of the image are free now."""
        with self._tcs_lock:
            return len(self._free_tcs)

    def tcs_busy(self, tcs: int) -> bool:
        """Whether a thread is inside the enclave through `tcs` now."""
        with self._tcs_lock:
            return tcs in self._entered

    def current(self) -> ThreadContext | None:
        """The calling Python thread's innermost entry into this enclave, if any."""
        thread = self._current_thread()
        return ThreadContext(self, thread) if thread is not None else None

    def _take_tcs(self) -> int:
        with self._tcs_lock:
            if not self._free_tcs:
                raise OutOfTcs("every TCS of the enclave is in use")
            return self._free_tcs.pop()

    def _give_tcs(self, tcs: int) -> None:
        with self._tcs_lock:
            self._free_tcs.append(tcs)

    def _check_tcs(self, tcs: object) -> None:
        """`tcs` must name a TCS page of this enclave: a load-time one, or a page the
        driver records as TCS (made one with modify_type)."""
        if isinstance(tcs, bool) or not isinstance(tcs, int):
            raise TypeError(f"tcs must be an int address, not {type(tcs).__name__}")
        if tcs in self.tcs_addresses:
            return
        record = None
        if tcs % PAGE_SIZE == 0 and self.base <= tcs < self.base + self.size:
            record = self.fd.record(tcs)
        if record is None or record[1] != PT_TCS:
            raise ValueError(
                f"tcs {tcs:#x} is not a TCS page of this enclave (load-time TCSes: "
                f"{', '.join(f'{t:#x}' for t in self.tcs_addresses)}; a committed REG|RW "
                "page becomes one with emm.modify_type(addr, PAGE_SIZE, PAGE_TYPE_TCS))")

    def _check_alive(self) -> None:
        dead = self._dead
        if dead is not None:
            raise EnclaveCrashed(f"the enclave is dead: {dead}",
                                 cause=getattr(dead, "cause", None) or str(dead))
        if self.dispatcher.crashed is not None:
            raise self.dispatcher.crashed

    def require_entry(self, call: str = "this call") -> None:
        """Raise unless the calling thread is inside this live enclave.

        EnclaveCrashed once the enclave is dead (every later call fails, with the
        first crash's cause); NotEntered outside `with enc.enter():`, because
        the manager is trusted code that only runs inside.
        """
        if self._dead is not None or self.dispatcher.crashed is not None:
            self._check_alive()
        if self._current_thread() is None:
            raise NotEntered(f"{call}: not inside the enclave; call it inside "
                             "`with enc.enter():` (the manager is trusted code)")

    @property
    def crashed(self) -> bool:
        """True once the enclave aborted or crashed: every later call raises EnclaveCrashed."""
        return self._dead is not None or self.dispatcher.crashed is not None

    def _guarded(self, op: Callable[[], T]) -> T:
        """Run an access; a fault that leaves the enclave means the enclave is lost."""
        try:
            return op()
        except FaultReported as exc:
            raise self._lost(exc) from None
        except EnclaveAbort as exc:
            self._dead = self._dead or exc
            raise

    def _lost(self, exc: FaultReported) -> EnclaveCrashed:
        """A fault reported out of the enclave: the enclave is dead; returns the crash
        to raise (what `_guarded` and the page loop's inline guard raise)."""
        what = ("the same fault repeated without progress (livelock)"
                if exc.run.extra.get("livelock") else "enclave exception not handled")
        crash = self._crash(what, exc)
        self._dead = self._dead or crash
        return crash

    def _crash(self, what: str, exc: FaultReported) -> EnclaveCrashed:
        """The user-facing end of a fault the vDSO reported back out of the enclave."""
        run = exc.run
        reason = getattr(run, "reason", "") or ""
        os_reason = getattr(run, "os_reason", "") or ""
        vector, errcd, addr = run.exception_vector, run.exception_error_code, run.exception_addr
        repeats = run.extra.get("livelock")
        if repeats:
            cause = diagnosis.livelock_cause(self, vector, errcd, addr, int(repeats),
                                             self.dispatcher.last_outcome(), reason,
                                             os_reason)
        else:
            cause = diagnosis.fault_cause(self, vector, errcd, addr, reason, os_reason)
        return EnclaveCrashed(
            f"{what}: vector {vector}, error code {errcd:#x}, address {addr:#x}",
            vector=vector, errcd=errcd, addr=addr, cause=cause)

    def _current_thread(self) -> EnclaveThread | None:
        """This Python thread's innermost entry into this enclave, if any. A plain loop
        over the thread's entry stack, innermost first (each ocall and page loop
        asks, so no generator is built for the answer)."""
        stack: list[tuple[Enclave, EnclaveThread]] | None = getattr(_tls, "stack", None)
        if stack:
            enclave, thread = stack[-1]
            if enclave is self:         # the usual case: the innermost entry is this one
                return thread
            for enclave, thread in reversed(stack):
                if enclave is self:
                    return thread
        return None

    def _ocall_bridge(self, untrusted: Callable[[], int]) -> int:
        """Leave through this Python thread's enclave thread for an ocall, if inside."""
        inside = self._current_thread()
        if inside is None:
            return untrusted()
        try:
            return inside.ocall(untrusted)
        except CpuFault as fault:
            # the ORET's EENTER faulted: the enclave broke the TCS it runs on (or its
            # SSA) while outside; the thread can never come back in
            tcs = inside.tcs_addr
            self._retired.add(tcs)
            crash = EnclaveCrashed(
                f"EENTER through TCS {tcs:#x} after an ocall faulted (vector {fault.vector}, "
                f"error code {fault.errcd:#x}, address {fault.addr:#x}): the TCS or its SSA "
                "is no longer a valid, accepted page; the TCS is retired",
                vector=fault.vector, errcd=fault.errcd, addr=fault.addr,
                cause=diagnosis.fault_cause(self, fault.vector, fault.errcd, fault.addr,
                                            getattr(fault, "reason", ""),
                                            getattr(fault, "os_reason", "")))
            self._dead = self._dead or crash
            raise crash from None

    def _on_leaf_thread(self, leaf: Callable[[LeafIssuer], int]) -> int:
        """Run a manager leaf on this Python thread's enclave thread, entering if needed."""
        inside = self._current_thread()
        if inside is not None:
            thread = inside
            return self._guarded(lambda: leaf(thread))
        with self.enter() as ctx:
            return self._guarded(lambda: leaf(ctx.thread))

    def _eaccept_pages(self, secinfo: int, pages: range, done: list[int]) -> int:
        """The manager's EACCEPT page loop on this Python thread's enclave thread:
        looked up and guarded once for the loop, not once per page. Outside the
        enclave each page's leaf enters on its own, as single leaves do there."""
        inside = self._current_thread()
        if inside is None:
            return eaccept_each(self.primitives.eaccept, secinfo, pages, done)
        try:        # `_guarded`, written out: no closure and no call for each commit
            return inside.eaccept_pages(secinfo, pages, done)
        except FaultReported as exc:
            raise self._lost(exc) from None
        except EnclaveAbort as exc:
            self._dead = self._dead or exc
            raise

    # ------------------------------------------------------------ exceptions
    def _untrusted_exception_handler(self, run: Run) -> int:
        """The urts side: a nested ecall into the dispatcher's phase 1, then ERESUME."""
        if self.crashed:
            return 0
        with self.machine.vdso.inline(Run(run.tcs)) as nested:
            frame = nested.ssa(nested.level - 1)
            if not frame.exitinfo_valid:
                return 0
            record = ExceptionRecord(frame.vector, frame.exinfo_maddr, frame.exinfo_errcd)
            frame.clear_exitinfo()
            why = (getattr(run, "exception_reason", ""), getattr(run, "exception_os_reason", ""))
            frame.rip = lambda: self._phase2(record, why)
        return ERESUME

    def _phase2(self, record: ExceptionRecord, why: tuple[str, str] = ("", "")) -> None:
        """Run the handler chain, bounding how deep exceptions may nest.

        A handler that faults again starts another delivery on the same stack; on
        hardware an endless chain ends when the enclave stack overflows. Here it
        ends, as a crash, after MAX_NESTED_EXCEPTIONS levels. `why` is the
        platform's (reason, os_reason) for the fault: a crash's cause uses it.
        """
        depth = getattr(_tls, "depth", 0)
        chain: list[tuple[int, int, int]] = getattr(_tls, "chain", [])
        key = (record.vector, record.maddr, record.errcd)
        if depth >= MAX_NESTED_EXCEPTIONS:
            crash = EnclaveCrashed(
                f"exceptions nested {depth} deep (the enclave stack would overflow): "
                f"vector {record.vector}, address {record.maddr:#x}, "
                f"error code {record.errcd:#x}",
                vector=record.vector, errcd=record.errcd, addr=record.maddr,
                cause=diagnosis.nesting_cause(self, [*chain, key], depth))
            self._dead = self._dead or crash
            raise crash
        _tls.depth = depth + 1
        _tls.chain = [*chain, key]
        try:
            self.dispatcher.dispatch(record)
        except EnclaveCrashed as crash:
            if crash is self.dispatcher.crashed and crash.cause == crash.message:
                crash.cause = (diagnosis.fault_cause(self, record.vector, record.errcd,
                                                     record.maddr, *why)
                               + "; no handler took it: "
                               + diagnosis.outcome_text(self.dispatcher.last_outcome()))
            raise
        finally:
            _tls.depth = depth
            _tls.chain = chain

    def register_exception_handler(self, handler: ExceptionHandler, *,
                                   first: bool = False) -> None:
        """`sgx_register_exception_handler`: runs after the manager's #PF handler."""
        self.dispatcher.register(handler, first=first)

    def unregister_exception_handler(self, handler: ExceptionHandler) -> bool:
        """`sgx_unregister_exception_handler`: False if it was not registered."""
        return self.dispatcher.unregister(handler)

    def use_untrusted_runtime(self, untrusted: OcallTarget) -> OcallTarget:
        """Serve the manager's ocalls from `untrusted` from now on (e.g. a hostile
        subclass of `UntrustedRuntime`); returns the runtime it replaces."""
        old = self.runtime.untrusted
        self.runtime.untrusted = untrusted
        self.untrusted = untrusted
        return old

    # ------------------------------------------------------------ services
    @property
    def config(self) -> EnclaveConfig:
        """The configuration the image was laid out from (`EnclaveConfig()` by default)."""
        if self._config is None:
            from sgx_emm.services.config import EnclaveConfig

            self._config = EnclaveConfig(tcs_num=len(self.tcs_addresses))
        return self._config

    def _service(self, name: str, make: Callable[[], object]) -> object:
        """Build a service on first use: creation stays as cheap as without services."""
        with self._services_lock:
            service = self._services.get(name)
            if service is None:
                service = self._services[name] = make()
            return service

    @property
    def thread_contexts(self) -> ThreadContexts:
        """Where each thread's TCS, SSA, stack and TLS lie; builds and trims dynamic ones."""
        from sgx_emm.services.threads import ThreadContexts

        return self._service("contexts",  # type: ignore[return-value]
                             lambda: ThreadContexts(self, self.config))

    def add_thread(self) -> int:
        """Build a new thread as the SDK does on EDMM hardware (TCS with a valid image,
        SSA frames, a stack under StackMaxSize of on-demand space, a TLS page, then
        modify_type(TCS)) and return its TCS address, which `enter(tcs=...)` enters.
        Bounded by TCSMaxNum (RuntimeError); EmmError(ENOMEM) when memory runs out."""
        return self.thread_contexts.add()

    def remove_thread(self, tcs: int) -> None:
        """Trim a thread made by `add_thread` (every page of its context).
        ValueError for a TCS of the image, an unknown address or a TCS in use."""
        self.thread_contexts.remove(tcs)

    @property
    def heap(self) -> Heap:
        """The trusted heap (`malloc`, `free`, `realloc`, `calloc`, `stats`)."""
        from sgx_emm.services.heap import Heap

        return self._service("heap", lambda: Heap(self, self.config))  # type: ignore[return-value]

    @property
    def mman(self) -> Mman:
        """POSIX `mmap`, `munmap`, `mprotect`, `madvise` inside the enclave."""
        from sgx_emm.services.mman import Mman

        return self._service("mman", lambda: Mman(self))  # type: ignore[return-value]

    @property
    def threads(self) -> Threads:
        """Run functions on enclave threads: `create(fn, *args)`, `join(handle)`."""
        from sgx_emm.services.threads import Threads

        return self._service(  # type: ignore[return-value]
            "threads", lambda: Threads(self, self.thread_contexts, self.config))

    @property
    def loader(self) -> Loader:
        """Load code into executable pages (`load(code)`, `unload(addr)`), W^X."""
        from sgx_emm.services.loader import Loader

        return self._service("loader", lambda: Loader(self))  # type: ignore[return-value]

    # ------------------------------------------------------------ outside views
    def check(self, *, raise_on_difference: bool = False) -> list[Difference]:
        """The manager's books against the EPCM and page tables: [] when they agree.

        Lists every difference (see `sgx_emm.books`), or raises `BooksDisagree`
        with them when `raise_on_difference`. Call it between manager calls.
        """
        diffs = check_books(self)
        if diffs and raise_on_difference:
            raise BooksDisagree(diffs)
        return diffs

    def host_read(self, addr: int, n: int) -> bytes:
        """Read enclave memory from outside: 0xFF bytes, as on hardware."""
        return self.machine.host_read(addr, n)


def _resolve_config(config: EnclaveConfig | str | os.PathLike[str] | None,
                    threads: int | None) -> EnclaveConfig:
    """The configuration `create` lays the image out from; `threads` is TCSNum."""
    from sgx_emm.services.config import EnclaveConfig, load_config

    if config is None:
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                    or threads < 1):
            raise ValueError("threads must be at least 1")
        return EnclaveConfig(tcs_num=4 if threads is None else threads)
    cfg = load_config(config)
    if threads is not None and threads != cfg.tcs_num:
        raise ValueError(f"threads={threads} disagrees with the configuration's TCSNum "
                         f"{cfg.tcs_num}; give one of them")
    return cfg



def _load_image(machine: Machine, layout: ImageLayout, base: int, size: int) -> EnclaveFd:
    """The untrusted loader: ECREATE, EADD the static entries, EINIT, mmap segments."""
    fd = machine.open_enclave()
    fd.create(SecsImage(base, size, ssa_frame_size=1, miscselect=MISC_EXINFO))
    code = layout.find("code")
    for entry in layout.entries:
        if entry.kind is not EntryKind.STATIC:
            continue
        if entry.page_type == PAGE_TYPE_TCS:
            ssa = layout.find("ssa", entry.thread)
            image = TcsImage(ossa=ssa.offset, nssa=NSSA, oentry=code.offset)
            fd.add_pages(entry.offset, image.to_bytes(), secinfo_flags(0, PT_TCS))
        else:
            fd.add_pages(entry.offset, bytes(entry.size), secinfo_flags(entry.prot, PT_REG))
    fd.init()
    for entry in layout.entries:
        if entry.kind is EntryKind.GUARD:
            continue
        prot = entry.prot if entry.page_type != PAGE_TYPE_TCS else 0x3
        machine.mmap(base + entry.offset, entry.size, prot, MAP_SHARED | MAP_FIXED, fd)
    return fd

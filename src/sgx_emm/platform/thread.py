"""An enclave thread: one entered TCS, as seen by code running inside.

`EnclaveThread` is what enclave code holds after EENTER: memory accesses
(`read`, `write`, `fetch`), the ENCLU leaves the manager issues (`eaccept`,
`eacceptcopy`, `emodpe`, returning the SGX code), SSA frames (`ssa(i)`) and
`eexit()`. Use it from the Python thread that entered. The CPU keeps the entry's
state (`EntryState`, state.py); the thread reads it.

Every access or leaf that faults goes through one walk, `_deliver`, which reads
like Linux's path from the exception to `sgx_vma_fault` and back: AEX into SSA
frame CSSA, the kernel's #PF handler, then either the AEP's transparent ERESUME
(the kernel fixed it: EAUG, PTE mapped) or a report to the entry's session
(vdso.py), which calls the user handler or suspends the access. After an ERESUME
of this thread's frame, a callable the enclave wrote into that frame's RIP runs
first (on this thread, inside the enclave), then the faulting access or leaf is
executed again.

The commit of an untouched page by EACCEPT (the benchmark's and the manager's
common case) takes a fast path while nobody listens to the trace and the kernel
has no hostile hooks: the same steps in one pass under the machine lock, without
exceptions, through the same check, EAUG and frame-writing functions; a page loop
(`eaccept_pages`) runs its pages in batches under one hold of the lock
(`_accept_pages`; docs/platform-model.md, "The commit fast path").
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Protocol, TypeVar

from sgx_emm.flags import PAGE_SIZE
from sgx_emm.platform.cpu import NOT_PRESENT, RIP_INTERRUPTED, Cpu, Rip, eaccept_not_present
from sgx_emm.platform.exceptions import CpuFault, FaultReported, RunSnapshot
from sgx_emm.platform.kernel import Kernel
from sgx_emm.platform.mmu import Vma
from sgx_emm.platform.secinfo import (
    ERESUME,
    EXINFO_SIZE,
    GPR_EXITINFO,
    GPR_RIP,
    GPRSGX_SIZE,
    PF_U,
    VECTOR_PF,
)
from sgx_emm.platform.state import EnclaveControl, EntryState, TcsControl
from sgx_emm.trace import AEX, ENTRY, LEAF, PAGE_FAULT

T = TypeVar("T")
#: consecutive kernel fixes of one access before its fault is reported anyway
MAX_FIXES = 64
#: The same fault (vector, address, error code) delivered this many times in a
#: row without the access making progress is a livelock: the entry ends.
MAX_REDELIVERIES = 256
#: pages `eaccept_pages` runs under one hold of the machine lock (a page-table chunk)
_BATCH_PAGES = 512

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

#: The events of an EACCEPT that commits an untouched page, in order: the EACCEPT
#: that faults (0x4), the AEX, the kernel's #PF, its EAUG, the AEP's ERESUME and the
#: EACCEPT again. `_COMMIT_PREFIX[n]` is the first n of them.
_COMMIT_EVENTS = ((LEAF, "EACCEPT"), (AEX, "#PF"), (PAGE_FAULT, f"{PF_U:#x}"), (LEAF, "EAUG"),
                  (ENTRY, "ERESUME"), (LEAF, "EACCEPT"))
_COMMIT_PREFIX = tuple(_COMMIT_EVENTS[:n] for n in range(len(_COMMIT_EVENTS) + 1))


class Session(Protocol):
    """Who decides what happens to a fault the kernel could not fix (vdso.py)."""

    def report(self, thread: EnclaveThread, fault: CpuFault) -> Rip:
        """Return the RIP of the restored frame once this thread was ERESUMEd;
        raise to end the access."""
        ...


class EnclaveThread:
    """The in-enclave side of one entry on one TCS at one SSA level."""

    def __init__(self, cpu: Cpu, kernel: Kernel, entry: EntryState,
                 session: Session | None = None) -> None:
        self._cpu = cpu
        self._kernel = kernel
        self.entry = entry
        entry.owner = self
        self.session = session
        self._trace = cpu.trace

    # --- identity and entry state (the CPU's, read here) ---
    @property
    def tcs_addr(self) -> int:
        return self.entry.tcs.linaddr

    @property
    def enclave(self) -> EnclaveControl:
        return self.entry.enclave

    @property
    def tcs_control(self) -> TcsControl:
        return self.entry.tcs

    @property
    def level(self) -> int:
        """The SSA level this entry runs at (CSSA at its EENTER)."""
        return self.entry.level

    @property
    def ssa_slot(self) -> int:
        return self.entry.ssa_slot

    @property
    def inside(self) -> bool:
        """False once the entry left by EEXIT or AEX (until its ERESUME)."""
        return self.entry.inside

    @property
    def base(self) -> int:
        return self.entry.enclave.base

    @property
    def size(self) -> int:
        return self.entry.enclave.size

    # --- accesses and leaves: each may fault and be re-executed ---
    def read(self, addr: int, n: int) -> bytes:
        """Read `n` bytes at `addr` from inside. Raises: FaultReported (a fault
        nobody fixed), ValueError (a range outside 0..2^64)."""
        if not (isinstance(addr, int) and isinstance(n, int) and addr >= 0
                and n >= 0 and addr + n <= 1 << 64):
            _check_range(addr, n)
        read = self._cpu.read
        try:                       # _run, without its call on the usual path
            return read(self.entry, addr, n)
        except CpuFault as fault:
            return self._retry(read, (addr, n), fault, 0, None, 0)

    def write(self, addr: int, data: bytes) -> None:
        """Write `data` at `addr` from inside. Raises: as `read`."""
        n = len(data)
        if not (isinstance(addr, int) and addr >= 0 and addr + n <= 1 << 64):
            _check_range(addr, n)
        data = bytes(data)
        write = self._cpu.write
        try:
            write(self.entry, addr, data)
        except CpuFault as fault:
            self._retry(write, (addr, data), fault, 0, None, 0)

    def fetch(self, addr: int, n: int) -> bytes:
        """Fetch `n` bytes of code at `addr`. Raises: as `read`."""
        _check_range(addr, n)
        return self._run(self._cpu.fetch, addr, n)

    def eaccept(self, secinfo_flags: int, addr: int, *, secinfo_addr: int | None = None) -> int:
        """EACCEPT; with `secinfo_addr` the SECINFO is read from enclave memory there
        (all RBX checks apply), otherwise `secinfo_flags` is used as an already
        valid, 64-byte aligned SECINFO. Returns: the SGX code (0 on success)."""
        if secinfo_addr is None:    # an already valid SECINFO: a page loop of one page
            return self.eaccept_pages(secinfo_flags, range(addr, addr + 1), [0])
        return self._run(self._cpu.eaccept, secinfo_flags, addr, secinfo_addr)

    def eaccept_pages(self, secinfo_flags: int, pages: range, done: list[int]) -> int:
        """`eaccept(secinfo_flags, addr)` for each address of `pages` in order, stopping
        at the first nonzero code, which is returned (0 if none). `done[0]` becomes
        the number of pages accepted, also when one raises. One call for a page
        loop, so the caller finds and guards this thread once, not per page; while
        the fast pass may run, pages go in batches under one hold of the machine
        lock (`_accept_pages`), otherwise each takes the general leaf."""
        owed = [0] * len(_COMMIT_PREFIX)   # fast passes that ended after n events
        done[0] = 0
        total = len(pages)
        try:
            while done[0] < total:
                n = done[0]
                if not self._trace.listening and self._kernel.commit_fast_path:
                    batch = pages if not n and total <= _BATCH_PAGES else pages[n:n + _BATCH_PAGES]
                    rc = self._accept_pages(secinfo_flags, batch, owed, done)
                else:
                    rc = self._run(self._cpu.eaccept, secinfo_flags, pages[n], None)
                    if not rc:
                        done[0] = n + 1
                if rc:
                    return rc
            return 0
        finally:
            if any(owed):
                self._pay(owed)

    def _pay(self, owed: list[int]) -> None:
        """Count the events of the fast passes tallied in `owed` (index: how many of
        `_COMMIT_EVENTS` a pass ran), which ran while nobody listened: as the EDMM
        page loops do, a listener that subscribed since is not told of them."""
        trace = self._trace
        for events, times in enumerate(owed):
            if times:
                trace.count_unheard(_COMMIT_PREFIX[events], times)

    def eacceptcopy(self, secinfo_flags: int, dest: int, src: int, *,
                    secinfo_addr: int | None = None) -> int:
        """EACCEPTCOPY. Returns: the SGX code (0 on success)."""
        return self._run(self._cpu.eacceptcopy, secinfo_flags, dest, src, secinfo_addr)

    def emodpe(self, secinfo_flags: int, addr: int, *, secinfo_addr: int | None = None) -> int:
        """EMODPE. Returns: the SGX code (0 on success)."""
        return self._run(self._cpu.emodpe, secinfo_flags, addr, secinfo_addr)

    def ocall(self, untrusted: Callable[[], T]) -> T:
        """An ocall as the Intel SDK makes one: EEXIT to the untrusted runtime, run
        `untrusted` there, then EENTER again on the same TCS (the ORET). While it
        is outside, the thread holds no place in the enclave: an ETRACK does not
        wait for it and the kernel's IPIs do not interrupt it."""
        entry, cpu = self.entry, self._cpu
        cpu.eexit(entry)
        try:
            return untrusted()
        finally:
            try:            # the ORET: EENTER this thread's TCS again
                cpu.eenter(entry.tcs.linaddr, entry)
            except CpuFault as fault:
                self._reenter(fault)

    def _reenter(self, fault: CpuFault) -> None:
        """The ORET's EENTER raised `fault`: let the kernel fix it and EENTER again, as
        long as it fixes them, MAX_FIXES times at most."""
        for _ in range(MAX_FIXES):
            if not self._kernel.fix(fault):
                raise fault
            try:
                self._cpu.eenter(self.tcs_addr, self.entry)
                return
            except CpuFault as again:
                fault = again
        raise fault

    def eexit(self) -> None:
        """EEXIT. Raises: NotInsideEnclave."""
        self._cpu.eexit(self.entry)

    def ssa(self, frame: int) -> SsaFrame:
        """SSA frame `frame` of this thread's TCS (frame 0 after an AEX at level 0)."""
        return SsaFrame(self, frame)

    # --- the fault walk ---
    def _run(self, op: Callable[..., T], *args: object) -> T:
        try:
            return op(self.entry, *args)
        except CpuFault as fault:
            return self._retry(op, args, fault, 0, None, 0)

    def _retry(self, op: Callable[..., T], args: tuple[object, ...], fault: CpuFault,
               fixes: int, last: tuple[int, int, int] | None, repeats: int) -> T:
        """Deliver `fault` and execute the access again until it completes. `fixes`,
        `last` (the previous fault's key) and `repeats` carry the loop's state when
        the access has already faulted before (the commit fast path)."""
        answer = ""  # what the kernel last said when it did not fix the fault
        while True:
            key = (fault.vector, fault.addr, fault.errcd)
            repeats = repeats + 1 if key == last else 0
            last = key
            if repeats >= MAX_REDELIVERIES:
                # Real hardware would spin here forever (e.g. a handler that
                # says CONTINUE_EXECUTION while the OS keeps the PTE read-only);
                # a simulator that hangs helps nobody, so the entry ends.
                raise FaultReported(RunSnapshot(
                    self.tcs_addr, ERESUME, fault.vector, fault.errcd & 0xFFFF,
                    _reported_addr(fault), extra={"livelock": repeats},
                    reason=fault.reason,
                    os_reason=(f"the same fault was delivered {repeats} times without "
                               "progress (livelock)"
                               + (f"; last kernel answer: {answer}"
                                  if answer else "")))) from None
            fixes = self._deliver(fault, fixes)
            answer = fault.os_reason or answer
            try:
                return op(self.entry, *args)
            except CpuFault as again:
                fault = again

    def _deliver(self, fault: CpuFault, fixes: int) -> int:
        """Deliver one fault of this entry, as the hardware and Linux do:

        1. AEX: the CPU saves the context in SSA frame CSSA and leaves.
        2. The kernel's #PF handler (a #PF only): access_error, sgx_vma_fault,
           EAUG or ELDU, the PTE.
        3. Fixed: the AEP's ERESUME (`_resume_after_fix`). Not fixed (or fixed
           MAX_FIXES times in a row without progress, a broken or hostile kernel):
           the fault, with the kernel's reason, is reported to the session (the
           user handler), or raised as FaultReported when there is none.
        4. A callable the enclave left in the restored frame's RIP runs.

        Returns: how many times in a row the kernel has now fixed a fault of this
        access."""
        self._cpu.aex(self.entry, fault)
        if fault.vector == VECTOR_PF and fixes < MAX_FIXES and self._kernel.fix(fault):
            fixes += 1
            rip = self._resume_after_fix()
        else:
            if fault.vector == VECTOR_PF and fixes >= MAX_FIXES and not fault.os_reason:
                fault.os_reason = (f"the kernel 'fixed' this fault {fixes} times in a row "
                                   "without the access making progress")
            rip = self._report(fault)
            fixes = 0
        if callable(rip):
            rip()
        return fixes

    def _report(self, fault: CpuFault) -> Rip:
        """Hand a fault the kernel did not fix to the session; without one, end the
        access with FaultReported. Returns: the RIP of the frame the session
        resumed."""
        session = self.session
        if session is None:
            raise FaultReported(RunSnapshot(self.tcs_addr, ERESUME, fault.vector,
                                            fault.errcd & 0xFFFF, _reported_addr(fault),
                                            reason=fault.reason, os_reason=fault.os_reason))
        return session.report(self, fault)

    def _resume_after_fix(self, fault: CpuFault | None = None) -> Rip:
        """The AEP's ERESUME after the kernel fixed a fault; a fault of ERESUME itself
        is fixed by the kernel or reported like any other. `fault`: the first
        ERESUME already ran and raised it. Returns: the restored frame's RIP."""
        for attempt in range(MAX_FIXES + 1):
            if fault is None:
                try:
                    return self._cpu.eresume(self.tcs_addr)[1]
                except CpuFault as caught:
                    fault = caught
            if attempt < MAX_FIXES and self._kernel.fix(fault):
                fault = None
                continue
            if self.session is None:
                raise fault
            return self.session.report(self, fault)
        raise AssertionError("unreachable")  # pragma: no cover

    # --- the commit fast path ---
    def _accept_pages(self, secinfo: int, pages: range, owed: list[int],
                      done: list[int]) -> int:
        """EACCEPT of each page of `pages` (one batch) when nobody listens to the trace:
        per page exactly the steps, state changes and event counts of
        `_run(cpu.eaccept, ...)`, but all pages under one hold of the machine lock
        and without exceptions; the usual commit of an untouched page (EACCEPT
        meets a not-present PTE, AEX, the kernel EAUGs and maps, ERESUME, EACCEPT
        again) is one pass. Within the hold, two results carry from page to page
        instead of being recomputed: the VMA the kernel found for a first touch
        (`Kernel.first_touch_vma`, valid for all its addresses) and, once one
        AEX + ERESUME went the plain way, everything of the next ones but the
        frame's EXINFO (`Cpu.exinfo_writer`). A page that goes otherwise leaves the
        pass at the step where it differs; the lock is released and it continues
        on the general path from there (`_continue`), which ends the batch; so
        does a listener subscribing or hooks being installed meanwhile (by another
        thread), before the next page. The pass counts its quick accepts (one
        event) and plain commits (all six) itself when it ends; other pages are
        tallied in `owed` (indexed by how many of `_COMMIT_EVENTS` they ran).
        Returns: the first nonzero code, else 0; `done[0]` grows by the pages
        accepted, also when one raises."""
        cpu = self._cpu
        kernel = self._kernel
        trace = self._trace
        entry = self.entry
        eaccept = cpu.eaccept_locked
        augmented = cpu.eaccept_augmented_locked
        n = 0
        plain = quick = 0      # pages done after all six events / after one EACCEPT
        events = 1             # of _COMMIT_EVENTS the page in hand has run
        fault: CpuFault | None = None
        rip: Rip = 0
        addr = 0
        vma: Vma | None = None     # the first-touch VMA, proven for all its addresses
        resumes = False            # AEX + ERESUME of this entry proven the plain case
        exinfo: Callable[[int, int], None] | None = None   # then all that is left of them
        lock = cpu.lock
        lock.acquire()
        try:
            try:
                for addr in pages:
                    if trace.listening or not kernel.commit_fast_path:
                        return 0        # a listener or hooks came: the caller goes on
                    events = 1
                    ret = eaccept(entry, secinfo, addr)
                    if ret == NOT_PRESENT:
                        # the kernel's part first: it depends on nothing the AEX
                        # changes, and nobody sees the order while the lock is held
                        if vma is None or not vma.start <= addr < vma.end:
                            vma = kernel.first_touch_vma(addr)
                        slot = kernel.eaug_in(vma, addr) if vma is not None else -1
                        if slot < 0:                # not the plain case
                            fault = eaccept_not_present(addr)
                            break
                        if resumes:
                            events = 6
                            if exinfo is None:    # asked for at the second page, not the first
                                exinfo = cpu.exinfo_writer(entry, VECTOR_PF)
                            exinfo(addr, PF_U)
                            ret = augmented(entry, secinfo, addr, slot)
                        else:
                            resumed = cpu.aex_eresume_locked(entry, VECTOR_PF, addr, PF_U)
                            events = 5
                            rip = (cpu.eresume_locked(entry.tcs.linaddr)[1]
                                   if resumed is None else resumed)
                            if callable(rip):
                                break
                            events = 6
                            if resumed is not None:   # nothing else ran: as EAUGed
                                resumes = resumed == RIP_INTERRUPTED
                                ret = augmented(entry, secinfo, addr, slot)
                            else:
                                ret = eaccept(entry, secinfo, addr)
                                if ret == NOT_PRESENT:
                                    fault = eaccept_not_present(addr)
                                    break
                        plain += 1
                    else:
                        quick += 1
                    if ret:
                        return ret
                    n += 1
                else:
                    return 0
            except CpuFault as caught:
                fault = caught
            except BaseException:
                owed[events] += 1       # the page in hand ran this far, then raised
                raise
        finally:
            lock.release()
            if quick:       # the usual tallies, paid here: pages accepted at once
                trace.count_unheard(_COMMIT_PREFIX[1], quick)
            if plain:       # and plain commits
                trace.count_unheard(_COMMIT_EVENTS, plain)
            done[0] += n
        owed[events] += 1
        rc = self._continue(secinfo, addr, events, fault, rip)
        if not rc:
            done[0] += 1
        return rc

    def _continue(self, secinfo: int, addr: int, events: int, fault: CpuFault | None,
                  rip: Rip) -> int:
        """The general path of an EACCEPT of `addr` that left the fast pass after
        `events` of `_COMMIT_EVENTS`, with the fault loop's state at that point:
        `fault` (the fault in hand, if any) and `rip` (the restored frame's RIP
        after an ERESUME). Returns: the leaf's code."""
        op = self._cpu.eaccept
        args = (secinfo, addr, None)
        if events == 1:
            assert fault is not None
            return self._retry(op, args, fault, 0, None, 0)
        first = (VECTOR_PF, addr, PF_U)
        if events == 5:
            # ERESUME faulted, or the enclave left a callable in RIP: as _deliver
            if fault is not None:
                rip = self._resume_after_fix(fault)
            if callable(rip):
                rip()
            try:
                return op(self.entry, *args)
            except CpuFault as again:
                fault = again
        assert fault is not None
        return self._retry(op, args, fault, 1, first, 0)


def _reported_addr(fault: CpuFault) -> int:
    """What the OS and the vDSO see: CR2 with the low 12 bits cleared by AEX."""
    return fault.addr & ~(PAGE_SIZE - 1) if fault.vector == VECTOR_PF else fault.addr


def _check_range(addr: int, n: int) -> None:
    if not isinstance(addr, int) or not isinstance(n, int) or addr < 0 or n < 0 \
            or addr + n > 1 << 64:
        raise ValueError(f"bad access range {addr!r}+{n!r}")


class SsaFrame:
    """A view of one SSA frame, read and written through enclave memory accesses
    (so it faults like any access). `rip` may be set to a callable: ERESUME of this
    frame then runs it before re-executing the interrupted access."""

    def __init__(self, thread: EnclaveThread, frame: int) -> None:
        cpu = thread._cpu
        self._thread = thread
        self._cpu = cpu
        self.frame = frame
        enc = thread.enclave
        self.addr = cpu.frame_addr(enc, thread.tcs_control, frame)
        self.gpr = cpu.frame_addr(enc, thread.tcs_control, frame + 1) - GPRSGX_SIZE

    @property
    def exitinfo(self) -> int:
        return int(_U32.unpack(self._thread.read(self.gpr + GPR_EXITINFO, 4))[0])

    @property
    def exitinfo_valid(self) -> bool:
        return bool(self.exitinfo >> 31)

    @property
    def vector(self) -> int:
        return self.exitinfo & 0xFF

    @property
    def exinfo_maddr(self) -> int:
        return int(_U64.unpack(self._thread.read(self.gpr - EXINFO_SIZE, 8))[0])

    @property
    def exinfo_errcd(self) -> int:
        return int(_U32.unpack(self._thread.read(self.gpr - EXINFO_SIZE + 8, 4))[0])

    @property
    def rip(self) -> Rip:
        override = self._cpu.rip_overrides.get(self.gpr)
        if override is not None:
            return override
        return int(_U64.unpack(self._thread.read(self.gpr + GPR_RIP, 8))[0])

    @rip.setter
    def rip(self, value: Rip) -> None:
        if callable(value):
            self._thread.write(self.gpr + GPR_RIP, _U64.pack(0))
            with self._cpu.lock:
                self._cpu.rip_overrides[self.gpr] = value
        else:
            self._thread.write(self.gpr + GPR_RIP, _U64.pack(value & (2**64 - 1)))
            with self._cpu.lock:
                self._cpu.rip_overrides.pop(self.gpr, None)

    def clear_exitinfo(self) -> None:
        """What the SDK's phase 1 does once it consumed the frame."""
        self._thread.write(self.gpr + GPR_EXITINFO, _U32.pack(0))

"""The EDMM ioctls' page loops: RESTRICT_PERMISSIONS, MODIFY_TYPES, REMOVE_PAGES.

`EdmmWorkers` is the driver enclave (`Encl`) with the workers ioctl.py's handlers
call once every parameter is checked: each walks the pages as Linux's ioctl.c
does (load the page, the kernel's own type checks, the leaf, ETRACK and IPIs,
the record update) and stops at the first page it cannot process, with `count`
saying how far it got. `driver_error` makes the `OSError(errno, "NAME: reason")`
every driver call raises.

Pages go in batches of one record chunk under one hold of the machine lock. Each
page still runs every check of its leaf, through the same function the
single-page leaf uses (`emodt_locked`, ...); while nobody listens to the trace, a
batch counts its leaves' events once at its end (`_Owed`) instead of emitting
them one by one: the counts stay exact, only details nobody wanted are skipped.
"""

from __future__ import annotations

import errno
import os
import threading

from sgx_emm.flags import PAGE_SHIFT, PAGE_SIZE
from sgx_emm.platform.encl import PROT_MASK, TYPE_MASK, TYPE_SHIFT, Encl
from sgx_emm.platform.epcm import EPC_BASE
from sgx_emm.platform.exceptions import CpuFault, PageFault
from sgx_emm.platform.mmu import CHUNK_MASK, CHUNK_SHIFT
from sgx_emm.platform.processor import NOT_REG, pt_name
from sgx_emm.platform.secinfo import (
    PT_REG,
    PT_TCS,
    PT_TRIM,
    SGX_CODE_NAMES,
    SI_RWX,
    secinfo_flags,
)
from sgx_emm.platform.state import EnclaveControl
from sgx_emm.platform.uapi import (
    PROT_READ,
    PROT_WRITE,
    ModifyTypes,
    RemovePages,
    RestrictPermissions,
)
from sgx_emm.trace import AEX, LEAF, Trace

#: bytes of pages an EDMM ioctl processes per hold of the machine lock (one record
#: chunk): long enough to pay the lock and the event counts once for many pages,
#: short enough to let other threads in between
_BATCH = 512 * PAGE_SIZE
#: a record's info byte without its type bits
_NOT_TYPE = ~TYPE_MASK
_ETRACK = (LEAF, "ETRACK")
_EREMOVE = (LEAF, "EREMOVE")


def driver_error(err: int, name: str, reason: str, count: int | None = None) -> OSError:
    """The OSError an ioctl or syscall raises: errno, "NAME: reason", `.reason` and,
    for an operation that stopped part way, `.count`."""
    exc = OSError(err, f"{name}: {reason} ({os.strerror(err)})")
    exc.reason = reason  # type: ignore[attr-defined]
    if count is not None:
        exc.count = count  # type: ignore[attr-defined]
    return exc


class EdmmWorkers(Encl):
    """The driver enclave's EDMM page loops (ioctl.py adds the entry point and the
    parameter checks)."""

    @staticmethod
    def _partial(err: int, name: str, reason: str, params: object, count: int) -> OSError:
        params.count = count  # type: ignore[attr-defined]
        return driver_error(err, name, reason, count)

    def _load_page(self, page: int, name: str, params: object, c: int, page_type: int = -1,
                   err: int = 0) -> int:
        """sgx_encl_load_page for the page numbered `page`: no record -> EFAULT; held by
        the reclaimer -> EAGAIN; evicted -> ELDU (failure -> EFAULT). With
        `page_type`, the page must then be of that type, else `err`, as the ioctl's
        own check returns: the start of the per-page loops of RESTRICT_PERMISSIONS
        (REG, EINVAL) and REMOVE_PAGES (TRIM, EPERM). Returns: the EPC slot (the
        record's type and max prot are read where it lies)."""
        entry = self._records.get(page >> CHUNK_SHIFT)     # `record`, read in place
        i = page & CHUNK_MASK
        if entry is None or not (info := entry[1][i]):
            raise self._partial(errno.EFAULT, name, f"no page at {page << PAGE_SHIFT:#x}",
                                params, c)
        if self._reclaiming and page in self._reclaiming:
            raise self._partial(errno.EAGAIN, name,
                                f"page {page << PAGE_SHIFT:#x} is being reclaimed", params, c)
        slot = entry[0][i]
        if slot < 0:
            loaded = self.load_page(page)
            if isinstance(loaded, str):
                raise self._partial(errno.EFAULT, name, loaded, params, c)
            slot = loaded
        if page_type >= 0 and info & TYPE_MASK != page_type << TYPE_SHIFT:
            raise self._partial(err, name, f"page {page << PAGE_SHIFT:#x} is "
                                           f"{pt_name((info & TYPE_MASK) >> TYPE_SHIFT)}, "
                                           f"not {pt_name(page_type)}", params, c)
        return slot

    def _etrack(self, owed: _Owed | None, secs: int) -> bool:
        """sgx_enclave_etrack: ETRACK, on failure IPIs and one retry; then IPIs.
        The `etrack` hook may skip it. With `owed` (the caller holds the machine
        lock) and nobody listening, the leaves' events go on `owed` instead of
        the trace. `secs`: the SECS page (`secs_paddr`, which the page loops read
        once). Returns: False if ETRACK failed twice."""
        if not self._host.commit_fast_path:     # True means no hooks: skip the lookup
            hooks = self._host.hooks
            if hooks is not None and not hooks.etrack(self):
                return True
        cpu = self._cpu
        if owed is None or self._host.trace.listening:
            if cpu.etrack(secs):
                cpu.ipi(secs)
                if cpu.etrack(secs):
                    return False
            cpu.ipi(secs)
            return True
        enc = owed.enclave
        if enc is None:     # the SECS operand, resolved once per batch (held by the lock)
            enc = owed.enclave = cpu.secs_enclave(secs, "ETRACK")
        owed.etracks += 1
        if cpu.etrack_enclave_locked(enc):
            owed.intrs += cpu.ipi_enclave_locked(enc)
            owed.etracks += 1
            if cpu.etrack_enclave_locked(enc):
                return False
        # on_each_cpu_mask over the enclave's cpumask: the model's is the set of
        # logical processors inside; IPIs to an empty mask do nothing, so none are sent
        if enc.inside:
            owed.intrs += cpu.ipi_enclave_locked(enc)
        return True

    def _owed(self, leaf: str) -> _Owed | None:
        """An event tally for a page loop that holds the machine lock, or None when the
        CPU runs on another lock (then every leaf goes through its locking call)."""
        return _Owed(leaf) if self._cpu.lock is self._lock else None

    def _batch(self, leaf: str) -> _Batch:
        """One batch of a page loop: the machine lock held throughout, and the events
        the batch owes (`_owed`) paid when it ends, however it ends."""
        return _Batch(self._lock, self._owed(leaf), self._host.trace)

    def _issues(self, leaf: str, addr: int) -> bool:
        """The `page_leaf` hook: False if a hostile OS skips this page's leaf."""
        hooks = self._host.hooks
        return hooks is None or hooks.page_leaf(self, leaf, addr)

    def _restrict(self, p: RestrictPermissions, secinfo: int) -> None:
        """Worker of RESTRICT_PERMISSIONS (parameters checked): per page, load it, it
        must be REG, EMODPR, ETRACK. Pages go in batches under one hold of the lock;
        while nobody listens, each batch counts its events once (`_Owed`)."""
        name = "RESTRICT_PERMISSIONS"
        secs = self.secs_paddr
        cpu = self._cpu
        trace = self._host.trace
        base = self.base + p.offset
        length = p.length
        for first in range(0, length, _BATCH):
            with self._batch("EMODPR") as owed:
                checked = False     # EMODPR's SECINFO checks passed in this batch
                for c in range(first, min(first + _BATCH, length), PAGE_SIZE):
                    addr = base + c
                    slot = self._load_page(addr >> PAGE_SHIFT, name, p, c, PT_REG,
                                           errno.EINVAL)
                    if self._host.commit_fast_path or self._issues("EMODPR", addr):
                        try:
                            if owed is None or trace.listening:
                                ret = cpu.emodpr(secinfo, EPC_BASE + (slot << PAGE_SHIFT))
                            else:
                                owed.leaves += 1
                                if not checked:
                                    cpu.emodpr_secinfo(secinfo)
                                    checked = True
                                ret = cpu.emodpr_page_locked(secinfo, slot)
                                if ret == NOT_REG:
                                    raise cpu.not_reg_fault(
                                        "EMODPR", EPC_BASE + (slot << PAGE_SHIFT))
                        except CpuFault as fault:
                            raise self._partial(errno.EFAULT, name, fault.reason, p,
                                                c) from None
                        if ret:
                            p.result = ret
                            raise self._partial(errno.EFAULT, name,
                                                _sgx_code("EMODPR", ret, addr), p, c)
                    if not self._etrack(owed, secs):
                        raise self._partial(errno.EFAULT, name, "ETRACK failed", p, c)
                    p.count = c + PAGE_SIZE

    def _modify_types(self, p: ModifyTypes, new_type: int) -> None:
        """Worker of MODIFY_TYPES (parameters checked): per page, load it, the type
        change must be one EMODT makes, EMODT, ETRACK; REG -> TCS fixes max prot.
        Batched under the lock, events counted per batch, as `_restrict`."""
        name = "MODIFY_TYPES"
        secinfo = secinfo_flags(0, new_type)
        new_bits = new_type << TYPE_SHIFT       # the new type in a record's info byte
        secs = self.secs_paddr
        cpu = self._cpu
        trace = self._host.trace
        base = self.base + p.offset
        length = p.length
        for first in range(0, length, _BATCH):
            with self._batch("EMODT") as owed:
                new_pt = -1         # from EMODT's SECINFO checks, once they passed this batch
                for c in range(first, min(first + _BATCH, length), PAGE_SIZE):
                    addr = base + c
                    page = addr >> PAGE_SHIFT
                    slot = self._load_page(page, name, p, c)
                    infos = self._records[page >> CHUNK_SHIFT][1]
                    i = page & CHUNK_MASK
                    info = infos[i]         # as loaded: its max prot is restored on failure
                    page_type = (info & TYPE_MASK) >> TYPE_SHIFT
                    if not (page_type == PT_REG
                            or (page_type == PT_TCS and new_type == PT_TRIM)):
                        raise self._partial(errno.EINVAL, name,
                                            f"page {addr:#x} is {pt_name(page_type)}: "
                                            f"cannot become {pt_name(new_type)}", p, c)
                    if page_type == PT_REG and new_type == PT_TCS:
                        if ~info & (PROT_READ | PROT_WRITE):
                            raise self._partial(errno.EPERM, name,
                                                f"page {addr:#x} max prot "
                                                f"{info & PROT_MASK:#x} "
                                                "lacks R|W, which a TCS needs", p, c)
                        self._update_record(page, max_prot=PROT_READ | PROT_WRITE)
                        self._mm.zap(addr, addr + PAGE_SIZE)
                    if self._host.commit_fast_path or self._issues("EMODT", addr):
                        try:
                            if owed is None or trace.listening:
                                ret = cpu.emodt(secinfo, EPC_BASE + (slot << PAGE_SHIFT))
                            else:
                                owed.leaves += 1
                                if new_pt < 0:
                                    new_pt = cpu.emodt_secinfo(secinfo)
                                ret = cpu.emodt_page_locked(new_pt, slot)
                        except CpuFault as fault:
                            self._update_record(page, max_prot=info & PROT_MASK)
                            raise self._partial(errno.EFAULT, name, fault.reason, p,
                                                c) from None
                        if ret:
                            self._update_record(page, max_prot=info & PROT_MASK)
                            p.result = ret
                            raise self._partial(errno.EFAULT, name,
                                                _sgx_code("EMODT", ret, addr), p, c)
                    if not self._etrack(owed, secs):
                        raise self._partial(errno.EFAULT, name, "ETRACK failed", p, c)
                    # `_update_record(page, page_type=new_type)`, in place
                    infos[i] = (infos[i] & _NOT_TYPE) | new_bits
                    p.count = c + PAGE_SIZE

    def _remove_pages(self, p: RemovePages) -> None:
        """Worker of REMOVE_PAGES (parameters checked): per page, load it, it must be
        TRIM and accepted (EMODPR #PFs), zap, EREMOVE, drop the record. Batched
        under the lock, events counted per batch, as `_restrict`."""
        name = "REMOVE_PAGES"
        probe = secinfo_flags(SI_RWX, PT_REG)
        cpu = self._cpu
        trace = self._host.trace
        mm = self._mm
        base = self.base + p.offset
        length = p.length
        for first in range(0, length, _BATCH):
            zap_end = first         # the batch's pages up to here are zapped at its end
            with self._batch("EMODPR") as owed:
                checked = False     # the probe's SECINFO checks passed in this batch
                try:
                    for c in range(first, min(first + _BATCH, length), PAGE_SIZE):
                        addr = base + c
                        page = addr >> PAGE_SHIFT
                        slot = self._load_page(page, name, p, c, PT_TRIM, errno.EPERM)
                        quiet = owed if owed is not None and not trace.listening else None
                        try:
                            if quiet is not None:
                                quiet.leaves += 1
                                if not checked:
                                    cpu.emodpr_secinfo(probe)
                                    checked = True
                                ret = cpu.emodpr_page_locked(probe, slot)
                            else:
                                ret = cpu.emodpr(probe, EPC_BASE + (slot << PAGE_SHIFT))
                        except PageFault:
                            ret = NOT_REG
                        except CpuFault as fault:
                            raise self._partial(errno.EPERM, name, fault.reason, p,
                                                c) from None
                        if ret != NOT_REG:      # only an accepted TRIM page #PFs
                            raise self._partial(errno.EPERM, name, "the enclave has not "
                                                f"accepted the TRIM of {addr:#x}", p, c)
                        # zap this page's PTE: done for the batch at once, under the same
                        # hold of the lock, before anyone can walk the page tables
                        done = zap_end = c + PAGE_SIZE
                        if quiet is not None:
                            quiet.eremoves += 1
                            cpu.eremove_page_locked(slot)
                        else:
                            cpu.eremove(EPC_BASE + (slot << PAGE_SHIFT))
                        self._records[page >> CHUNK_SHIFT][1][page & CHUNK_MASK] = 0  # drop it
                        p.count = done
                finally:
                    if zap_end > first:
                        mm.zap(base + first, base + zap_end)


class _Batch:
    """`EdmmWorkers._batch`: a context manager written out (a generator-based one
    costs more than a small ioctl's page loop) that takes the lock, hands out the
    tally, pays it and releases the lock."""

    __slots__ = ("_lock", "_owed", "_trace")

    def __init__(self, lock: threading.RLock, owed: _Owed | None, trace: Trace) -> None:
        self._lock = lock
        self._owed = owed
        self._trace = trace

    def __enter__(self) -> _Owed | None:
        self._lock.acquire()
        return self._owed

    def __exit__(self, *exc: object) -> None:
        try:
            if self._owed is not None:
                self._owed.pay(self._trace)
        finally:
            self._lock.release()


class _Owed:
    """Events a batch of a page loop ran without emitting because nobody listened:
    paid to the trace at the batch's end, so N leaves cost one trace call, not N.
    Counts stay exact (the CLI totals and the cost model read them); only the
    details, which nobody wanted, are skipped."""

    __slots__ = ("leaf", "leaves", "etracks", "intrs", "eremoves", "enclave")

    def __init__(self, leaf: str) -> None:
        self.leaf = leaf
        self.leaves = self.etracks = self.intrs = self.eremoves = 0
        #: the enclave of the loop's SECS once resolved in this batch (`_etrack`)
        self.enclave: EnclaveControl | None = None

    def pay(self, trace: Trace) -> None:
        """Count what is owed; nobody listened when these leaves ran (each was put
        here only after checking), so no listener is told. A loop's usual tally,
        one leaf and one ETRACK or EREMOVE per page and no IPI, is one count of
        the pair (a `bump_all` batch)."""
        n = self.leaves
        if n and not self.intrs and (self.etracks, self.eremoves) in ((n, 0), (0, n)):
            trace.count_unheard(((LEAF, self.leaf), _ETRACK if self.etracks else _EREMOVE),
                                n)
            self.leaves = self.etracks = self.eremoves = 0
            return
        if self.leaves:
            trace.count_unheard((LEAF, self.leaf), self.leaves)
        if self.eremoves:
            trace.count_unheard((LEAF, "EREMOVE"), self.eremoves)
        if self.etracks:
            trace.count_unheard((LEAF, "ETRACK"), self.etracks)
        if self.intrs:
            trace.count_unheard((AEX, "INTR"), self.intrs)
        self.leaves = self.etracks = self.intrs = self.eremoves = 0


def _sgx_code(leaf: str, code: int, addr: int) -> str:
    return f"{SGX_CODE_NAMES.get(code, 'SGX code')} ({code}) from {leaf} at {addr:#x}"

"""The driver's enclave: page records, faults, EAUG and ELDU (Linux encl.c).

`Encl` is `struct sgx_encl` without its ioctls (ioctl.py adds those): the per-page
records (`struct sgx_encl_page`: EPC slot, type, max prot), the fault handler's
enclave half (`vma_fault`, Linux's `sgx_vma_fault`), the one EAUG path
(`eaug_page`, which the first-touch fault and the commit fast path both take),
and paging a page out and in (`evict`, `load`: EWB and ELDU).

Records are chunked like page tables: `{page >> 9: (array('i') of EPC slots,
bytearray of info bytes)}` where an info byte packs EXISTS | AUGMENTED | type << 3
| max prot; slot -1 is a page the reclaimer evicted. The driver does not track
EPCM permissions, PENDING or PR, exactly like Linux.
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Iterable, Iterator
from typing import Protocol

from sgx_emm.flags import PAGE_SHIFT, PAGE_SIZE
from sgx_emm.platform.cpu import Cpu
from sgx_emm.platform.epcm import Epc
from sgx_emm.platform.exceptions import CpuFault
from sgx_emm.platform.hooks import KernelHooks
from sgx_emm.platform.mmu import CHUNK_MASK, CHUNK_PAGES, CHUNK_SHIFT, AddressSpace
from sgx_emm.platform.secinfo import PF_P, PT_REG, PT_TRIM, SI_RWX
from sgx_emm.platform.state import EvictedPage
from sgx_emm.platform.uapi import FaultOutcome, FaultResult
from sgx_emm.trace import Trace

# info byte of a page record
EXISTS = 0x80
AUGMENTED = 0x40
TYPE_SHIFT = 3
TYPE_MASK = 0x38
PROT_MASK = 0x7
#: the info byte of a page the fault handler EAUGed (type REG, max prot RWX)
EAUG_INFO = EXISTS | AUGMENTED | (PT_REG << TYPE_SHIFT) | SI_RWX
#: page types the reclaimer may evict (REG, TRIM, SS_FIRST, SS_REST)
EVICTABLE = frozenset((PT_REG, PT_TRIM, 5, 6))

FIXED = FaultResult(FaultOutcome.FIXED)


class DriverHost(Protocol):
    """What an enclave needs of the kernel that opened it."""

    cpu: Cpu
    epc: Epc
    mm: AddressSpace
    trace: Trace
    lock: threading.RLock
    sgx2: bool
    eaug_race_sigbus: bool
    hooks: KernelHooks | None
    #: True only while no hooks are installed (and the machine is fast-path
    #: capable): a plain attribute a page loop reads instead of `hooks`
    commit_fast_path: bool

    def alloc_epc(self, *, reclaim: bool = True) -> int | None: ...

    def register(self, encl: Encl) -> None: ...


def sigbus(reason: str) -> FaultResult:
    return FaultResult(FaultOutcome.SIGBUS, reason)


class Encl:
    """One enclave as the driver keeps it: records, faults, EAUG, paging."""

    def __init__(self, host: DriverHost) -> None:
        self._host = host
        self._cpu = host.cpu
        self._epc = host.epc
        self._mm = host.mm
        self._lock = host.lock
        self.secs_slot: int | None = None
        self.base = 0
        self.size = 0
        self.created = False
        self.initialized = False
        self._records: dict[int, tuple[array[int], bytearray]] = {}
        self._reclaiming: set[int] = set()
        self._swapped: dict[int, EvictedPage] = {}   # page -> what EWB wrote out
        self._va_of: dict[int, int] = {}             # page -> its version's VA slot
        self._va_free: list[int] = []                # free VA slots (physical addresses)

    # ------------------------------------------------------------ records
    def record(self, addr: int) -> tuple[int, int, int] | None:
        """(EPC slot, page type, max prot) of the page at addr, or None. The slot is
        -1 while the page is evicted."""
        page = addr >> PAGE_SHIFT
        entry = self._records.get(page >> CHUNK_SHIFT)
        if entry is None:
            return None
        info = entry[1][page & CHUNK_MASK]
        if not info:
            return None
        return entry[0][page & CHUNK_MASK], (info & TYPE_MASK) >> TYPE_SHIFT, info & PROT_MASK

    def _info(self, page: int) -> int:
        entry = self._records.get(page >> CHUNK_SHIFT)
        return entry[1][page & CHUNK_MASK] if entry is not None else 0

    def _set_record(self, page: int, slot: int, page_type: int, max_prot: int,
                    augmented: bool = False) -> None:
        key = page >> CHUNK_SHIFT
        entry = self._records.get(key)
        if entry is None:
            # 32-bit slots: EPC slot numbers are far below 2**31, and a committed page
            # nobody wrote then costs 13 bytes of driver and page-table state
            entry = self._records[key] = (array("i", bytes(4 * CHUNK_PAGES)),
                                          bytearray(CHUNK_PAGES))
        entry[0][page & CHUNK_MASK] = slot
        entry[1][page & CHUNK_MASK] = (EXISTS | (AUGMENTED if augmented else 0)
                                       | (page_type << TYPE_SHIFT) | max_prot)

    def _update_record(self, page: int, *, page_type: int | None = None,
                       max_prot: int | None = None) -> None:
        entry = self._records[page >> CHUNK_SHIFT]
        info = entry[1][page & CHUNK_MASK]
        if page_type is not None:
            info = (info & ~TYPE_MASK) | (page_type << TYPE_SHIFT)
        if max_prot is not None:
            info = (info & ~PROT_MASK) | max_prot
        entry[1][page & CHUNK_MASK] = info

    def _set_slot(self, page: int, slot: int) -> None:
        self._records[page >> CHUNK_SHIFT][0][page & CHUNK_MASK] = slot

    def _drop_record(self, page: int) -> None:
        entry = self._records.get(page >> CHUNK_SHIFT)
        if entry is not None:
            entry[1][page & CHUNK_MASK] = 0

    def _chunk_keys(self, first: int, last: int) -> list[int]:
        """Keys of the record chunks meeting pages [first, last), ascending.

        O(min(chunks spanned, chunks allocated)): an mmap or ioctl over a few pages
        must not cost a walk over every chunk of a large enclave.
        """
        if last <= first:
            return []
        lo, hi = first >> CHUNK_SHIFT, (last - 1) >> CHUNK_SHIFT
        records = self._records
        if hi - lo < len(records):
            return [key for key in range(lo, hi + 1) if key in records]
        return sorted(key for key in records if lo <= key <= hi)

    def _chunk_spans(self, start: int, end: int) -> Iterator[tuple[int, int, int, bytearray]]:
        """(chunk key, first page, end page, the chunk's record infos) of every allocated
        record chunk meeting the pages of [start, end): the one walk records_in and
        max_prot_violation share."""
        first, last = start >> PAGE_SHIFT, (end + PAGE_SIZE - 1) >> PAGE_SHIFT
        for key in self._chunk_keys(first, last):
            lo = max(first, key << CHUNK_SHIFT)
            hi = min(last, (key + 1) << CHUNK_SHIFT)
            if lo < hi:
                yield key, lo, hi, self._records[key][1]

    def records_in(self, start: int, end: int) -> list[tuple[int, int, int]]:
        """(page address, type, max prot) of every record in [start, end); walks only
        the allocated record chunks that meet the range."""
        out: list[tuple[int, int, int]] = []
        for _, lo, hi, infos in self._chunk_spans(start, end):
            for page in range(lo, hi):
                info = infos[page & CHUNK_MASK]
                if info:
                    out.append((page << PAGE_SHIFT, (info & TYPE_MASK) >> TYPE_SHIFT,
                                info & PROT_MASK))
        return out

    def max_prot_violation(self, start: int, end: int, prot: int) -> int | None:
        """The first page address in [start, end) whose record's max prot does not
        allow `prot` (sgx_encl_may_map's loop), or None."""
        if not prot & PROT_MASK:        # no permission exceeds any max prot: skip the walk
            return None
        first, last = start >> PAGE_SHIFT, (end + PAGE_SIZE - 1) >> PAGE_SHIFT
        key = first >> CHUNK_SHIFT
        spans: Iterable[tuple[int, int, int, bytearray]]
        if first < last and key == (last - 1) >> CHUNK_SHIFT:
            # one record chunk (an mmap of a few pages): its span without the generator
            entry = self._records.get(key)
            spans = ((key, first, last, entry[1]),) if entry is not None else ()
        else:
            spans = self._chunk_spans(start, end)
        for key, lo, hi, infos in spans:
            for i in range(lo & CHUNK_MASK, ((hi - 1) & CHUNK_MASK) + 1):
                info = infos[i]
                if info and prot & ~info & PROT_MASK:
                    return ((key << CHUNK_SHIFT) + i) << PAGE_SHIFT
        return None

    def mark_reclaiming(self, addr: int, on: bool = True) -> None:
        """Pretend the reclaimer holds this page (ioctls then fail with EAGAIN)."""
        with self._lock:
            if on:
                self._reclaiming.add(addr >> PAGE_SHIFT)
            else:
                self._reclaiming.discard(addr >> PAGE_SHIFT)

    @property
    def secs_paddr(self) -> int:
        """Physical address of the SECS page (ValueError before ENCLAVE_CREATE)."""
        if self.secs_slot is None:
            raise ValueError("enclave not created")
        return Epc.paddr(self.secs_slot)

    # ------------------------------------------------------------ faults
    def vma_fault(self, vma_prot: int, addr: int, errcd: int) -> FaultResult:
        """sgx_vma_fault: the enclave half of a user #PF in one of its VMAs. The
        caller holds the lock.

        Returns: FIXED (the page is mapped: it had a record, was loaded back, or
        was just EAUGed), or SIGBUS with its reason."""
        page = addr >> PAGE_SHIFT
        entry = self._records.get(page >> CHUNK_SHIFT)
        info = entry[1][page & CHUNK_MASK] if entry is not None else 0
        if not info:
            if not self._host.sgx2:
                return sigbus(f"no page at {addr & ~(PAGE_SIZE - 1):#x} and no SGX2 to "
                              "EAUG one")
            slot = self.eaug_page(page, vma_prot)
            return FIXED if isinstance(slot, int) else sigbus(slot)
        assert entry is not None
        if (self._host.eaug_race_sigbus and info & AUGMENTED and not errcd & PF_P
                and self._mm.pte(page)):
            return sigbus("lost the race to EAUG this page (the other fault mapped it)")
        if vma_prot & ~info & PROT_MASK:
            return sigbus(f"VMA prot {vma_prot:#x} exceeds the page's max prot "
                          f"{info & PROT_MASK:#x}")
        slot = entry[0][page & CHUNK_MASK]
        if slot < 0:
            loaded = self.load_page(page)
            if isinstance(loaded, str):
                return sigbus(loaded)
            slot = loaded
        self._mm.set_pte(page, slot, vma_prot)
        return FIXED

    def eaug_page(self, page: int, vma_prot: int, quiet: bool = False) -> int | str:
        """sgx_encl_eaug_page, the one EAUG path: an EPC page, EAUG, a record with max
        prot RWX, a PTE with the VMA's prot. The caller holds the lock and checked
        that the page has no record and lies in an enclave VMA.

        `quiet` is the commit fast path: it also checks that there is no record,
        emits no event, and does not evict to find an EPC page (it then refuses,
        and the general path retries with both).

        Returns: the EPC slot, or why the page was not added (nothing changed)."""
        addr = page << PAGE_SHIFT
        secs = self.secs_slot
        cpu = self._cpu
        if quiet:
            # the fast path runs only while no hooks are installed (Kernel.commit_fast_path)
            entry = self._records.get(page >> CHUNK_SHIFT)
            if entry is not None and entry[1][page & CHUNK_MASK]:
                return "the page already has a record"
            if not self.initialized or secs is None:
                return "EAUG refused: the enclave is not initialized"
            slot = self._epc.alloc()
            if slot is None:
                return "EAUG refused: no free EPC page"
            try:
                cpu.eaug_slot(addr, cpu.enclaves[secs], slot)
            except CpuFault as fault:
                self._epc.free(slot)
                return f"EAUG failed: {fault.reason}"
            if entry is not None:       # the chunk exists: `_set_record`'s two stores
                entry[0][page & CHUNK_MASK] = slot
                entry[1][page & CHUNK_MASK] = EAUG_INFO
                self._mm.set_pte(page, slot, vma_prot)
                return slot
        else:
            hooks = self._host.hooks
            if hooks is not None:
                refusal = hooks.eaug(self, addr)
                if refusal is not None:
                    return f"EAUG refused: {refusal}"
            if not self.initialized or secs is None:
                return "EAUG refused: the enclave is not initialized"
            slot = self._host.alloc_epc()
            if slot is None:
                return "EAUG refused: no free EPC page"
            try:
                cpu.eaug(addr, Epc.paddr(secs), Epc.paddr(slot))
            except CpuFault as fault:
                self._epc.free(slot)
                return f"EAUG failed: {fault.reason}"
        self._set_record(page, slot, PT_REG, SI_RWX, augmented=True)
        self._mm.set_pte(page, slot, vma_prot)
        return slot

    # ------------------------------------------------------------ paging
    def load_page(self, page: int) -> int | str:
        """sgx_encl_eldu: bring an evicted page back. The caller holds the lock.

        Returns: the new EPC slot, or why it could not be loaded (ELDU refuses a
        sealed page that does not verify: the fault then ends in SIGBUS)."""
        blob = self._swapped.get(page)
        va = self._va_of.get(page)
        if blob is None or va is None or self.secs_slot is None:
            return f"page {page << PAGE_SHIFT:#x} is not evicted"
        hooks = self._host.hooks
        if hooks is not None:
            blob = hooks.eldu(self, page << PAGE_SHIFT, blob)
        slot = self._host.alloc_epc()
        if slot is None:
            return "ELDU: no free EPC page"
        try:
            code = self._cpu.eldu(blob, Epc.paddr(self.secs_slot), Epc.paddr(slot), va)
        except CpuFault as fault:
            self._epc.free(slot)
            return f"ELDU failed: {fault.reason}"
        if code:
            self._epc.free(slot)
            return (f"ELDU of {page << PAGE_SHIFT:#x} failed with SGX_MAC_COMPARE_FAIL "
                    f"({code}): the sealed page is not the one EWB wrote")
        del self._swapped[page]
        del self._va_of[page]
        self._va_free.append(va)
        self._set_slot(page, slot)
        return slot

    def ensure_va(self) -> bool:
        """At least one free VA slot, adding a VA page if needed. Returns: whether
        there is one."""
        with self._lock:
            return bool(self._va_free) or self.grow_va()

    def grow_va(self) -> bool:
        """sgx_alloc_va_page: one more Version Array page (EPA) with 512 free slots,
        from a free EPC page (never by evicting). Returns: False if none is free."""
        with self._lock:
            slot = self._epc.alloc()
            if slot is None:
                return False
            base = Epc.paddr(slot)
            self._cpu.epa(base)
            self._va_free.extend(range(base + PAGE_SIZE - 8, base - 1, -8))
            return True

    def pinned(self, addr: int) -> bool:
        """Whether the page at addr may not be evicted now: an SSA frame of a TCS that
        has been entered (entered threads cache those slots, as the hardware pins
        them) or a page the reclaimer already holds."""
        if addr >> PAGE_SHIFT in self._reclaiming:
            return True
        return any(t.secs_slot == self.secs_slot
                   and t.ssa_base <= addr < t.ssa_base + t.nssa * t.frame_bytes
                   for t in self._cpu.tcs.values())

    def evict(self, addr: int) -> bool:
        """Page the page at `addr` out as sgx_reclaim_pages does: EBLOCK, ETRACK and
        IPIs, EWB sealed into a Version Array slot; unmap it. A later fault or ioctl
        loads it back (ELDU). A seam for tests and attacks as well as the reclaimer.

        Returns: True if evicted; False (nothing changed) for a page without a
        resident record, of a type EWB cannot take, pinned, or with no VA slot."""
        with self._lock:
            rec = self.record(addr)
            if rec is None or rec[0] < 0 or self.secs_slot is None:
                return False
            slot = rec[0]
            if self._epc.pt[slot] not in EVICTABLE or self.pinned(addr):
                return False
            if not self._va_free and not self.grow_va():
                return False
            va = self._va_free.pop()
            page = addr >> PAGE_SHIFT
            cpu, paddr, secs = self._cpu, Epc.paddr(slot), Epc.paddr(self.secs_slot)
            cpu.eblock(paddr)
            if cpu.etrack(secs):      # the previous cycle is still open: finish it first
                cpu.ipi(secs)
                cpu.etrack(secs)
            cpu.ipi(secs)
            blob = cpu.ewb(paddr, va)
            if isinstance(blob, int):   # pragma: no cover - the steps above prevent it
                self._va_free.append(va)
                return False
            self._mm.zap(page << PAGE_SHIFT, (page + 1) << PAGE_SHIFT)
            self._set_slot(page, -1)
            self._swapped[page] = blob
            self._va_of[page] = va
            if not self._va_free:       # keep a slot ready: the page just freed
                self.grow_va()
            return True

    def load(self, addr: int) -> bool:
        """Load an evicted page back now (ELDU), without mapping it.

        Returns: True if loaded; False if it was not evicted or no EPC page was
        free."""
        with self._lock:
            return isinstance(self.load_page(addr >> PAGE_SHIFT), int)

    def evicted(self, addr: int) -> EvictedPage | None:
        """What EWB wrote out for the page at addr, if it is evicted."""
        return self._swapped.get(addr >> PAGE_SHIFT)

    def evicted_pages(self) -> list[EvictedPage]:
        """Every page of this enclave EWB wrote out (the driver's backing store)."""
        with self._lock:
            return list(self._swapped.values())

"""Enclave-mode memory accesses: reads, writes and fetches by enclave code.

An access is checked page by page in address order before any byte moves: the
page-table half first (not present, or a PTE without the right: #PF with U and
W/I as the access needs), then the EPCM half (VALID and not BLOCKED, PENDING or
MODIFIED; the access right in the EPCM permissions; this enclave's page at this
address; a data page type: #PF with the SGX bit). A fetch outside ELRANGE is #GP.
"""

from __future__ import annotations

from sgx_emm.flags import PAGE_SHIFT, PAGE_SIZE
from sgx_emm.platform.epcm import F_BLOCKED, F_MODIFIED, F_PENDING, F_VALID
from sgx_emm.platform.exceptions import GeneralProtection, NotInsideEnclave, PageFault
from sgx_emm.platform.processor import (
    BLOCKING,
    FETCH,
    KIND_EPCM,
    KIND_NAMES,
    KIND_PFEC,
    KIND_PTE,
    READ,
    WRITE,
    Processor,
    epcm_perms,
    pt_name,
)
from sgx_emm.platform.secinfo import PF_P, PF_SGX, PT_REG, PT_SS_FIRST, PT_SS_REST
from sgx_emm.platform.state import EnclaveControl, EntryState

_DATA_PT = frozenset((PT_REG, PT_SS_FIRST, PT_SS_REST))
_NOT_INSIDE = "this enclave thread is not inside the enclave"


class MemoryAccess(Processor):
    """read, write and fetch on behalf of an entry."""

    def read(self, entry: EntryState, addr: int, n: int) -> bytes:
        """Read `n` bytes at `addr`. Returns: the bytes. Raises: #PF, NotInsideEnclave."""
        lock = self.lock
        lock.acquire()         # cheaper than `with` on this path
        try:
            if not entry.inside:
                raise NotInsideEnclave(_NOT_INSIDE)
            enc = entry.enclave
            off = addr & (PAGE_SIZE - 1)
            if off + n <= PAGE_SIZE:
                slot = self._data_slot(enc, addr, READ)
                page = self.epc.contents.get(slot)
                return bytes(page[off:off + n]) if page is not None else bytes(n)
            return self._gather(self._span(enc, addr, n, READ), off, n)
        finally:
            lock.release()

    def fetch(self, entry: EntryState, addr: int, n: int) -> bytes:
        """Fetch `n` bytes of code at `addr`. Returns: the bytes. Raises: #PF; #GP
        (outside ELRANGE); NotInsideEnclave."""
        with self.lock:
            self._require_inside(entry)
            slots = self._span(entry.enclave, addr, n, FETCH)
            return self._gather(slots, addr & (PAGE_SIZE - 1), n)

    def write(self, entry: EntryState, addr: int, data: bytes) -> None:
        """Write `data` at `addr`. Returns: None. Raises: #PF, NotInsideEnclave."""
        lock = self.lock
        lock.acquire()
        try:
            if not entry.inside:
                raise NotInsideEnclave(_NOT_INSIDE)
            n = len(data)
            off = addr & (PAGE_SIZE - 1)
            if off + n <= PAGE_SIZE:
                slot = self._data_slot(entry.enclave, addr, WRITE)
                self.epc.writable_page(slot)[off:off + n] = data
                return
            slots = self._span(entry.enclave, addr, n, WRITE)
            pos = 0
            for i, slot in enumerate(slots):
                start = off if i == 0 else 0
                stop = min(PAGE_SIZE, off + n - i * PAGE_SIZE)
                self.epc.writable_page(slot)[start:stop] = data[pos:pos + stop - start]
                pos += stop - start
        finally:
            lock.release()

    def _gather(self, slots: list[int], off: int, n: int) -> bytes:
        out = bytearray()
        for i, slot in enumerate(slots):
            start = off if i == 0 else 0
            stop = min(PAGE_SIZE, off + n - i * PAGE_SIZE)
            out += self.epc.page_bytes(slot)[start:stop]
        return bytes(out)

    def _span(self, enc: EnclaveControl, addr: int, n: int, kind: int) -> list[int]:
        """Check every page an access touches, in address order, before touching any."""
        slots = [self._data_slot(enc, addr, kind)]
        page = (addr >> PAGE_SHIFT) + 1
        end = addr + n
        while page << PAGE_SHIFT < end:
            slots.append(self._data_slot(enc, page << PAGE_SHIFT, kind))
            page += 1
        return slots

    def _data_slot(self, enc: EnclaveControl, addr: int, kind: int) -> int:
        """Full enclave access check of one page: PTE first, EPCM second."""
        page = addr >> PAGE_SHIFT
        pte = self.mm.pte(page)
        if not pte:
            if kind == FETCH and not enc.base <= addr < enc.base + enc.size:
                raise self._outside(enc, addr)
            raise PageFault(KIND_PFEC[kind], addr,
                            f"{KIND_NAMES[kind]} at {addr:#x}: no page-table entry")
        if not pte & KIND_PTE[kind]:
            raise PageFault(KIND_PFEC[kind] | PF_P, addr,
                            f"{KIND_NAMES[kind]} at {addr:#x}: the page-table entry does "
                            f"not allow {KIND_NAMES[kind]}")
        slot = pte >> 3
        epc = self.epc
        need = KIND_EPCM[kind]
        if ((epc.flags[slot] & (BLOCKING | need)) != (F_VALID | need)
                or epc.owner[slot] != enc.secs_slot
                or epc.linaddr[slot] != page << PAGE_SHIFT
                or epc.pt[slot] not in _DATA_PT):
            raise PageFault(KIND_PFEC[kind] | PF_SGX | PF_P, addr,
                            self._epcm_denial(enc, slot, addr, kind))
        if kind == FETCH and not enc.base <= addr < enc.base + enc.size:
            raise self._outside(enc, addr)
        return slot

    @staticmethod
    def _outside(enc: EnclaveControl, addr: int) -> GeneralProtection:
        return GeneralProtection(reason=f"fetch at {addr:#x}: outside ELRANGE "
                                        f"[{enc.base:#x}, {enc.end:#x})")

    def _epcm_denial(self, enc: EnclaveControl, slot: int, addr: int, kind: int) -> str:
        """Why the EPCM refused an access whose PTE allowed it (the first reason)."""
        epc = self.epc
        f = epc.flags[slot]
        what = f"{KIND_NAMES[kind]} at {addr:#x}"
        page = addr & ~(PAGE_SIZE - 1)
        if not f & F_VALID:
            return f"{what}: the EPCM entry is not VALID"
        if epc.owner[slot] != enc.secs_slot:
            return f"{what}: the EPC page belongs to another enclave"
        if epc.linaddr[slot] != page:
            return f"{what}: the EPCM binds that EPC page to {epc.linaddr[slot]:#x}"
        if epc.pt[slot] not in _DATA_PT:
            return f"{what}: the page is {pt_name(epc.pt[slot])}, not a data page"
        for bit, name in ((F_PENDING, "PENDING"), (F_MODIFIED, "MODIFIED"),
                          (F_BLOCKED, "BLOCKED")):
            if f & bit:
                return f"{what}: the EPCM entry is {name}"
        return (f"{what}: EPCM permissions {epcm_perms(f)} do not allow "
                f"{epcm_perms(KIND_EPCM[kind])}")

"""The SGX2 CPU: ENCLS and ENCLU leaves and enclave-mode accesses (platform.md B, C, F).

Every leaf runs its checks in the order of platform.md section B; the first
failing check wins and gives the same SGX return code or fault (#GP, #PF with the
operand that faulted) as the hardware. ENCLS leaves take EPC pages by physical
address (`Epc.paddr(slot)`) as RCX does. ENCLU leaves and data accesses run on an
`EnclaveThread` (thread.py) and raise `CpuFault`s that the thread turns into an
AEX. Tracking (ETRACK epochs, SGX_NOT_TRACKED) follows the epoch model of B:
EMODPR/EMODT stamp the page with the enclave's current epoch; a cycle started by
ETRACK completes when every thread inside at that ETRACK has left (EEXIT or AEX).

Model choices (docs/platform-model.md): ENCLS #PF error codes are P|SGX (0x8001);
a leaf's own EPCM #PF is P|U|SGX plus W for write operands (0x8005 / 0x8007);
fetches outside ELRANGE are #GP; non-EPC operands of ENCLS leaves are #GP; the
per-TCS CSSA lives in the CPU's `TcsControl` once the TCS was first entered.

Locking: every leaf and access runs under the machine lock and releases it
before raising, so fault handling never runs with the lock held.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sgx_emm.flags import PAGE_SHIFT, PAGE_SIZE
from sgx_emm.platform.epcm import (
    EPC_BASE,
    F_BLOCKED,
    F_MODIFIED,
    F_PENDING,
    F_PR,
    F_R,
    F_VALID,
    F_W,
    F_X,
    Epc,
)
from sgx_emm.platform.exceptions import (
    CpuFault,
    GeneralProtection,
    InvalidOpcode,
    NotInsideEnclave,
    PageFault,
)
from sgx_emm.platform.mmu import CHUNK_MASK, CHUNK_SHIFT, AddressSpace
from sgx_emm.platform.secinfo import (
    EXINFO_SIZE,
    EXITINFO_TYPE_HW,
    EXITINFO_VALID,
    GPR_EXITINFO,
    GPR_RIP,
    GPRSGX_SIZE,
    MISC_EXINFO,
    PT_REG,
    PT_SECS,
    PT_SS_FIRST,
    PT_SS_REST,
    PT_TCS,
    PT_TRIM,
    PT_VA,
    SGX_CHILD_PRESENT,
    SGX_ENCLAVE_ACT,
    SGX_EPC_PAGE_CONFLICT,
    SGX_NOT_TRACKED,
    SGX_PAGE_ATTRIBUTES_MISMATCH,
    SGX_PAGE_NOT_MODIFIABLE,
    SGX_PREV_TRK_INCMPL,
    SI_MODIFIED,
    SI_PENDING,
    SI_PR,
    SI_R,
    SI_RESERVED_MASK,
    SI_RWX,
    SI_W,
    VECTOR_GP,
    VECTOR_PF,
    SecsImage,
    TcsImage,
    parse_secinfo,
    secinfo_pt,
    secinfo_reserved_ok,
)
from sgx_emm.trace import AEX, ENTRY, LEAF, Trace

if TYPE_CHECKING:
    from sgx_emm.platform.thread import EnclaveThread

# access kinds and their PFEC bits (U always set in enclave mode)
READ = 0
WRITE = 1
FETCH = 2
_KIND_PFEC = (0x4, 0x6, 0x14)
_KIND_EPCM = (F_R, F_W, F_X)
_KIND_PTE = (0x1, 0x2, 0x4)
_DATA_PT = frozenset((PT_REG, PT_SS_FIRST, PT_SS_REST))
_BLOCKING = F_VALID | F_BLOCKED | F_PENDING | F_MODIFIED
_ENCLS_PF = 0x8001
_LEAF_PF = 0x8005
_LEAF_PF_W = 0x8007
_MATCH_MASK = SI_RWX | F_PENDING | F_MODIFIED
#: PT and state bits of an EACCEPT SECINFO, and the combinations that are legal
_ACCEPT_SHAPE = 0xFF00 | SI_PENDING | SI_MODIFIED | SI_PR
_LEGAL_ACCEPT = frozenset((
    (PT_REG << 8) | SI_PENDING, (PT_REG << 8) | SI_PR, (PT_REG << 8) | SI_PR | SI_PENDING,
    (PT_TCS << 8) | SI_MODIFIED, (PT_TRIM << 8) | SI_MODIFIED,
))
_EXINFO = struct.Struct("<QI")
_VECTOR_NAMES = {VECTOR_PF: "#PF", VECTOR_GP: "#GP", 6: "#UD"}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
#: the value AEX leaves in GPRSGX.RIP: the model has no code addresses
RIP_INTERRUPTED = 0x1
#: what `eaccept_locked` returns where the hardware takes the read #PF (0x4) of a
#: not-present target PTE; never an SGX code
NOT_PRESENT = -1

Rip = int | Callable[[], object]


@dataclass(frozen=True, slots=True)
class EvictedPage:
    """What EWB writes out (the sealed page and its PCMD); ELDU takes it back."""

    secs_slot: int
    flags: int
    pt: int
    linaddr: int
    epoch: int
    contents: bytes | None


@dataclass(slots=True)
class EnclaveControl:
    """The CPU's state for one enclave (what its SECS holds, plus tracking)."""

    secs_slot: int
    base: int
    size: int
    ssa_frame_size: int
    miscselect: int
    attributes: int
    initialized: bool = False
    children: int = 0
    epoch: int = 1                   # stamped on pages by EMODPR / EMODT
    tracked: int = 0                 # every epoch <= tracked has completed tracking
    track_epoch: int = 0             # epoch closed by the ETRACK in progress
    track_waiting: set[int] = field(default_factory=set)
    inside: set[int] = field(default_factory=set)   # TCS slots in enclave mode

    @property
    def end(self) -> int:
        return self.base + self.size

    def contains(self, addr: int, length: int = 1) -> bool:
        return self.base <= addr and addr + length <= self.base + self.size


@dataclass(slots=True)
class TcsControl:
    """Per-TCS processor state: CSSA, busy, and whose context each SSA frame holds."""

    slot: int
    linaddr: int
    secs_slot: int
    ossa: int
    nssa: int
    cssa: int
    busy: bool = False
    frames: dict[int, EnclaveThread] = field(default_factory=dict)
    ssa_base: int = 0        # linear address of SSA frame 0
    frame_bytes: int = PAGE_SIZE


class Cpu:
    """ENCLS/ENCLU leaves over one EPC and one address space."""

    def __init__(self, epc: Epc, mm: AddressSpace, trace: Trace,
                 lock: threading.RLock, *, sgx2: bool = True) -> None:
        self.epc = epc
        self.mm = mm
        self.trace = trace
        self.lock = lock
        self.sgx2 = sgx2
        self.enclaves: dict[int, EnclaveControl] = {}
        self.tcs: dict[int, TcsControl] = {}
        #: GPRSGX linear address -> callable the enclave wrote into SSA.RIP
        self.rip_overrides: dict[int, Callable[[], object]] = {}
        self._conflicts: set[int] = set()

    # ------------------------------------------------------------------ helpers
    def _epc_operand(self, paddr: int) -> int:
        slot = self.epc.slot_of(paddr)
        if slot is None:
            raise GeneralProtection()
        return slot

    def _secs_operand(self, paddr: int) -> EnclaveControl:
        enc = self.enclaves.get((paddr - EPC_BASE) >> PAGE_SHIFT)
        if enc is None or paddr & (PAGE_SIZE - 1) or paddr < EPC_BASE:
            self._epc_operand(paddr)
            raise GeneralProtection()
        return enc

    def _require_sgx2(self) -> None:
        if not self.sgx2:
            raise InvalidOpcode()

    def inject_conflict(self, paddr: int) -> None:
        """Make the next EMODPR/EMODT on this page find it busy (SGX_EPC_PAGE_CONFLICT).

        Leaves are atomic in the model, so the conflict of two concurrent SGX2
        leaves on one page cannot arise by itself; this hook stands for it."""
        with self.lock:
            self._conflicts.add(self._epc_operand(paddr))

    def _free_page(self, enc: EnclaveControl | None, slot: int) -> None:
        if enc is not None and self.epc.pt[slot] != PT_SECS:
            enc.children -= 1
        self.tcs.pop(slot, None)
        self.epc.free(slot)

    # ------------------------------------------------------------------ ENCLS
    def ecreate(self, secs: SecsImage, epc_page: int) -> None:
        with self.lock:
            self.trace.emit(LEAF, "ECREATE", base=secs.base, size=secs.size)
            slot = self._epc_operand(epc_page)
            if self.epc.flags[slot] & F_VALID:
                raise PageFault(_ENCLS_PF, epc_page)
            size, base = secs.size, secs.base
            if (size < 2 * PAGE_SIZE or size & (size - 1) or base % size or base < 0
                    or base + size > 1 << 64 or secs.ssa_frame_size < 1
                    or secs.miscselect & ~MISC_EXINFO):
                raise GeneralProtection()
            self.epc.install(slot, F_VALID, PT_SECS, slot, 0)
            self.enclaves[slot] = EnclaveControl(slot, base, size, secs.ssa_frame_size,
                                                 secs.miscselect, secs.attributes)

    def eadd(self, linaddr: int, secinfo: int, contents: bytes | None, secs_page: int,
             epc_page: int) -> None:
        """EADD one page: contents are 4096 bytes (None = zeros)."""
        with self.lock:
            self.trace.emit(LEAF, "EADD", addr=linaddr, secinfo=secinfo)
            if linaddr % PAGE_SIZE or (contents is not None and len(contents) != PAGE_SIZE):
                raise GeneralProtection()
            if not secinfo_reserved_ok(secinfo):
                raise GeneralProtection()
            pt = secinfo_pt(secinfo)
            if pt not in (PT_REG, PT_TCS) or (secinfo & SI_W and not secinfo & SI_R):
                raise GeneralProtection()
            slot = self._epc_operand(epc_page)
            if self.epc.flags[slot] & F_VALID:
                raise PageFault(_ENCLS_PF, epc_page)
            enc = self._secs_operand(secs_page)
            if enc.initialized or not enc.contains(linaddr, PAGE_SIZE):
                raise GeneralProtection()
            epc = self.epc
            epc.install(slot, F_VALID | (0 if pt == PT_TCS else secinfo & SI_RWX), pt,
                        enc.secs_slot, linaddr, 0, contents)
            enc.children += 1

    def einit(self, secs_page: int) -> None:
        with self.lock:
            self.trace.emit(LEAF, "EINIT")
            enc = self._secs_operand(secs_page)
            if enc.initialized:
                raise GeneralProtection()
            enc.initialized = True

    def eaug(self, linaddr: int, secs_page: int, epc_page: int) -> None:
        self.trace.emit(LEAF, "EAUG", addr=linaddr)
        with self.lock:
            if not self.sgx2:
                raise InvalidOpcode()
            epc = self.epc
            slot = epc.slot_of(epc_page)
            if slot is None or linaddr & (PAGE_SIZE - 1) or secs_page & (PAGE_SIZE - 1):
                raise GeneralProtection()
            if epc.flags[slot] & F_VALID:
                raise PageFault(_ENCLS_PF, epc_page)
            enc = self._secs_operand(secs_page)
            if not enc.initialized:
                raise GeneralProtection()
            if not enc.base <= linaddr < enc.base + enc.size:
                raise GeneralProtection()
            self.eaug_slot(linaddr, enc.secs_slot, slot)

    def eaug_slot(self, linaddr: int, secs_slot: int, slot: int) -> bool:
        """EAUG of EPC slot `slot` for the enclave whose SECS is `secs_slot`, if every
        check of `eaug` passes (operands given as slots, so they are aligned EPC
        pages); False, with nothing changed, where `eaug` would fault. The kernel's
        first-touch path uses it to decide before it changes anything. No event;
        the caller holds the lock."""
        epc = self.epc
        if not self.sgx2 or linaddr & (PAGE_SIZE - 1) or not 0 <= slot < epc.npages:
            return False
        if epc.flags[slot] & F_VALID:
            return False
        enc = self.enclaves.get(secs_slot)
        if enc is None or not enc.initialized or not enc.base <= linaddr < enc.base + enc.size:
            return False
        epc.install(slot, F_VALID | F_R | F_W | F_PENDING, PT_REG, enc.secs_slot, linaddr)
        enc.children += 1
        return True

    def _valid_operand(self, epc_page: int) -> tuple[int, int]:
        """EMODPR/EMODT's first operand checks: an EPC page (#GP) that is VALID (#PF).
        Returns its slot and EPCM flag byte."""
        slot = self._epc_operand(epc_page)
        f = self.epc.flags[slot]
        if not f & F_VALID:
            raise PageFault(_ENCLS_PF, epc_page)
        return slot, f

    def _take_conflict(self, slot: int) -> bool:
        """Whether another SGX2 leaf holds the page (SGX_EPC_PAGE_CONFLICT), once."""
        if slot in self._conflicts:
            self._conflicts.discard(slot)
            return True
        return False

    def emodpr(self, secinfo: int, epc_page: int) -> int:
        with self.lock:
            self.trace.emit(LEAF, "EMODPR", secinfo=secinfo)
            self._require_sgx2()
            if not secinfo_reserved_ok(secinfo) or (secinfo & SI_W and not secinfo & SI_R):
                raise GeneralProtection()
            slot, f = self._valid_operand(epc_page)
            if self._take_conflict(slot):
                return SGX_EPC_PAGE_CONFLICT
            epc = self.epc
            if f & (F_PENDING | F_MODIFIED):
                return SGX_PAGE_NOT_MODIFIABLE
            if epc.pt[slot] != PT_REG:
                raise PageFault(_ENCLS_PF, epc_page)
            enc = self.enclaves[epc.owner[slot]]
            if not enc.initialized:
                raise GeneralProtection()
            epc.flags[slot] = (f & ~SI_RWX) | (f & secinfo & SI_RWX) | F_PR
            epc.epoch[slot] = enc.epoch
            return 0

    def emodt(self, secinfo: int, epc_page: int) -> int:
        with self.lock:
            self.trace.emit(LEAF, "EMODT", secinfo=secinfo)
            self._require_sgx2()
            new_pt = secinfo_pt(secinfo)
            if not secinfo_reserved_ok(secinfo) or new_pt not in (PT_TCS, PT_TRIM):
                raise GeneralProtection()
            slot, f = self._valid_operand(epc_page)
            if self._take_conflict(slot):
                return SGX_EPC_PAGE_CONFLICT
            epc = self.epc
            old_pt = epc.pt[slot]
            allowed = (old_pt == PT_REG or (old_pt == PT_TCS and new_pt == PT_TRIM)
                       or (old_pt in (PT_SS_FIRST, PT_SS_REST) and new_pt == PT_TRIM))
            if not allowed:
                raise PageFault(_ENCLS_PF, epc_page)
            if f & (F_PENDING | F_MODIFIED):
                return SGX_PAGE_NOT_MODIFIABLE
            enc = self.enclaves[epc.owner[slot]]
            if not enc.initialized:
                raise GeneralProtection()
            epc.flags[slot] = (f & ~(SI_RWX | F_PR)) | F_MODIFIED
            epc.pt[slot] = new_pt
            epc.epoch[slot] = enc.epoch
            self.tcs.pop(slot, None)
            return 0

    def eremove(self, epc_page: int) -> int:
        with self.lock:
            self.trace.emit(LEAF, "EREMOVE")
            slot = self._epc_operand(epc_page)
            epc = self.epc
            f = epc.flags[slot]
            if not f & F_VALID:
                return 0
            pt = epc.pt[slot]
            enc = self.enclaves.get(epc.owner[slot])
            if pt == PT_TRIM and not f & F_MODIFIED:
                self._free_page(enc, slot)
                return 0
            if pt == PT_VA:
                self._free_page(None, slot)
                return 0
            if pt == PT_SECS:
                assert enc is not None
                if enc.children:
                    return SGX_CHILD_PRESENT
                del self.enclaves[slot]
                self._free_page(None, slot)
                return 0
            if enc is not None and enc.inside:
                return SGX_ENCLAVE_ACT
            self._free_page(enc, slot)
            return 0

    def ewb(self, epc_page: int) -> EvictedPage:
        """Evict a page (EBLOCK + ETRACK + EWB folded into one step: the model's
        reclaimer only picks pages no thread can be using)."""
        with self.lock:
            self.trace.emit(LEAF, "EWB")
            slot = self._epc_operand(epc_page)
            epc = self.epc
            f = epc.flags[slot]
            if not f & F_VALID or epc.pt[slot] in (PT_SECS, PT_VA):
                raise GeneralProtection()
            contents = epc.contents.get(slot)
            blob = EvictedPage(epc.owner[slot], f & ~F_BLOCKED, epc.pt[slot],
                               epc.linaddr[slot], epc.epoch[slot],
                               bytes(contents) if contents is not None else None)
            self._free_page(self.enclaves.get(epc.owner[slot]), slot)
            return blob

    def eldu(self, blob: EvictedPage, secs_page: int, epc_page: int) -> None:
        """Load an evicted page back into a free EPC page."""
        with self.lock:
            self.trace.emit(LEAF, "ELDU", addr=blob.linaddr)
            slot = self._epc_operand(epc_page)
            epc = self.epc
            if epc.flags[slot] & F_VALID:
                raise PageFault(_ENCLS_PF, epc_page)
            enc = self._secs_operand(secs_page)
            if enc.secs_slot != blob.secs_slot:
                raise GeneralProtection()
            epc.install(slot, blob.flags, blob.pt, blob.secs_slot, blob.linaddr, blob.epoch,
                        blob.contents)
            enc.children += 1

    def etrack(self, secs_page: int) -> int:
        with self.lock:
            self.trace.emit(LEAF, "ETRACK")
            enc = self._secs_operand(secs_page)
            if enc.track_waiting:
                return SGX_PREV_TRK_INCMPL
            enc.track_epoch = enc.epoch
            enc.epoch += 1
            enc.track_waiting = set(enc.inside)
            if not enc.track_waiting:
                enc.tracked = enc.track_epoch
            return 0

    def ipi(self, secs_page: int) -> None:
        """Interrupt every logical processor inside the enclave (the kernel's IPIs after
        ETRACK): each takes an AEX and ERESUMEs, which completes the tracking cycle."""
        with self.lock:
            enc = self._secs_operand(secs_page)
            for _ in enc.inside:
                self.trace.emit(AEX, "INTR")
            if enc.track_waiting:
                enc.track_waiting.clear()
                enc.tracked = enc.track_epoch

    def _leave(self, enc: EnclaveControl, tcs_slot: int) -> None:
        enc.inside.discard(tcs_slot)
        if tcs_slot in enc.track_waiting:
            enc.track_waiting.discard(tcs_slot)
            if not enc.track_waiting:
                enc.tracked = enc.track_epoch

    # ------------------------------------------------------------ translation
    def _pte_slot(self, addr: int, kind: int) -> int:
        """Page-table half of a leaf operand access: the EPC slot the PTE maps."""
        page = addr >> PAGE_SHIFT
        chunk = self.mm.chunks.get(page >> CHUNK_SHIFT)
        pte = chunk[page & CHUNK_MASK] if chunk is not None else 0
        if not pte:
            raise PageFault(_KIND_PFEC[kind], addr)
        if not pte & _KIND_PTE[kind]:
            raise PageFault(_KIND_PFEC[kind] | 1, addr)
        return pte >> 3

    def _data_slot(self, enc: EnclaveControl, addr: int, kind: int) -> int:
        """Full enclave access check (section C): PTE first, EPCM second."""
        page = addr >> PAGE_SHIFT
        chunk = self.mm.chunks.get(page >> CHUNK_SHIFT)
        pte = chunk[page & CHUNK_MASK] if chunk is not None else 0
        if not pte:
            if kind == FETCH and not enc.base <= addr < enc.base + enc.size:
                raise GeneralProtection()
            raise PageFault(_KIND_PFEC[kind], addr)
        if not pte & _KIND_PTE[kind]:
            raise PageFault(_KIND_PFEC[kind] | 1, addr)
        slot = pte >> 3
        epc = self.epc
        need = _KIND_EPCM[kind]
        if ((epc.flags[slot] & (_BLOCKING | need)) != (F_VALID | need)
                or epc.owner[slot] != enc.secs_slot
                or epc.linaddr[slot] != page << PAGE_SHIFT
                or epc.pt[slot] not in _DATA_PT):
            raise PageFault(_KIND_PFEC[kind] | 0x8001, addr)
        if kind == FETCH and not enc.base <= addr < enc.base + enc.size:
            raise GeneralProtection()
        return slot

    def _accepted_reg(self, enc: EnclaveControl, slot: int, addr: int, need: int) -> bool:
        epc = self.epc
        return ((epc.flags[slot] & (_BLOCKING | need)) == (F_VALID | need)
                and epc.pt[slot] == PT_REG and epc.owner[slot] == enc.secs_slot
                and epc.linaddr[slot] == addr & ~(PAGE_SIZE - 1))

    def _read_secinfo(self, enc: EnclaveControl, secinfo_addr: int) -> tuple[int, bool]:
        """RBX of EACCEPT/EACCEPTCOPY/EMODPE when given as an address: the page must be
        a valid, readable, accepted REG page of this enclave, else #PF(RBX)."""
        slot = self._pte_slot(secinfo_addr, READ)
        if not self._accepted_reg(enc, slot, secinfo_addr, F_R):
            raise PageFault(_LEAF_PF, secinfo_addr)
        off = secinfo_addr & (PAGE_SIZE - 1)
        return parse_secinfo(bytes(self.epc.page_bytes(slot)[off:off + 64]))

    @staticmethod
    def _check_secinfo_addr(enc: EnclaveControl, secinfo_addr: int | None) -> None:
        if secinfo_addr is not None and (secinfo_addr % 64 or not enc.contains(secinfo_addr, 64)):
            raise GeneralProtection()

    @staticmethod
    def _check_page_operand(enc: EnclaveControl, addr: int) -> None:
        if addr % PAGE_SIZE or not enc.contains(addr, PAGE_SIZE):
            raise GeneralProtection()

    def _secinfo(self, enc: EnclaveControl, secinfo: int,
                 secinfo_addr: int | None) -> int:
        """SECINFO.FLAGS after the RBX page check, with the reserved-bit check."""
        if secinfo_addr is not None:
            secinfo, reserved_clear = self._read_secinfo(enc, secinfo_addr)
            if not reserved_clear:
                raise GeneralProtection()
        if not secinfo_reserved_ok(secinfo):
            raise GeneralProtection()
        return secinfo

    # ------------------------------------------------------------ data accesses
    def read(self, t: EnclaveThread, addr: int, n: int) -> bytes:
        lock = self.lock
        lock.acquire()         # cheaper than `with` on this path
        try:
            if not t.inside:
                raise NotInsideEnclave("this enclave thread is not inside the enclave")
            enc = t.enclave
            off = addr & (PAGE_SIZE - 1)
            if off + n <= PAGE_SIZE:
                slot = self._data_slot(enc, addr, READ)
                page = self.epc.contents.get(slot)
                return bytes(page[off:off + n]) if page is not None else bytes(n)
            slots = self._span(enc, addr, n, READ)
            out = bytearray()
            for i, slot in enumerate(slots):
                start = off if i == 0 else 0
                stop = min(PAGE_SIZE, off + n - i * PAGE_SIZE)
                out += self.epc.page_bytes(slot)[start:stop]
            return bytes(out)
        finally:
            lock.release()

    def fetch(self, t: EnclaveThread, addr: int, n: int) -> bytes:
        with self.lock:
            t._require_inside()
            slots = self._span(t.enclave, addr, n, FETCH)
            off = addr & (PAGE_SIZE - 1)
            out = bytearray()
            for i, slot in enumerate(slots):
                start = off if i == 0 else 0
                stop = min(PAGE_SIZE, off + n - i * PAGE_SIZE)
                out += self.epc.page_bytes(slot)[start:stop]
            return bytes(out)

    def write(self, t: EnclaveThread, addr: int, data: bytes) -> None:
        lock = self.lock
        lock.acquire()
        try:
            if not t.inside:
                raise NotInsideEnclave("this enclave thread is not inside the enclave")
            n = len(data)
            off = addr & (PAGE_SIZE - 1)
            if off + n <= PAGE_SIZE:
                slot = self._data_slot(t.enclave, addr, WRITE)
                self.epc.writable_page(slot)[off:off + n] = data
                return
            slots = self._span(t.enclave, addr, n, WRITE)
            pos = 0
            for i, slot in enumerate(slots):
                start = off if i == 0 else 0
                stop = min(PAGE_SIZE, off + n - i * PAGE_SIZE)
                self.epc.writable_page(slot)[start:stop] = data[pos:pos + stop - start]
                pos += stop - start
        finally:
            lock.release()

    def _span(self, enc: EnclaveControl, addr: int, n: int, kind: int) -> list[int]:
        """Check every page an access touches, in address order, before touching any."""
        slots = [self._data_slot(enc, addr, kind)]
        page = (addr >> PAGE_SHIFT) + 1
        end = addr + n
        while page << PAGE_SHIFT < end:
            slots.append(self._data_slot(enc, page << PAGE_SHIFT, kind))
            page += 1
        return slots

    # ------------------------------------------------------------ ENCLU in enclave
    def eaccept(self, t: EnclaveThread, secinfo: int, target: int,
                secinfo_addr: int | None = None) -> int:
        with self.lock:
            self.trace.emit(LEAF, "EACCEPT", addr=target, secinfo=secinfo)
            ret = self.eaccept_locked(t, secinfo, target, secinfo_addr)
            if ret == NOT_PRESENT:
                raise PageFault(0x4, target)
            return ret

    def eaccept_locked(self, t: EnclaveThread, secinfo: int, target: int,
                       secinfo_addr: int | None = None) -> int:
        """EACCEPT without its event; the caller holds the lock. A not-present target
        PTE gives NOT_PRESENT instead of raising, so the commit path (thread.py) can
        take the hardware path without an exception; every other fault raises."""
        if not self.sgx2:
            raise InvalidOpcode()
        if not t.inside:
            raise NotInsideEnclave("this enclave thread is not inside the enclave")
        enc = t.enclave
        if secinfo_addr is not None:
            self._check_secinfo_addr(enc, secinfo_addr)
            secinfo = self._secinfo(enc, secinfo, secinfo_addr)
        elif not 0 <= secinfo < 1 << 64 or secinfo & SI_RESERVED_MASK:
            raise GeneralProtection()
        if target & (PAGE_SIZE - 1) or not enc.base <= target < enc.base + enc.size:
            raise GeneralProtection()
        if secinfo & _ACCEPT_SHAPE not in _LEGAL_ACCEPT:
            raise GeneralProtection()
        page = target >> PAGE_SHIFT
        chunk = self.mm.chunks.get(page >> CHUNK_SHIFT)
        pte = chunk[page & CHUNK_MASK] if chunk is not None else 0
        if not pte:
            return NOT_PRESENT
        slot = pte >> 3
        epc = self.epc
        f = epc.flags[slot]
        pt = epc.pt[slot]
        if (not f & F_VALID or f & F_BLOCKED or epc.owner[slot] != enc.secs_slot
                or pt in (PT_SECS, PT_VA)):
            raise PageFault(_LEAF_PF, target)
        if (epc.linaddr[slot] != target or (f & _MATCH_MASK) != (secinfo & _MATCH_MASK)
                or pt != (secinfo >> 8) & 0xFF):
            return SGX_PAGE_ATTRIBUTES_MISMATCH
        if secinfo & (SI_PR | SI_MODIFIED) and epc.epoch[slot] > enc.tracked:
            return SGX_NOT_TRACKED
        if pt == PT_TCS and not TcsImage.valid_for_accept(bytes(epc.page_bytes(slot))):
            raise GeneralProtection()
        epc.flags[slot] = f & ~(F_PENDING | F_MODIFIED | F_PR)
        return 0

    def eaccept_augmented_locked(self, t: EnclaveThread, secinfo: int, target: int,
                                 slot: int) -> int:
        """The EACCEPT that follows the kernel's EAUG of `slot` at `target` in the same
        locked pass (thread.py's commit path), after an `eaccept_locked` of the same
        operands met the not-present PTE. Every check before the EPCM part passed
        on operands nothing has changed since, and the entry is exactly what EAUG
        wrote (VALID R W PENDING, REG, address `target`, epoch 0), so only the
        owner and match checks are left; the result is what `eaccept_locked` gives.
        The caller holds the lock; no event."""
        if self.epc.owner[slot] != t.enclave.secs_slot:
            raise PageFault(_LEAF_PF, target)
        if ((secinfo & _MATCH_MASK) != (F_R | F_W | F_PENDING)
                or (secinfo >> 8) & 0xFF != PT_REG):
            return SGX_PAGE_ATTRIBUTES_MISMATCH
        self.epc.flags[slot] = F_VALID | F_R | F_W
        return 0

    def eacceptcopy(self, t: EnclaveThread, secinfo: int, dest: int, src: int,
                    secinfo_addr: int | None = None) -> int:
        with self.lock:
            self.trace.emit(LEAF, "EACCEPTCOPY", addr=dest, src=src, secinfo=secinfo)
            self._require_sgx2()
            t._require_inside()
            enc = t.enclave
            self._check_secinfo_addr(enc, secinfo_addr)
            self._check_page_operand(enc, dest)
            self._check_page_operand(enc, src)
            secinfo = self._secinfo(enc, secinfo, secinfo_addr)
            if (secinfo & SI_W and not secinfo & SI_R) or secinfo_pt(secinfo) != PT_REG:
                raise GeneralProtection()
            src_slot = self._pte_slot(src, READ)
            if not self._accepted_reg(enc, src_slot, src, F_R):
                raise PageFault(_LEAF_PF, src)
            dst_slot = self._pte_slot(dest, WRITE)
            epc = self.epc
            f = epc.flags[dst_slot]
            fresh = F_VALID | F_PENDING | F_R | F_W
            if ((f & (fresh | F_MODIFIED | F_X | F_BLOCKED)) != fresh
                    or epc.pt[dst_slot] != PT_REG or epc.owner[dst_slot] != enc.secs_slot
                    or epc.linaddr[dst_slot] != dest):
                return SGX_PAGE_ATTRIBUTES_MISMATCH
            epc.set_page(dst_slot, bytes(epc.page_bytes(src_slot)))
            epc.flags[dst_slot] = F_VALID | (secinfo & SI_RWX)
            return 0

    def emodpe(self, t: EnclaveThread, secinfo: int, target: int,
               secinfo_addr: int | None = None) -> int:
        with self.lock:
            self.trace.emit(LEAF, "EMODPE", addr=target, secinfo=secinfo)
            self._require_sgx2()
            t._require_inside()
            enc = t.enclave
            self._check_secinfo_addr(enc, secinfo_addr)
            self._check_page_operand(enc, target)
            secinfo = self._secinfo(enc, secinfo, secinfo_addr)
            slot = self._pte_slot(target, READ)
            epc = self.epc
            f = epc.flags[slot]
            if ((f & _BLOCKING) != F_VALID or epc.pt[slot] != PT_REG
                    or epc.owner[slot] != enc.secs_slot or epc.linaddr[slot] != target):
                raise PageFault(_LEAF_PF, target)
            if not f & F_R and secinfo & SI_W and not secinfo & SI_R:
                raise GeneralProtection()
            epc.flags[slot] = f | (secinfo & SI_RWX)
            return 0

    # ------------------------------------------------------------ entry and exit
    def _tcs_operand(self, tcs_addr: int) -> tuple[EnclaveControl, TcsControl]:
        """Translate the TCS operand of EENTER/ERESUME and load its processor state."""
        if tcs_addr & (PAGE_SIZE - 1):
            raise GeneralProtection()
        page = tcs_addr >> PAGE_SHIFT
        chunk = self.mm.chunks.get(page >> CHUNK_SHIFT)
        pte = chunk[page & CHUNK_MASK] if chunk is not None else 0
        if not pte:
            raise PageFault(0x4, tcs_addr)
        slot = pte >> 3
        epc = self.epc
        if ((epc.flags[slot] & _BLOCKING) != F_VALID or epc.pt[slot] != PT_TCS
                or epc.linaddr[slot] != tcs_addr):
            raise PageFault(_LEAF_PF, tcs_addr)
        enc = self.enclaves[epc.owner[slot]]
        if not enc.initialized:
            raise GeneralProtection()
        tcs = self.tcs.get(slot)
        if tcs is None:
            image = TcsImage.from_bytes(bytes(epc.page_bytes(slot)))
            tcs = TcsControl(slot, tcs_addr, enc.secs_slot, image.ossa, image.nssa, image.cssa,
                             ssa_base=enc.base + image.ossa,
                             frame_bytes=enc.ssa_frame_size * PAGE_SIZE)
            self.tcs[slot] = tcs
        return enc, tcs

    def frame_addr(self, enc: EnclaveControl, tcs: TcsControl, level: int) -> int:
        return enc.base + tcs.ossa + level * enc.ssa_frame_size * PAGE_SIZE

    def _ssa_slot(self, enc: EnclaveControl, tcs: TcsControl, level: int) -> int:
        """Check every page of SSA frame `level` (valid, accepted RW REG page) and
        return the slot of its last page, where GPRSGX and EXINFO live."""
        frame = tcs.ssa_base + level * tcs.frame_bytes
        end = frame + tcs.frame_bytes
        if frame < enc.base or end > enc.base + enc.size:
            raise GeneralProtection()
        epc = self.epc
        chunks = self.mm.chunks
        if end - frame == PAGE_SIZE:      # the usual one-page frame, without the loop
            page = frame >> PAGE_SHIFT
            chunk = chunks.get(page >> CHUNK_SHIFT)
            pte = chunk[page & CHUNK_MASK] if chunk is not None else 0
            if pte & 0x2:
                slot = pte >> 3
                if ((epc.flags[slot] & (_BLOCKING | F_R | F_W)) == (F_VALID | F_R | F_W)
                        and epc.pt[slot] == PT_REG and epc.owner[slot] == enc.secs_slot
                        and epc.linaddr[slot] == frame):
                    return slot
        slot = -1
        for addr in range(frame, end, PAGE_SIZE):
            page = addr >> PAGE_SHIFT
            chunk = chunks.get(page >> CHUNK_SHIFT)
            pte = chunk[page & CHUNK_MASK] if chunk is not None else 0
            if not pte:
                raise PageFault(0x6, addr)
            if not pte & 0x2:
                raise PageFault(0x7, addr)
            slot = pte >> 3
            if ((epc.flags[slot] & (_BLOCKING | F_R | F_W)) != (F_VALID | F_R | F_W)
                    or epc.pt[slot] != PT_REG or epc.owner[slot] != enc.secs_slot
                    or epc.linaddr[slot] != addr):
                raise PageFault(_LEAF_PF_W, addr)
        return slot

    def eenter(self, tcs_addr: int) -> tuple[EnclaveControl, TcsControl, int, int]:
        """EENTER: (enclave, tcs, level = CSSA, SSA slot). The thread object is built by
        thread.py; this only runs the leaf."""
        with self.lock:
            self.trace.emit(ENTRY, "EENTER", tcs=tcs_addr)
            enc, tcs = self._tcs_operand(tcs_addr)
            if tcs.busy or tcs.cssa >= tcs.nssa:
                raise GeneralProtection()
            ssa_slot = self._ssa_slot(enc, tcs, tcs.cssa)
            tcs.busy = True
            enc.inside.add(tcs.slot)
            return enc, tcs, tcs.cssa, ssa_slot

    def eresume(self, tcs_addr: int) -> tuple[EnclaveThread | None, Rip, int]:
        """ERESUME: restore SSA frame CSSA-1. Returns the thread whose context that
        frame holds (None if unknown), the frame's RIP (an int or a callable the
        enclave put there) and the SSA slot of the restored frame."""
        self.trace.emit(ENTRY, "ERESUME", tcs=tcs_addr)
        with self.lock:
            return self.eresume_locked(tcs_addr)

    def eresume_locked(self, tcs_addr: int) -> tuple[EnclaveThread | None, Rip, int]:
        """ERESUME without its event; the caller holds the lock. The usual case (a TCS
        entered before, a one-page SSA frame, both mapped and valid) is checked
        inline; anything else goes through the full operand checks, in order."""
        epc = self.epc
        chunks = self.mm.chunks
        page = tcs_addr >> PAGE_SHIFT
        chunk = chunks.get(page >> CHUNK_SHIFT)
        pte = chunk[page & CHUNK_MASK] if chunk is not None else 0
        slot = pte >> 3
        tcs = self.tcs.get(slot) if pte else None
        if (tcs is not None and (epc.flags[slot] & _BLOCKING) == F_VALID
                and epc.pt[slot] == PT_TCS and epc.linaddr[slot] == tcs_addr):
            enc = self.enclaves[epc.owner[slot]]
            if not enc.initialized:
                raise GeneralProtection()
        else:
            enc, tcs = self._tcs_operand(tcs_addr)
        if tcs.busy or tcs.cssa == 0:
            raise GeneralProtection()
        level = tcs.cssa - 1
        ssa_slot = -1
        frame = tcs.ssa_base + level * PAGE_SIZE
        if tcs.frame_bytes == PAGE_SIZE and enc.base <= frame < enc.base + enc.size:
            page = frame >> PAGE_SHIFT
            chunk = chunks.get(page >> CHUNK_SHIFT)
            pte = chunk[page & CHUNK_MASK] if chunk is not None else 0
            slot = pte >> 3
            if (pte & 0x2 and (epc.flags[slot] & (_BLOCKING | F_R | F_W)) == (F_VALID | F_R | F_W)
                    and epc.pt[slot] == PT_REG and epc.owner[slot] == enc.secs_slot
                    and epc.linaddr[slot] == frame):
                ssa_slot = slot
        if ssa_slot < 0:
            ssa_slot = self._ssa_slot(enc, tcs, level)
        gpr = tcs.ssa_base + (level + 1) * tcs.frame_bytes - GPRSGX_SIZE
        rip: Rip | None = self.rip_overrides.pop(gpr, None) if self.rip_overrides else None
        if rip is None:
            ssa = epc.contents.get(ssa_slot)
            rip = _U64.unpack_from(ssa, (gpr & (PAGE_SIZE - 1)) + GPR_RIP)[0] \
                if ssa is not None else 0
        tcs.cssa = level
        tcs.busy = True
        enc.inside.add(tcs.slot)
        owner = tcs.frames.pop(level, None)
        if owner is not None:
            owner.inside = True
            owner.ssa_slot = ssa_slot
        return owner, rip, ssa_slot

    def eexit(self, t: EnclaveThread) -> None:
        with self.lock:
            self.trace.emit(ENTRY, "EEXIT", tcs=t.tcs_addr)
            t._require_inside()
            tcs = t.tcs_control
            tcs.busy = False
            self._leave(t.enclave, tcs.slot)
            t.inside = False

    def aex(self, t: EnclaveThread, fault: CpuFault) -> None:
        """Asynchronous exit: save the interrupted context in SSA frame CSSA."""
        vector = fault.vector
        with self.lock:
            self.aex_locked(t, vector, fault.addr, fault.errcd)
        self.trace.emit(AEX, _VECTOR_NAMES.get(vector, "other"), errcd=fault.errcd,
                        addr=fault.addr)

    def aex_eresume_locked(self, t: EnclaveThread, vector: int, addr: int,
                           errcd: int) -> Rip | None:
        """An AEX on `t` for this fault whose AEP at once ERESUMEs the same TCS (the
        kernel fixed the fault): the state the two leaves leave, composed, for the
        usual case where ERESUME's operand checks pass inline (the TCS as entered, a
        one-page SSA frame, both mapped and valid); returns the restored frame's RIP.
        The AEX changes nothing those checks read except BUSY and CSSA, which it
        leaves passing, so they are evaluated first. Otherwise only the AEX happens
        and None is returned: the caller runs `eresume_locked`, with its faults.
        The caller holds the lock; no events."""
        tcs = t.tcs_control
        enc = t.enclave
        epc = self.epc
        chunks = self.mm.chunks
        tcs_addr = tcs.linaddr
        page = tcs_addr >> PAGE_SHIFT
        chunk = chunks.get(page >> CHUNK_SHIFT)
        pte = chunk[page & CHUNK_MASK] if chunk is not None else 0
        slot = pte >> 3
        level = tcs.cssa
        frame = tcs.ssa_base + level * PAGE_SIZE
        ok = (pte and slot == tcs.slot and self.tcs.get(slot) is tcs
              and (epc.flags[slot] & _BLOCKING) == F_VALID and epc.pt[slot] == PT_TCS
              and epc.linaddr[slot] == tcs_addr and epc.owner[slot] == enc.secs_slot
              and enc.initialized and tcs.frame_bytes == PAGE_SIZE
              and enc.base <= frame < enc.base + enc.size)
        if ok:
            page = frame >> PAGE_SHIFT
            chunk = chunks.get(page >> CHUNK_SHIFT)
            pte = chunk[page & CHUNK_MASK] if chunk is not None else 0
            slot = pte >> 3
            ok = (pte & 0x2 and (epc.flags[slot] & (_BLOCKING | F_R | F_W))
                  == (F_VALID | F_R | F_W) and epc.pt[slot] == PT_REG
                  and epc.owner[slot] == enc.secs_slot and epc.linaddr[slot] == frame)
        if not ok:
            self.aex_locked(t, vector, addr, errcd)
            return None
        # AEX: the frame's EXITINFO, RIP and EXINFO; the override of its RIP is gone
        gpr = frame + PAGE_SIZE - GPRSGX_SIZE
        written = t.ssa_slot
        contents = epc.contents
        ssa = contents.get(written)
        if ssa is None:
            ssa = epc.writable_page(written)
        off = gpr & (PAGE_SIZE - 1)
        _U32.pack_into(ssa, off + GPR_EXITINFO, vector | EXITINFO_TYPE_HW | EXITINFO_VALID)
        _U64.pack_into(ssa, off + GPR_RIP, RIP_INTERRUPTED)
        if enc.miscselect & MISC_EXINFO and vector in (VECTOR_PF, VECTOR_GP):
            _EXINFO.pack_into(ssa, off - EXINFO_SIZE, addr, errcd)
        if self.rip_overrides:
            self.rip_overrides.pop(gpr, None)
        # AEX then ERESUME of that frame: CSSA, BUSY and the frame's owner come back as
        # they were; leaving the enclave for a moment still counts for tracking
        if tcs.frames:
            tcs.frames.pop(level, None)
        tcs.busy = True
        if enc.track_waiting:
            self._leave(enc, tcs.slot)
        enc.inside.add(tcs.slot)
        t.inside = True
        t.ssa_slot = slot
        if slot == written:
            return RIP_INTERRUPTED
        other = contents.get(slot)
        return _U64.unpack_from(other, off + GPR_RIP)[0] if other is not None else 0

    def aex_locked(self, t: EnclaveThread, vector: int, addr: int, errcd: int) -> None:
        """AEX without its event, for a fault (vector, full address, error code); the
        caller holds the lock."""
        tcs = t.tcs_control
        enc = t.enclave
        level = tcs.cssa
        gpr = tcs.ssa_base + (level + 1) * tcs.frame_bytes - GPRSGX_SIZE
        slot = t.ssa_slot
        page = self.epc.contents.get(slot)
        if page is None:
            page = self.epc.writable_page(slot)
        off = gpr & (PAGE_SIZE - 1)
        _U32.pack_into(page, off + GPR_EXITINFO, vector | EXITINFO_TYPE_HW | EXITINFO_VALID)
        _U64.pack_into(page, off + GPR_RIP, RIP_INTERRUPTED)
        if enc.miscselect & MISC_EXINFO and vector in (VECTOR_PF, VECTOR_GP):
            _EXINFO.pack_into(page, off - EXINFO_SIZE, addr, errcd)
        if self.rip_overrides:
            self.rip_overrides.pop(gpr, None)
        tcs.frames[level] = t
        tcs.cssa = level + 1
        tcs.busy = False
        enc.inside.discard(tcs.slot)
        if enc.track_waiting:
            self._leave(enc, tcs.slot)
        t.inside = False

    # ------------------------------------------------------------ introspection
    def epcm_entry(self, paddr: int) -> dict[str, int | bool]:
        with self.lock:
            return self.epc.describe(self._epc_operand(paddr))

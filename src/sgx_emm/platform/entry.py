"""Entering and leaving an enclave: EENTER, ERESUME, EEXIT and AEX.

The ENCLU leaves that move a logical processor in and out, next to the ENCLU
leaves of enclu.py. Entries are `EntryState`s (state.py): the CPU updates them,
the enclave thread only reads them.

AEX writes one frame through `write_frame`; the commit fast path (an AEX whose
AEP at once ERESUMEs, `aex_eresume_locked`) calls the same function and the same
readiness check as ERESUME (`_resume_ready`), so nothing is written twice. The
kernel's IPIs interrupt the threads inside (`interrupt`): an AEX that reports
nothing (EXITINFO.VALID = 0) and an ERESUME.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import partial

from sgx_emm.flags import PAGE_SHIFT, PAGE_SIZE
from sgx_emm.platform.epcm import F_R, F_VALID, F_W
from sgx_emm.platform.exceptions import CpuFault, GeneralProtection, PageFault
from sgx_emm.platform.mmu import CHUNK_MASK, CHUNK_SHIFT
from sgx_emm.platform.processor import BLOCKING, RIP_INTERRUPTED, Processor, Rip, describe_entry
from sgx_emm.platform.secinfo import (
    EXINFO_SIZE,
    EXITINFO_TYPE_HW,
    EXITINFO_VALID,
    GPR_EXITINFO,
    GPR_RIP,
    GPRSGX_SIZE,
    MISC_EXINFO,
    PF_P,
    PF_U,
    PF_W,
    PFEC_LEAF,
    PFEC_LEAF_W,
    PT_REG,
    PT_TCS,
    VECTOR_GP,
    VECTOR_NAMES,
    VECTOR_PF,
    TcsImage,
)
from sgx_emm.platform.state import EnclaveControl, EntryState, TcsControl
from sgx_emm.trace import AEX, ENTRY

_SSA_OK = F_VALID | F_R | F_W
_SSA_MASK = BLOCKING | F_R | F_W
#: where GPRSGX starts in the last page of an SSA frame: frames are whole pages from
#: a page-aligned OSSA, so it is the same for every frame
_GPR_OFFSET = PAGE_SIZE - GPRSGX_SIZE
#: SSA levels whose frame spots a TCS keeps (`TcsControl.frame_spots`); the SDK uses 2
_SPOT_LEVELS = 8
#: trace keys of the entry leaves, counted without details while nobody listens
_EENTER = (ENTRY, "EENTER")
_EEXIT = (ENTRY, "EEXIT")
#: the `vector` of `write_frame` for an interrupt, which AEX does not report
_INTERRUPT = -1
#: TCS.FLAGS bits that are not reserved: DBGOPTIN (bit 0) and AEXNOTIFY (bit 1)
_TCS_FLAGS_DEFINED = 0x3
_EXINFO = struct.Struct("<QI")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class EntryLeaves(Processor):
    """EENTER, ERESUME, EEXIT; AEX and interrupts."""

    # ------------------------------------------------------------ entry operands
    def _tcs_operand(self, tcs_addr: int, leaf: str) -> tuple[EnclaveControl, TcsControl]:
        """Translate the TCS operand of EENTER/ERESUME and load its processor state."""
        if tcs_addr & (PAGE_SIZE - 1):
            raise GeneralProtection(reason=f"{leaf}: TCS address {tcs_addr:#x} is not "
                                           "page aligned")
        pte = self.mm.pte(tcs_addr >> PAGE_SHIFT)
        if not pte:
            raise PageFault(PF_U, tcs_addr,
                            f"{leaf}: no page-table entry for the TCS at {tcs_addr:#x}")
        slot = pte >> 3
        epc = self.epc
        if ((epc.flags[slot] & BLOCKING) != F_VALID or epc.pt[slot] != PT_TCS
                or epc.linaddr[slot] != tcs_addr):
            raise PageFault(PFEC_LEAF, tcs_addr,
                            f"{leaf}: {tcs_addr:#x} is not a valid TCS "
                            f"(EPCM: {describe_entry(epc, slot)})")
        enc = self.enclaves[epc.owner[slot]]
        if not enc.initialized:
            raise GeneralProtection(reason=f"{leaf}: the enclave is not initialized")
        tcs = self.tcs.get(slot)
        if tcs is None:
            image = TcsImage.from_bytes(bytes(epc.page_bytes(slot)))
            bad = ("reserved TCS.FLAGS bits are set" if image.flags & ~_TCS_FLAGS_DEFINED else
                   f"TCS.OSSA {image.ossa:#x} is not page aligned"
                   if image.ossa & (PAGE_SIZE - 1) else
                   f"TCS.OFSBASE {image.ofsbase:#x} is not page aligned"
                   if image.ofsbase & (PAGE_SIZE - 1) else
                   f"TCS.OGSBASE {image.ogsbase:#x} is not page aligned"
                   if image.ogsbase & (PAGE_SIZE - 1) else "")
            if bad:
                raise GeneralProtection(reason=f"{leaf}: {bad}")
            tcs = TcsControl(slot, tcs_addr, enc.secs_slot, image.ossa, image.nssa, image.cssa,
                             ssa_base=enc.base + image.ossa,
                             frame_bytes=enc.ssa_frame_size * PAGE_SIZE)
            page = tcs_addr >> PAGE_SHIFT
            tcs.tcs_spot = (page >> CHUNK_SHIFT, page & CHUNK_MASK)
            tcs.frame_spots = tuple(_frame_spot(enc, tcs, level)
                                    for level in range(min(tcs.nssa, _SPOT_LEVELS)))
            self.tcs[slot] = tcs
        return enc, tcs

    def _resume_ready(self, enc: EnclaveControl, tcs: TcsControl, level: int) -> int:
        """ERESUME's operand checks for a TCS entered before, when they pass: its PTE
        maps it, the EPCM holds a valid TCS at its address, the enclave is
        initialized, and SSA frame `level` is the usual one page, inside the
        enclave, mapped writable and an accepted RW REG page there. Returns: the
        frame's slot, or -1 if any check does not pass (the caller then runs
        `_tcs_operand` / `_ssa_slot`, which raise the fault)."""
        epc = self.epc
        key, index = tcs.tcs_spot
        chunk = self.mm.chunks.get(key)     # `mm.pte`, inline
        tcs_pte = chunk[index] if chunk is not None else 0
        slot = tcs_pte >> 3
        if not (tcs_pte and slot == tcs.slot and (epc.flags[slot] & BLOCKING) == F_VALID
                and epc.pt[slot] == PT_TCS and epc.linaddr[slot] == tcs.linaddr
                and epc.owner[slot] == enc.secs_slot and enc.initialized):
            return -1
        return self._frame_ready(enc, tcs, level)

    def _frame_ready(self, enc: EnclaveControl, tcs: TcsControl, level: int) -> int:
        """The slot of SSA frame `level` if it is the usual one page, inside the
        enclave, mapped writable and an accepted RW REG page there; else -1.
        `enc` is the TCS's enclave."""
        try:                # levels are never negative: CSSA, or CSSA - 1 when CSSA > 0
            spot = tcs.frame_spots[level]
        except IndexError:
            spot = _frame_spot(enc, tcs, level)
        if spot is None:
            return -1
        frame, key, index = spot
        chunk = self.mm.chunks.get(key)     # `mm.pte`, inline
        pte = chunk[index] if chunk is not None else 0
        slot = pte >> 3
        epc = self.epc
        if (pte & PF_W and (epc.flags[slot] & _SSA_MASK) == _SSA_OK
                and epc.pt[slot] == PT_REG and epc.owner[slot] == enc.secs_slot
                and epc.linaddr[slot] == frame):
            return slot
        return -1

    def frame_addr(self, enc: EnclaveControl, tcs: TcsControl, level: int) -> int:
        """Linear address of SSA frame `level` of a TCS."""
        return enc.base + tcs.ossa + level * enc.ssa_frame_size * PAGE_SIZE

    def _ssa_slot(self, enc: EnclaveControl, tcs: TcsControl, level: int, leaf: str) -> int:
        """Check SSA frame `level` as EENTER/ERESUME do: its first page (XSAVE area)
        and last page (GPRSGX, EXINFO) must be mapped writable and accepted RW REG
        pages of this enclave at their addresses (#PF otherwise). Returns: the slot
        of the last page."""
        frame = tcs.ssa_base + level * tcs.frame_bytes
        ready = self._frame_ready(enc, tcs, level)
        if ready >= 0:
            return ready
        epc = self.epc
        slot = -1
        last = frame + tcs.frame_bytes - PAGE_SIZE
        for addr in (frame, last) if last != frame else (frame,):
            pte = self.mm.pte(addr >> PAGE_SHIFT)
            if not pte:
                raise PageFault(PF_U | PF_W, addr,
                                f"{leaf}: no page-table entry for SSA frame {level} page "
                                f"{addr:#x} (TCS.OSSA {tcs.ossa:#x})")
            if not pte & PF_W:
                raise PageFault(PF_U | PF_W | PF_P, addr,
                                f"{leaf}: the page-table entry of SSA frame {level} page "
                                f"{addr:#x} is not writable")
            slot = pte >> 3
            if ((epc.flags[slot] & _SSA_MASK) != _SSA_OK
                    or epc.pt[slot] != PT_REG or epc.owner[slot] != enc.secs_slot
                    or epc.linaddr[slot] != addr):
                raise PageFault(PFEC_LEAF_W, addr,
                                f"{leaf}: SSA frame {level} page {addr:#x} is not an "
                                f"accepted RW REG page (EPCM: {describe_entry(epc, slot)})")
        return slot

    # ------------------------------------------------------------ entry and exit
    def eenter(self, tcs_addr: int, entry: EntryState | None = None) -> EntryState:
        """EENTER through the TCS at `tcs_addr`, at SSA level CSSA.

        Returns: the entry (`entry` refreshed, if given: an ocall's return).
        Raises, in the SDM's order: #GP (TCS misaligned); #PF (TCS unmapped or not a
        valid TCS); #GP (enclave not initialized, reserved TCS.FLAGS, OSSA/OFSBASE/
        OGSBASE misaligned, CSSA >= NSSA); #PF (SSA frame pages); #GP (TCS busy)."""
        with self.lock:
            trace = self.trace
            if trace.listening:
                trace.emit(ENTRY, "EENTER", tcs=tcs_addr)
            else:
                trace.unheard(_EENTER)
            if entry is not None:
                # an ocall's return: entering the TCS it left, whose control block is
                # the one loaded for it, not busy, CSSA < NSSA, in the enclave of the
                # entry: if ERESUME's readiness checks hold at level CSSA, every check
                # below passes and leaves the entry's enclave and TCS as they are
                tcs = entry.tcs
                enc = entry.enclave
                if (tcs.linaddr == tcs_addr and not tcs.busy and tcs.cssa < tcs.nssa
                        and self.tcs.get(tcs.slot) is tcs
                        and self.enclaves.get(tcs.secs_slot) is enc):
                    ssa_slot = self._resume_ready(enc, tcs, tcs.cssa)
                    if ssa_slot >= 0:
                        tcs.busy = True
                        enc.inside.add(tcs.slot)
                        entry.level, entry.ssa_slot, entry.inside = tcs.cssa, ssa_slot, True
                        return entry
            enc, tcs = self._tcs_operand(tcs_addr, "EENTER")
            if tcs.cssa >= tcs.nssa:
                raise GeneralProtection(
                    reason=f"EENTER: TCS.NSSA ({tcs.nssa}) <= TCS.CSSA ({tcs.cssa})")
            ssa_slot = self._ssa_slot(enc, tcs, tcs.cssa, "EENTER")
            if tcs.busy:
                raise GeneralProtection(reason=f"EENTER: the TCS at {tcs_addr:#x} is busy")
            tcs.busy = True
            enc.inside.add(tcs.slot)
            if entry is None:
                return EntryState(enc, tcs, tcs.cssa, ssa_slot)
            entry.enclave, entry.tcs, entry.level = enc, tcs, tcs.cssa
            entry.ssa_slot, entry.inside = ssa_slot, True
            return entry

    def eresume(self, tcs_addr: int) -> tuple[EntryState | None, Rip, int]:
        """ERESUME: restore SSA frame CSSA-1.

        Returns: the entry whose context that frame holds (None if unknown), the
        frame's RIP (an int or a callable the enclave put there) and the SSA slot
        of the restored frame. Raises: #GP (busy, CSSA 0, ...); #PF (TCS or SSA
        pages), as EENTER."""
        self.trace.emit(ENTRY, "ERESUME", tcs=tcs_addr)
        with self.lock:
            return self.eresume_locked(tcs_addr)

    def eresume_locked(self, tcs_addr: int) -> tuple[EntryState | None, Rip, int]:
        """ERESUME without its event; the caller holds the lock."""
        pte = self.mm.pte(tcs_addr >> PAGE_SHIFT)
        known = self.tcs.get(pte >> 3) if pte else None
        ssa_slot = -1
        if known is not None and known.linaddr == tcs_addr and not known.busy and known.cssa:
            tcs = known
            enc = self.enclaves[tcs.secs_slot]
            ssa_slot = self._resume_ready(enc, tcs, tcs.cssa - 1)
        if ssa_slot < 0:            # the checks in order, to raise the first that fails
            enc, tcs = self._tcs_operand(tcs_addr, "ERESUME")
            if tcs.cssa == 0:
                raise GeneralProtection(reason="ERESUME: TCS.CSSA is 0 (no frame to resume)")
            ssa_slot = self._ssa_slot(enc, tcs, tcs.cssa - 1, "ERESUME")
            if tcs.busy:
                raise GeneralProtection(reason=f"ERESUME: the TCS at {tcs_addr:#x} is busy")
        level = tcs.cssa - 1
        gpr = tcs.ssa_base + (level + 1) * tcs.frame_bytes - GPRSGX_SIZE
        rip: Rip | None = self.rip_overrides.pop(gpr, None) if self.rip_overrides else None
        if rip is None:
            ssa = self.epc.contents.get(ssa_slot)
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

    def eexit(self, entry: EntryState) -> None:
        """EEXIT. Returns: None. Raises: NotInsideEnclave."""
        with self.lock:
            trace = self.trace
            if trace.listening:
                trace.emit(ENTRY, "EEXIT", tcs=entry.tcs.linaddr)
            else:
                trace.unheard(_EEXIT)
            if not entry.inside:
                self._require_inside(entry)
            tcs = entry.tcs
            tcs.busy = False
            enc = entry.enclave
            if enc.track_waiting:
                self._leave(enc, tcs.slot)
            else:                       # `_leave` when no ETRACK waits: only this
                enc.inside.discard(tcs.slot)
            entry.inside = False

    # ------------------------------------------------------------ AEX
    def aex(self, entry: EntryState, fault: CpuFault) -> None:
        """Asynchronous exit: save the interrupted context in SSA frame CSSA."""
        vector = fault.vector
        with self.lock:
            self.aex_locked(entry, vector, fault.addr, fault.errcd)
        self.trace.emit(AEX, VECTOR_NAMES.get(vector, "other"), errcd=fault.errcd,
                        addr=fault.addr)

    def write_frame(self, tcs: TcsControl, enc: EnclaveControl, slot: int, vector: int,
                    addr: int = 0, errcd: int = 0) -> None:
        """What an AEX writes into SSA frame CSSA of `tcs`, whose last page is `slot`:
        GPRSGX.RIP, and GPRSGX.EXITINFO with VALID for an exception (`vector` >= 0;
        a #PF or #GP only when SECS.MISCSELECT.EXINFO selects reporting it, then
        with EXINFO {MADDR, ERRCD} too) or 0 for an interrupt (`vector` < 0). An
        override of that frame's RIP is dropped. The caller holds the lock."""
        page = self.epc.contents.get(slot)
        if page is None:
            page = self.epc.writable_page(slot)
        off = _GPR_OFFSET
        exinfo = enc.miscselect & MISC_EXINFO and vector in (VECTOR_PF, VECTOR_GP)
        reported = vector >= 0 and (exinfo or vector not in (VECTOR_PF, VECTOR_GP))
        _U32.pack_into(page, off + GPR_EXITINFO,
                       vector | EXITINFO_TYPE_HW | EXITINFO_VALID if reported else 0)
        _U64.pack_into(page, off + GPR_RIP, RIP_INTERRUPTED)
        if exinfo:
            _EXINFO.pack_into(page, off - EXINFO_SIZE, addr, errcd)
        if self.rip_overrides:
            self.rip_overrides.pop(tcs.ssa_base + (tcs.cssa + 1) * tcs.frame_bytes - GPRSGX_SIZE,
                                   None)

    def interrupt(self, enc: EnclaveControl) -> int:
        """An interrupt (the kernel's IPI) reaching every logical processor inside the
        enclave: each takes an AEX (its SSA frame CSSA gets RIP and EXITINFO with
        VALID = 0: interrupts are not reported) and its AEP ERESUMEs at once. Leaving
        the enclave for that moment counts for tracking. Returns: how many were
        interrupted. The caller holds the lock."""
        inside = sorted(enc.inside)
        for tcs_slot in inside:
            tcs = self.tcs[tcs_slot]
            slot = self._frame_ready(enc, tcs, tcs.cssa)
            if slot < 0:           # a multi-page frame: its GPRSGX page
                gpr_page = tcs.ssa_base + (tcs.cssa + 1) * tcs.frame_bytes - PAGE_SIZE
                slot = self.mm.pte(gpr_page >> PAGE_SHIFT) >> 3
            self.write_frame(tcs, enc, slot, _INTERRUPT)
            self._leave(enc, tcs_slot)
            enc.inside.add(tcs_slot)
        return len(inside)

    def aex_locked(self, entry: EntryState, vector: int, addr: int, errcd: int) -> None:
        """AEX without its event, for a fault (vector, full address, error code); the
        caller holds the lock."""
        tcs = entry.tcs
        enc = entry.enclave
        self.write_frame(tcs, enc, entry.ssa_slot, vector, addr, errcd)
        tcs.frames[tcs.cssa] = entry
        tcs.cssa += 1
        tcs.busy = False
        enc.inside.discard(tcs.slot)
        if enc.track_waiting:
            self._leave(enc, tcs.slot)
        entry.inside = False

    def aex_eresume_locked(self, entry: EntryState, vector: int, addr: int,
                           errcd: int) -> Rip | None:
        """An AEX on `entry` for this fault whose AEP at once ERESUMEs the same TCS (the
        kernel fixed the fault): the state the two leaves leave, composed, for the
        usual case where ERESUME's readiness checks pass (the TCS as entered, a
        one-page SSA frame, both mapped and valid); returns the restored frame's
        RIP. The AEX changes nothing those checks read except BUSY and CSSA, which
        it leaves passing, so they are evaluated first. Otherwise only the AEX
        happens and None is returned: the caller runs `eresume_locked`, with its
        faults. The caller holds the lock; no events."""
        tcs = entry.tcs
        enc = entry.enclave
        level = tcs.cssa
        slot = self._resume_ready(enc, tcs, level) if self.tcs.get(tcs.slot) is tcs else -1
        if slot < 0:
            self.aex_locked(entry, vector, addr, errcd)
            return None
        written = entry.ssa_slot
        self.write_frame(tcs, enc, written, vector, addr, errcd)
        # AEX then ERESUME of that frame: CSSA, BUSY and the frame's owner come back as
        # they were; leaving the enclave for a moment still counts for tracking
        if tcs.frames:
            tcs.frames.pop(level, None)
        tcs.busy = True
        if enc.track_waiting:
            self._leave(enc, tcs.slot)
        enc.inside.add(tcs.slot)
        entry.inside = True
        entry.ssa_slot = slot
        if slot == written:
            return RIP_INTERRUPTED
        gpr = tcs.ssa_base + (level + 1) * PAGE_SIZE - GPRSGX_SIZE
        other = self.epc.contents.get(slot)
        return (_U64.unpack_from(other, (gpr & (PAGE_SIZE - 1)) + GPR_RIP)[0]
                if other is not None else 0)

    def exinfo_writer(self, entry: EntryState, vector: int) -> Callable[[int, int], None]:
        """What is left of `aex_eresume_locked(entry, vector, addr, errcd)` for a next
        fault in the same hold of the lock, once a call for this `vector` returned
        RIP_INTERRUPTED (its readiness checks passed and the AEX wrote the frame
        ERESUME restored). Those checks read the TCS and SSA frame pages' PTEs and
        EPCM entries, the TCS control and the enclave, which a commit does not
        change: it EAUGs into a free EPC slot and maps a page that had no PTE, so
        neither is the TCS or the frame, and EACCEPT only clears PENDING, MODIFIED
        and PR. So they pass again; the composed AEX + ERESUME leaves CSSA, BUSY,
        the frame's owner, the entry and tracking as they are (this TCS left the
        tracking cycle the first time); and the frame write puts the same EXITINFO
        and RIP into the same page. Only EXINFO differs: returns the function that
        writes it, `(addr, errcd)`, which does nothing when MISCSELECT.EXINFO does
        not report this vector (nothing changes at all). Valid while the caller
        holds the lock and does nothing but commits."""
        if not (entry.enclave.miscselect & MISC_EXINFO and vector in (VECTOR_PF, VECTOR_GP)):
            return _unreported
        tcs = entry.tcs
        gpr = tcs.ssa_base + (tcs.cssa + 1) * tcs.frame_bytes - GPRSGX_SIZE
        page = self.epc.writable_page(entry.ssa_slot)
        return partial(_EXINFO.pack_into, page, (gpr & (PAGE_SIZE - 1)) - EXINFO_SIZE)


def _frame_spot(enc: EnclaveControl, tcs: TcsControl,
                level: int) -> tuple[int, int, int] | None:
    """(address, page-table chunk key, index in the chunk) of SSA frame `level` of
    `tcs` (a TCS of `enc`) if that frame is one page inside the enclave, else None:
    what `_frame_ready` checks first, kept per level in `TcsControl.frame_spots`."""
    frame = tcs.ssa_base + level * PAGE_SIZE
    if tcs.frame_bytes != PAGE_SIZE or not enc.base <= frame < enc.base + enc.size:
        return None
    page = frame >> PAGE_SHIFT
    return frame, page >> CHUNK_SHIFT, page & CHUNK_MASK


def _unreported(addr: int, errcd: int) -> None:
    """`exinfo_writer`'s answer when the frame gets no EXINFO: nothing to write."""

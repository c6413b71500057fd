"""The ENCLU leaves: what enclave code executes, and entry, exit and AEX.

EACCEPT, EACCEPTCOPY and EMODPE (the SGX2 leaves the manager issues) act on the
calling entry's enclave; EENTER, ERESUME and EEXIT move a logical processor in
and out; AEX saves the interrupted context into the SSA frame CSSA. Entries are
`EntryState`s (state.py): the CPU updates them, the enclave thread reads them.

AEX writes one frame through `write_frame`; the commit fast path (an AEX whose
AEP at once ERESUMEs, `aex_eresume_locked`) calls the same function and the same
readiness checks as ERESUME (`_tcs_ready`, `_frame_ready`), so nothing is written
twice. Model choices are in docs/platform-model.md.
"""

from __future__ import annotations

import struct

from sgx_emm.flags import PAGE_SHIFT, PAGE_SIZE
from sgx_emm.platform.epcm import (
    F_BLOCKED,
    F_MODIFIED,
    F_PENDING,
    F_PR,
    F_R,
    F_VALID,
    F_W,
    F_X,
)
from sgx_emm.platform.exceptions import CpuFault, GeneralProtection, PageFault
from sgx_emm.platform.processor import (
    BLOCKING,
    NOT_PRESENT,
    READ,
    RIP_INTERRUPTED,
    WRITE,
    Processor,
    Rip,
    describe_entry,
)
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
    PT_SECS,
    PT_TCS,
    PT_TRIM,
    PT_VA,
    SGX_NOT_TRACKED,
    SGX_PAGE_ATTRIBUTES_MISMATCH,
    SI_MODIFIED,
    SI_PENDING,
    SI_PR,
    SI_R,
    SI_RESERVED_MASK,
    SI_RWX,
    SI_W,
    VECTOR_GP,
    VECTOR_NAMES,
    VECTOR_PF,
    TcsImage,
    secinfo_pt,
)
from sgx_emm.platform.state import EnclaveControl, EntryState, TcsControl
from sgx_emm.trace import AEX, ENTRY, LEAF

_MATCH_MASK = SI_RWX | F_PENDING | F_MODIFIED
#: PT and state bits of an EACCEPT SECINFO, and the combinations that are legal
_ACCEPT_SHAPE = 0xFF00 | SI_PENDING | SI_MODIFIED | SI_PR
_LEGAL_ACCEPT = frozenset((
    (PT_REG << 8) | SI_PENDING, (PT_REG << 8) | SI_PR, (PT_REG << 8) | SI_PR | SI_PENDING,
    (PT_TCS << 8) | SI_MODIFIED, (PT_TRIM << 8) | SI_MODIFIED,
))
_SSA_OK = F_VALID | F_R | F_W
_EXINFO = struct.Struct("<QI")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def eaccept_not_present(target: int) -> PageFault:
    """The #PF of an EACCEPT whose target has no PTE (what the kernel EAUGs on)."""
    return PageFault(PF_U, target, f"EACCEPT: no page-table entry for {target:#x}")


class EncluLeaves(Processor):
    """EACCEPT, EACCEPTCOPY, EMODPE; EENTER, ERESUME, EEXIT; AEX."""

    # ------------------------------------------------------------ SGX2 leaves
    def eaccept(self, entry: EntryState, secinfo: int, target: int,
                secinfo_addr: int | None = None) -> int:
        """EACCEPT: the enclave accepts a change the OS made to `target`.

        Returns: 0, SGX_PAGE_ATTRIBUTES_MISMATCH (EPCM state, type or address do
        not match SECINFO), SGX_NOT_TRACKED (an EMODPR/EMODT whose tracking cycle
        has not completed). Raises: #UD (no SGX2); #GP (SECINFO reserved bits or an
        illegal combination, misaligned or outside target, a TCS image EACCEPT
        refuses); #PF (no PTE; EPCM entry not VALID, BLOCKED, another enclave's,
        SECS/VA); NotInsideEnclave."""
        with self.lock:
            self.trace.emit(LEAF, "EACCEPT", addr=target, secinfo=secinfo)
            ret = self.eaccept_locked(entry, secinfo, target, secinfo_addr)
            if ret == NOT_PRESENT:
                raise eaccept_not_present(target)
            return ret

    def eaccept_locked(self, entry: EntryState, secinfo: int, target: int,
                       secinfo_addr: int | None = None) -> int:
        """EACCEPT without its event; the caller holds the lock. A not-present target
        PTE gives NOT_PRESENT instead of raising, so the commit path (thread.py) can
        take the hardware path without an exception; every other fault raises."""
        if not self.sgx2:            # each check is tested inline, raised by its helper
            self._require_sgx2("EACCEPT")
        if not entry.inside:
            self._require_inside(entry)
        enc = entry.enclave
        if secinfo_addr is not None:
            self._check_secinfo_addr(enc, secinfo_addr, "EACCEPT")
            secinfo = self._secinfo(enc, secinfo, secinfo_addr, "EACCEPT")
        elif not 0 <= secinfo < 1 << 64 or secinfo & SI_RESERVED_MASK:
            raise GeneralProtection(
                reason=f"EACCEPT: SECINFO.FLAGS {secinfo:#x} sets reserved bits")
        if target & (PAGE_SIZE - 1) or not enc.base <= target < enc.base + enc.size:
            self._check_page_operand(enc, target, "EACCEPT")
        if secinfo & _ACCEPT_SHAPE not in _LEGAL_ACCEPT:
            raise GeneralProtection(
                reason=f"EACCEPT: SECINFO.FLAGS {secinfo:#x} is not a combination "
                       "EACCEPT accepts (REG|PENDING, REG|PR, TCS|MODIFIED, TRIM|MODIFIED)")
        pte = self.mm.pte(target >> PAGE_SHIFT)
        if not pte:
            return NOT_PRESENT
        slot = pte >> 3
        epc = self.epc
        f = epc.flags[slot]
        pt = epc.pt[slot]
        if (not f & F_VALID or f & F_BLOCKED or epc.owner[slot] != enc.secs_slot
                or pt in (PT_SECS, PT_VA)):
            raise PageFault(PFEC_LEAF, target,
                            f"EACCEPT: EPCM entry of {target:#x} cannot be accepted "
                            f"({describe_entry(epc, slot)})")
        if (epc.linaddr[slot] != target or (f & _MATCH_MASK) != (secinfo & _MATCH_MASK)
                or pt != (secinfo >> 8) & 0xFF):
            return SGX_PAGE_ATTRIBUTES_MISMATCH
        if secinfo & (SI_PR | SI_MODIFIED) and epc.epoch[slot] > enc.tracked:
            return SGX_NOT_TRACKED
        if pt == PT_TCS and not TcsImage.valid_for_accept(bytes(epc.page_bytes(slot))):
            raise GeneralProtection(
                reason=f"EACCEPT: the TCS image at {target:#x} is not acceptable "
                       "(reserved bytes, DBGOPTIN, STATE or AEP set, or CSSA >= NSSA)")
        epc.flags[slot] = f & ~(F_PENDING | F_MODIFIED | F_PR)
        return 0

    def eaccept_augmented_locked(self, entry: EntryState, secinfo: int, target: int,
                                 slot: int) -> int:
        """The EACCEPT that follows the kernel's EAUG of `slot` at `target` in the same
        locked pass (thread.py's commit path), after an `eaccept_locked` of the same
        operands met the not-present PTE. Every check before the EPCM part passed
        on operands nothing has changed since, and the entry is exactly what EAUG
        wrote (VALID R W PENDING, REG, address `target`, epoch 0), so only the
        owner and match checks are left; the result is what `eaccept_locked` gives.
        The caller holds the lock; no event."""
        if self.epc.owner[slot] != entry.enclave.secs_slot:
            raise PageFault(PFEC_LEAF, target,
                            f"EACCEPT: EPCM entry of {target:#x} cannot be accepted "
                            f"({describe_entry(self.epc, slot)})")
        if ((secinfo & _MATCH_MASK) != (F_R | F_W | F_PENDING)
                or (secinfo >> 8) & 0xFF != PT_REG):
            return SGX_PAGE_ATTRIBUTES_MISMATCH
        self.epc.flags[slot] = F_VALID | F_R | F_W
        return 0

    def eacceptcopy(self, entry: EntryState, secinfo: int, dest: int, src: int,
                    secinfo_addr: int | None = None) -> int:
        """EACCEPTCOPY: fill a PENDING page from `src` and give it SECINFO's
        permissions.

        Returns: 0, SGX_PAGE_ATTRIBUTES_MISMATCH (the destination is not a fresh
        PENDING RW REG page of this enclave at `dest`). Raises: #UD; #GP
        (alignment, outside the enclave, reserved bits, W without R, type not
        REG); #PF (PTEs; the source not an accepted readable REG page)."""
        with self.lock:
            self.trace.emit(LEAF, "EACCEPTCOPY", addr=dest, src=src, secinfo=secinfo)
            self._require_sgx2("EACCEPTCOPY")
            self._require_inside(entry)
            enc = entry.enclave
            self._check_secinfo_addr(enc, secinfo_addr, "EACCEPTCOPY")
            self._check_page_operand(enc, dest, "EACCEPTCOPY")
            self._check_page_operand(enc, src, "EACCEPTCOPY")
            secinfo = self._secinfo(enc, secinfo, secinfo_addr, "EACCEPTCOPY")
            if secinfo & SI_W and not secinfo & SI_R:
                raise GeneralProtection(reason="EACCEPTCOPY: SECINFO gives W without R")
            if secinfo_pt(secinfo) != PT_REG:
                raise GeneralProtection(reason="EACCEPTCOPY: SECINFO page type is not REG")
            src_slot = self._pte_slot(src, READ, "EACCEPTCOPY")
            if not self._accepted_reg(enc, src_slot, src, F_R):
                raise self._not_accepted_reg("EACCEPTCOPY", "source", src_slot, src)
            dst_slot = self._pte_slot(dest, WRITE, "EACCEPTCOPY")
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

    def emodpe(self, entry: EntryState, secinfo: int, target: int,
               secinfo_addr: int | None = None) -> int:
        """EMODPE: extend an accepted REG page's EPCM permissions.

        Returns: 0. Raises: #UD; #GP (alignment, outside, reserved bits, W without R
        on a page without R); #PF (no PTE; not an accepted REG page)."""
        with self.lock:
            self.trace.emit(LEAF, "EMODPE", addr=target, secinfo=secinfo)
            self._require_sgx2("EMODPE")
            self._require_inside(entry)
            enc = entry.enclave
            self._check_secinfo_addr(enc, secinfo_addr, "EMODPE")
            self._check_page_operand(enc, target, "EMODPE")
            secinfo = self._secinfo(enc, secinfo, secinfo_addr, "EMODPE")
            slot = self._pte_slot(target, READ, "EMODPE")
            epc = self.epc
            f = epc.flags[slot]
            if ((f & BLOCKING) != F_VALID or epc.pt[slot] != PT_REG
                    or epc.owner[slot] != enc.secs_slot or epc.linaddr[slot] != target):
                raise PageFault(PFEC_LEAF, target,
                                f"EMODPE: {target:#x} is not an accepted REG page of this "
                                f"enclave (EPCM: {describe_entry(epc, slot)})")
            if not f & F_R and secinfo & SI_W and not secinfo & SI_R:
                raise GeneralProtection(reason="EMODPE: SECINFO gives W without R")
            epc.flags[slot] = f | (secinfo & SI_RWX)
            return 0

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
            tcs = TcsControl(slot, tcs_addr, enc.secs_slot, image.ossa, image.nssa, image.cssa,
                             ssa_base=enc.base + image.ossa,
                             frame_bytes=enc.ssa_frame_size * PAGE_SIZE)
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
        pte = self.mm.pte
        tcs_pte = pte(tcs.linaddr >> PAGE_SHIFT)
        slot = tcs_pte >> 3
        if not (tcs_pte and slot == tcs.slot and (epc.flags[slot] & BLOCKING) == F_VALID
                and epc.pt[slot] == PT_TCS and epc.linaddr[slot] == tcs.linaddr
                and epc.owner[slot] == enc.secs_slot and enc.initialized):
            return -1
        return self._frame_ready(enc, tcs, level)

    def _frame_ready(self, enc: EnclaveControl, tcs: TcsControl, level: int) -> int:
        """The slot of SSA frame `level` if it is the usual one page, inside the
        enclave, mapped writable and an accepted RW REG page there; else -1."""
        frame = tcs.ssa_base + level * PAGE_SIZE
        if tcs.frame_bytes != PAGE_SIZE or not enc.base <= frame < enc.base + enc.size:
            return -1
        pte = self.mm.pte(frame >> PAGE_SHIFT)
        slot = pte >> 3
        epc = self.epc
        if (pte & PF_W and (epc.flags[slot] & (BLOCKING | F_R | F_W)) == _SSA_OK
                and epc.pt[slot] == PT_REG and epc.owner[slot] == enc.secs_slot
                and epc.linaddr[slot] == frame):
            return slot
        return -1

    def frame_addr(self, enc: EnclaveControl, tcs: TcsControl, level: int) -> int:
        """Linear address of SSA frame `level` of a TCS."""
        return enc.base + tcs.ossa + level * enc.ssa_frame_size * PAGE_SIZE

    def _ssa_slot(self, enc: EnclaveControl, tcs: TcsControl, level: int, leaf: str) -> int:
        """Check every page of SSA frame `level` (valid, accepted RW REG page) and
        return the slot of its last page, where GPRSGX and EXINFO live."""
        frame = tcs.ssa_base + level * tcs.frame_bytes
        end = frame + tcs.frame_bytes
        if frame < enc.base or end > enc.base + enc.size:
            raise GeneralProtection(
                reason=f"{leaf}: SSA frame {level} [{frame:#x}, {end:#x}) is outside the "
                       f"enclave (TCS.OSSA {tcs.ossa:#x})")
        ready = self._frame_ready(enc, tcs, level)
        if ready >= 0:
            return ready
        epc = self.epc
        slot = -1
        for addr in range(frame, end, PAGE_SIZE):
            pte = self.mm.pte(addr >> PAGE_SHIFT)
            if not pte:
                raise PageFault(PF_U | PF_W, addr,
                                f"{leaf}: no page-table entry for SSA frame {level} page "
                                f"{addr:#x}")
            if not pte & PF_W:
                raise PageFault(PF_U | PF_W | PF_P, addr,
                                f"{leaf}: the page-table entry of SSA frame {level} page "
                                f"{addr:#x} is not writable")
            slot = pte >> 3
            if ((epc.flags[slot] & (BLOCKING | F_R | F_W)) != _SSA_OK
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
        Raises: #GP (TCS misaligned, enclave not initialized, TCS busy, CSSA >=
        NSSA, SSA frame outside the enclave); #PF (TCS or SSA pages unmapped or
        not valid)."""
        with self.lock:
            self.trace.emit(ENTRY, "EENTER", tcs=tcs_addr)
            enc, tcs = self._tcs_operand(tcs_addr, "EENTER")
            if tcs.busy:
                raise GeneralProtection(reason=f"EENTER: the TCS at {tcs_addr:#x} is busy")
            if tcs.cssa >= tcs.nssa:
                raise GeneralProtection(
                    reason=f"EENTER: TCS.NSSA ({tcs.nssa}) <= TCS.CSSA ({tcs.cssa})")
            ssa_slot = self._ssa_slot(enc, tcs, tcs.cssa, "EENTER")
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
            if tcs.busy:
                raise GeneralProtection(reason=f"ERESUME: the TCS at {tcs_addr:#x} is busy")
            if tcs.cssa == 0:
                raise GeneralProtection(reason="ERESUME: TCS.CSSA is 0 (no frame to resume)")
            ssa_slot = self._ssa_slot(enc, tcs, tcs.cssa - 1, "ERESUME")
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
            self.trace.emit(ENTRY, "EEXIT", tcs=entry.tcs.linaddr)
            self._require_inside(entry)
            tcs = entry.tcs
            tcs.busy = False
            self._leave(entry.enclave, tcs.slot)
            entry.inside = False

    # ------------------------------------------------------------ AEX
    def aex(self, entry: EntryState, fault: CpuFault) -> None:
        """Asynchronous exit: save the interrupted context in SSA frame CSSA."""
        vector = fault.vector
        with self.lock:
            self.aex_locked(entry, vector, fault.addr, fault.errcd)
        self.trace.emit(AEX, VECTOR_NAMES.get(vector, "other"), errcd=fault.errcd,
                        addr=fault.addr)

    def write_frame(self, entry: EntryState, vector: int, addr: int, errcd: int) -> None:
        """What AEX writes into the entry's current SSA frame: EXITINFO, RIP and (with
        MISCSELECT.EXINFO, for #PF and #GP) EXINFO; an override of that frame's RIP
        is dropped. The caller holds the lock."""
        tcs = entry.tcs
        gpr = tcs.ssa_base + (tcs.cssa + 1) * tcs.frame_bytes - GPRSGX_SIZE
        slot = entry.ssa_slot
        page = self.epc.contents.get(slot)
        if page is None:
            page = self.epc.writable_page(slot)
        off = gpr & (PAGE_SIZE - 1)
        _U32.pack_into(page, off + GPR_EXITINFO, vector | EXITINFO_TYPE_HW | EXITINFO_VALID)
        _U64.pack_into(page, off + GPR_RIP, RIP_INTERRUPTED)
        if entry.enclave.miscselect & MISC_EXINFO and vector in (VECTOR_PF, VECTOR_GP):
            _EXINFO.pack_into(page, off - EXINFO_SIZE, addr, errcd)
        if self.rip_overrides:
            self.rip_overrides.pop(gpr, None)

    def aex_locked(self, entry: EntryState, vector: int, addr: int, errcd: int) -> None:
        """AEX without its event, for a fault (vector, full address, error code); the
        caller holds the lock."""
        self.write_frame(entry, vector, addr, errcd)
        tcs = entry.tcs
        enc = entry.enclave
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
        self.write_frame(entry, vector, addr, errcd)
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


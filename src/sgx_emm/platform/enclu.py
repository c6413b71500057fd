"""The SGX2 ENCLU leaves enclave code executes: EACCEPT, EACCEPTCOPY, EMODPE.

They act on the calling entry's enclave (an `EntryState`, state.py). Each leaf
checks its operands in the SDM's order: alignment and ELRANGE (#GP), the page
walks of the operands (#PF), the SECINFO fields (#GP), then the EPCM (#PF or an
SGX return code). Entering and leaving (EENTER, ERESUME, EEXIT, AEX) are in
entry.py. Model choices are in docs/platform-model.md.
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
from sgx_emm.platform.exceptions import GeneralProtection, PageFault
from sgx_emm.platform.mmu import CHUNK_MASK, CHUNK_SHIFT
from sgx_emm.platform.processor import (
    BLOCKING,
    NOT_PRESENT,
    READ,
    WRITE,
    Processor,
    describe_entry,
)
from sgx_emm.platform.secinfo import (
    PF_U,
    PFEC_LEAF,
    PT_REG,
    PT_TCS,
    PT_TRIM,
    SGX_NOT_TRACKED,
    SGX_PAGE_ATTRIBUTES_MISMATCH,
    SI_MODIFIED,
    SI_PENDING,
    SI_PR,
    SI_R,
    SI_RESERVED_MASK,
    SI_RWX,
    SI_W,
    TcsImage,
    secinfo_pt,
)
from sgx_emm.platform.state import EntryState
from sgx_emm.trace import LEAF

_MATCH_MASK = SI_RWX | F_PENDING | F_MODIFIED
#: PT and state bits of an EACCEPT SECINFO, and the combinations that are legal
_ACCEPT_SHAPE = 0xFF00 | SI_PENDING | SI_MODIFIED | SI_PR
_LEGAL_ACCEPT = frozenset((
    (PT_REG << 8) | SI_PENDING, (PT_REG << 8) | SI_PR, (PT_REG << 8) | SI_PR | SI_PENDING,
    (PT_TCS << 8) | SI_MODIFIED, (PT_TRIM << 8) | SI_MODIFIED,
))
_SSA_OK = F_VALID | F_R | F_W
# masks of the hot checks, computed once
_PAGE_MASK = PAGE_SIZE - 1
_VALID_BLOCKED = F_VALID | F_BLOCKED
#: the SECINFO states whose EACCEPT needs the page's tracking cycle completed
_TRACKED_CHANGE = SI_PR | SI_MODIFIED
#: what EACCEPT leaves of the EPCM flags: all but PENDING, MODIFIED and PR
_ACCEPTED = ~(F_PENDING | F_MODIFIED | F_PR)
#: the EPCM page types EACCEPT works on; any other is #PF
_ACCEPTABLE_PT = frozenset((PT_REG, PT_TCS, PT_TRIM))
#: TCS.FLAGS bits that are not reserved: DBGOPTIN (bit 0) and AEXNOTIFY (bit 1)
_TCS_FLAGS_DEFINED = 0x3
_EXINFO = struct.Struct("<QI")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


#: EACCEPT's SECINFO checks (no reserved bit, a legal combination) as the set of
#: every SECINFO.FLAGS value that passes them, 40 of them: the check is one lookup
#: (and an int test, as an equal float is in the set too)
_ACCEPT_OK = frozenset(shape | rwx for shape in _LEGAL_ACCEPT for rwx in range(SI_RWX + 1))


def _bad_accept_secinfo(secinfo: int) -> GeneralProtection:
    if not 0 <= secinfo < 1 << 64 or secinfo & SI_RESERVED_MASK:
        return GeneralProtection(
            reason=f"EACCEPT: SECINFO.FLAGS {secinfo:#x} sets reserved bits")
    return GeneralProtection(
        reason=f"EACCEPT: SECINFO.FLAGS {secinfo:#x} is not a combination EACCEPT "
               "accepts (REG|PENDING, REG|PR, TCS|MODIFIED, TRIM|MODIFIED)")


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
        has not completed). Raises: #GP (no SGX2; SECINFO reserved bits or an
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
        reserved_clear = True
        if secinfo_addr is not None:        # RBX: aligned, inside, walked
            self._check_secinfo_addr(enc, secinfo_addr, "EACCEPT")
            secinfo, reserved_clear = self._read_secinfo(enc, secinfo_addr, "EACCEPT")
        if target & _PAGE_MASK or not enc.base <= target < enc.base + enc.size:
            self._check_page_operand(enc, target, "EACCEPT")
        page = target >> PAGE_SHIFT                 # RCX's walk before SECINFO's #GPs
        chunk = self.mm.chunks.get(page >> CHUNK_SHIFT)     # `mm.pte`, inline
        pte = chunk[page & CHUNK_MASK] if chunk is not None else 0
        if not pte:
            return NOT_PRESENT
        if not reserved_clear:
            raise GeneralProtection(
                reason=f"EACCEPT: reserved bytes of the SECINFO at {secinfo_addr:#x} "
                       "are not zero")
        if secinfo not in _ACCEPT_OK or not isinstance(secinfo, int):
            raise _bad_accept_secinfo(secinfo)
        slot = pte >> 3
        epc = self.epc
        f = epc.flags[slot]
        pt = epc.pt[slot]
        if (f & _VALID_BLOCKED != F_VALID or epc.owner[slot] != enc.secs_slot
                or pt not in _ACCEPTABLE_PT):
            raise PageFault(PFEC_LEAF, target,
                            f"EACCEPT: EPCM entry of {target:#x} cannot be accepted "
                            f"({describe_entry(epc, slot)})")
        if (epc.linaddr[slot] != target or (f & _MATCH_MASK) != (secinfo & _MATCH_MASK)
                or pt != (secinfo >> 8) & 0xFF):
            return SGX_PAGE_ATTRIBUTES_MISMATCH
        if secinfo & _TRACKED_CHANGE and epc.epoch[slot] > enc.tracked:
            return SGX_NOT_TRACKED
        if pt == PT_TCS and not TcsImage.valid_for_accept(bytes(epc.page_bytes(slot))):
            raise GeneralProtection(
                reason=f"EACCEPT: the TCS image at {target:#x} is not acceptable "
                       "(reserved bytes, DBGOPTIN, STATE or AEP set, or CSSA >= NSSA)")
        epc.flags[slot] = f & _ACCEPTED
        return 0

    def eaccept_augmented_locked(self, entry: EntryState, secinfo: int, target: int,
                                 slot: int) -> int:
        """The EACCEPT that follows the kernel's EAUG of `slot` at `target` in the same
        locked pass (thread.py's commit path), after an `eaccept_locked` of the same
        operands met the not-present PTE. Every check before the EPCM part passed
        on operands nothing has changed since, and the entry is exactly what EAUG
        wrote (VALID R W PENDING, REG, address `target`, epoch 0), so only the
        SECINFO, owner and match checks are left; the result is what
        `eaccept_locked` gives. The caller holds the lock; no event."""
        if secinfo not in _ACCEPT_OK or not isinstance(secinfo, int):
            raise _bad_accept_secinfo(secinfo)
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
        PENDING RW REG page of this enclave at `dest`). Raises: #GP (no SGX2;
        alignment, outside the enclave, reserved bits, W without R, type not
        REG); #PF (PTEs; the source not an accepted readable REG page)."""
        with self.lock:
            self.trace.emit(LEAF, "EACCEPTCOPY", addr=dest, src=src, secinfo=secinfo)
            self._require_sgx2("EACCEPTCOPY")
            self._require_inside(entry)
            enc = entry.enclave
            self._check_secinfo_addr(enc, secinfo_addr, "EACCEPTCOPY")
            self._check_page_operand(enc, dest, "EACCEPTCOPY")
            self._check_page_operand(enc, src, "EACCEPTCOPY")
            # the page walks: RBX (SECINFO), RCX (destination), RDX (source)
            reserved_clear = True
            if secinfo_addr is not None:
                secinfo, reserved_clear = self._read_secinfo(enc, secinfo_addr, "EACCEPTCOPY")
            dst_slot = self._pte_slot(dest, WRITE, "EACCEPTCOPY")
            src_slot = self._pte_slot(src, READ, "EACCEPTCOPY")
            secinfo = self._checked_flags(secinfo, reserved_clear, secinfo_addr, "EACCEPTCOPY")
            if secinfo & SI_W and not secinfo & SI_R:
                raise GeneralProtection(reason="EACCEPTCOPY: SECINFO gives W without R")
            if secinfo_pt(secinfo) != PT_REG:
                raise GeneralProtection(reason="EACCEPTCOPY: SECINFO page type is not REG")
            if not self._accepted_reg(enc, src_slot, src, F_R):
                raise self._not_accepted_reg("EACCEPTCOPY", "source", src_slot, src)
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

        Returns: 0. Raises: #GP (no SGX2; alignment, outside, reserved bits, W without R
        on a page without R); #PF (no PTE; not an accepted REG page)."""
        with self.lock:
            self.trace.emit(LEAF, "EMODPE", addr=target, secinfo=secinfo)
            self._require_sgx2("EMODPE")
            self._require_inside(entry)
            enc = entry.enclave
            self._check_secinfo_addr(enc, secinfo_addr, "EMODPE")
            self._check_page_operand(enc, target, "EMODPE")
            reserved_clear = True
            if secinfo_addr is not None:    # the page walks: RBX, then RCX
                secinfo, reserved_clear = self._read_secinfo(enc, secinfo_addr, "EMODPE")
            slot = self._pte_slot(target, READ, "EMODPE")
            secinfo = self._checked_flags(secinfo, reserved_clear, secinfo_addr, "EMODPE")
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

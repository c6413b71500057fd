"""The ENCLS leaves: what the kernel executes on EPC pages (SDM Vol 3D, ch. 38/39).

ECREATE, EADD, EINIT build an enclave; EAUG, EMODPR, EMODT, EREMOVE and ETRACK
are the SGX2 dynamic-memory leaves the driver issues; EWB and ELDU page out and
back in. Page operands are physical addresses (`Epc.paddr(slot)`), as RCX is.
Each leaf runs its checks in the SDM's order; the first that fails wins, with the
fault (and a `reason` naming it) or the SGX return code the hardware gives.

Tracking follows an epoch model: EMODPR/EMODT stamp the page with the enclave's
current epoch; a cycle started by ETRACK completes when every logical processor
that was inside at that ETRACK has left (EEXIT or AEX).
"""

from __future__ import annotations

from sgx_emm.flags import PAGE_SIZE
from sgx_emm.platform.epcm import F_MODIFIED, F_PENDING, F_PR, F_R, F_VALID, F_W
from sgx_emm.platform.exceptions import GeneralProtection, PageFault
from sgx_emm.platform.processor import NOT_REG, Processor, describe_entry, pt_name
from sgx_emm.platform.secinfo import (
    MISC_EXINFO,
    PFEC_ENCLS,
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
    SGX_PAGE_NOT_MODIFIABLE,
    SGX_PREV_TRK_INCMPL,
    SI_R,
    SI_RWX,
    SI_W,
    TCS_RESERVED_FROM,
    SecsImage,
    secinfo_pt,
    secinfo_reserved_ok,
)
from sgx_emm.platform.state import EnclaveControl
from sgx_emm.trace import AEX, LEAF

#: TCS fields EADD clears: FLAGS.DBGOPTIN (byte 8, bit 0), CSSA (u32 at 24), AEP
#: (u64 at 40) and STATE (u64 at 0)
_TCS_CLEARED = ((0, 8), (24, 4), (40, 8))


def _added_tcs(contents: bytes | None) -> bytes | None:
    """The TCS image as EADD stores it: reserved area (bytes 72..4095) must be zero
    (#GP otherwise); DBGOPTIN, CSSA, AEP and STATE are cleared."""
    if contents is None:
        return None
    if any(contents[TCS_RESERVED_FROM:]):
        raise GeneralProtection(reason="EADD: the TCS reserved area is not zero")
    page = bytearray(contents)
    for off, size in _TCS_CLEARED:
        page[off:off + size] = bytes(size)
    page[8] &= 0xFE
    return bytes(page)


#: a page PENDING or MODIFIED has a change the enclave has not accepted yet:
#: EMODPR and EMODT refuse it (SGX_PAGE_NOT_MODIFIABLE)
_UNSETTLED = F_PENDING | F_MODIFIED
#: the EPCM flags EMODT keeps (it clears RWX and PR) and EMODPR keeps (not RWX)
_EMODT_KEEPS = ~(SI_RWX | F_PR)
_EMODPR_KEEPS = ~SI_RWX

class EnclsLeaves(Processor):
    """ECREATE ... ETRACK (the paging leaves, EPA ... ELDU, are in sealing.py)."""
    def _free_target(self, epc_page: int, leaf: str) -> int:
        """The page a leaf installs into: an EPC page (#GP) that is free (#PF)."""
        slot = self._epc_operand(epc_page, leaf)
        if self.epc.flags[slot] & F_VALID:
            raise PageFault(PFEC_ENCLS, epc_page,
                            f"{leaf}: EPC page {epc_page:#x} is already VALID "
                            f"({describe_entry(self.epc, slot)})")
        return slot

    # ------------------------------------------------------------ building
    def ecreate(self, secs: SecsImage, epc_page: int) -> None:
        """ECREATE: make `epc_page` the SECS of a new enclave.

        Returns: None. Raises: #GP (operand not an EPC page; SECS fields: size not a
        power of two >= 2 pages, base not size-aligned, SSA frame size 0,
        MISCSELECT bits the CPU does not support); #PF (the page is VALID)."""
        with self.lock:
            self.trace.emit(LEAF, "ECREATE", base=secs.base, size=secs.size)
            slot = self._free_target(epc_page, "ECREATE")
            size, base = secs.size, secs.base
            bad = (f"SECS.SIZE {size:#x} is not a power of two of at least two pages"
                   if size < 2 * PAGE_SIZE or size & (size - 1) else
                   f"SECS.BASEADDR {base:#x} is not aligned to SECS.SIZE {size:#x}"
                   if base % size or base < 0 or base + size > 1 << 64 else
                   "SECS.SSAFRAMESIZE is 0" if secs.ssa_frame_size < 1 else
                   f"SECS.MISCSELECT {secs.miscselect:#x} selects unsupported bits"
                   if secs.miscselect & ~MISC_EXINFO else "")
            if bad:
                raise GeneralProtection(reason=f"ECREATE: {bad}")
            self.epc.install(slot, F_VALID, PT_SECS, slot, 0)
            self.enclaves[slot] = EnclaveControl(slot, base, size, secs.ssa_frame_size,
                                                 secs.miscselect, secs.attributes)

    def eadd(self, linaddr: int, secinfo: int, contents: bytes | None, secs_page: int,
             epc_page: int) -> None:
        """EADD one page before EINIT: contents are 4096 bytes (None = zeros). A TCS
        is added with DBGOPTIN, CSSA, AEP and STATE cleared, as the CPU does.

        Returns: None. Raises, in the SDM's order: #GP (misaligned address);
        #GP/#PF (the target is not an EPC page); #GP (SECINFO: reserved bits, a type
        other than REG/TCS); #PF (the target page is VALID); #GP (a REG page with W
        without R); #PF (not a SECS); #GP (enclave initialized, address outside
        ELRANGE, a TCS whose reserved area is not zero)."""
        with self.lock:
            self.trace.emit(LEAF, "EADD", addr=linaddr, secinfo=secinfo)
            if linaddr % PAGE_SIZE or (contents is not None and len(contents) != PAGE_SIZE):
                raise GeneralProtection(reason=f"EADD: {linaddr:#x} is not page aligned")
            slot = self._epc_operand(epc_page, "EADD")
            if not secinfo_reserved_ok(secinfo):
                raise GeneralProtection(
                    reason=f"EADD: SECINFO.FLAGS {secinfo:#x} sets reserved bits")
            pt = secinfo_pt(secinfo)
            if pt not in (PT_REG, PT_TCS):
                raise GeneralProtection(
                    reason=f"EADD: page type {pt_name(pt)} is neither REG nor TCS")
            slot = self._free_target(epc_page, "EADD")
            if pt == PT_REG and secinfo & SI_W and not secinfo & SI_R:
                raise GeneralProtection(reason="EADD: SECINFO gives a REG page W without R")
            enc = self._secs_operand(secs_page, "EADD")
            if enc.initialized:
                raise GeneralProtection(reason="EADD: the enclave is already initialized")
            if not enc.contains(linaddr, PAGE_SIZE):
                raise GeneralProtection(
                    reason=f"EADD: {linaddr:#x} is outside ELRANGE "
                           f"[{enc.base:#x}, {enc.end:#x})")
            if pt == PT_TCS:
                contents = _added_tcs(contents)
            self.epc.install(slot, F_VALID | (0 if pt == PT_TCS else secinfo & SI_RWX), pt,
                             enc.secs_slot, linaddr, 0, contents)
            enc.children += 1

    def einit(self, secs_page: int) -> None:
        """EINIT (no signature checks in the model).

        Returns: None. Raises: #GP (not a SECS; already initialized)."""
        with self.lock:
            self.trace.emit(LEAF, "EINIT")
            enc = self._secs_operand(secs_page, "EINIT")
            if enc.initialized:
                raise GeneralProtection(reason="EINIT: the enclave is already initialized")
            enc.initialized = True

    # ------------------------------------------------------------ SGX2
    def eaug(self, linaddr: int, secs_page: int, epc_page: int) -> None:
        """EAUG: add a PENDING RW REG page at `linaddr` to an initialized enclave.

        Returns: None. Raises: #GP (no SGX2: an unsupported leaf; misaligned
        operands; enclave not initialized; address outside ELRANGE); #PF (an
        operand that is not an EPC page or not a SECS; the target page is VALID)."""
        self.trace.emit(LEAF, "EAUG", addr=linaddr)
        with self.lock:
            self.eaug_locked(linaddr, secs_page, epc_page)

    def eaug_locked(self, linaddr: int, secs_page: int, epc_page: int) -> None:
        """EAUG without its event; the caller holds the lock."""
        self._require_sgx2("EAUG")
        if linaddr & (PAGE_SIZE - 1):
            raise GeneralProtection(reason=f"EAUG: {linaddr:#x} is not page aligned")
        slot = self._epc_operand(epc_page, "EAUG")
        if self.epc.flags[slot] & F_VALID:
            raise PageFault(PFEC_ENCLS, epc_page,
                            f"EAUG: EPC page {epc_page:#x} is already VALID")
        self.eaug_slot(linaddr, self._secs_operand(secs_page, "EAUG"), slot)

    def eaug_slot(self, linaddr: int, enc: EnclaveControl, slot: int) -> None:
        """The checks and work of EAUG once its operands are translated (`slot` an EPC
        slot, `enc` the SECS's enclave): the one place a page is EAUGed. The
        driver's quiet path (encl.py `eaug_page`) calls it with slots it owns; the
        caller holds the lock. Raises: as `eaug`."""
        epc = self.epc
        if not self.sgx2:
            self._require_sgx2("EAUG")
        if linaddr & (PAGE_SIZE - 1):
            raise GeneralProtection(reason=f"EAUG: {linaddr:#x} is not page aligned")
        if epc.flags[slot] & F_VALID:
            raise PageFault(PFEC_ENCLS, epc.paddr(slot),
                            f"EAUG: EPC page {epc.paddr(slot):#x} is already VALID")
        if not enc.initialized:
            raise GeneralProtection(reason="EAUG: the enclave is not initialized")
        if not enc.base <= linaddr < enc.base + enc.size:
            raise GeneralProtection(
                reason=f"EAUG: {linaddr:#x} is outside ELRANGE [{enc.base:#x}, {enc.end:#x})")
        epc.install(slot, F_VALID | F_R | F_W | F_PENDING, PT_REG, enc.secs_slot, linaddr)
        enc.children += 1

    def emodpr(self, secinfo: int, epc_page: int) -> int:
        """EMODPR: restrict a REG page's EPCM permissions to SECINFO's, set PR.

        Returns: 0, SGX_EPC_PAGE_CONFLICT, SGX_PAGE_NOT_MODIFIABLE (PENDING or
        MODIFIED page). Raises: #GP (no SGX2; reserved SECINFO bits, W
        without R, not an EPC page, enclave not initialized); #PF (not VALID, not
        REG)."""
        with self.lock:
            self.trace.emit(LEAF, "EMODPR", addr=self._page_of(epc_page), secinfo=secinfo)
            ret = self.emodpr_locked(secinfo, epc_page)
            if ret == NOT_REG:
                raise self.not_reg_fault("EMODPR", epc_page)
            return ret

    def emodpr_locked(self, secinfo: int, epc_page: int) -> int:
        """EMODPR's checks and effect without its event; the caller holds the lock.

        Returns what `emodpr` returns, or NOT_REG where `emodpr` raises the #PF of
        a page that is not REG (`not_reg_fault`): REMOVE_PAGES probes every page
        it frees with EMODPR and expects that #PF, and an exception per page
        would cost more than the leaf. Every other fault raises."""
        self.emodpr_secinfo(secinfo)
        return self.emodpr_page_locked(secinfo, self._epc_operand(epc_page, "EMODPR"))

    def emodpr_secinfo(self, secinfo: int) -> None:
        """EMODPR's checks before its page operand's: SGX2, then the SECINFO (#GP). A
        driver page loop, whose SECINFO is the same for every page, makes them once
        per batch, at its first EMODPR, before `emodpr_page_locked`."""
        if not self.sgx2:
            self._require_sgx2("EMODPR")
        if not secinfo_reserved_ok(secinfo):
            raise GeneralProtection(
                reason=f"EMODPR: SECINFO.FLAGS {secinfo:#x} sets reserved bits")
        if secinfo & SI_W and not secinfo & SI_R:
            raise GeneralProtection(reason="EMODPR: SECINFO gives W without R")

    def emodpr_page_locked(self, secinfo: int, slot: int) -> int:
        """EMODPR's checks and effect on the page in EPC `slot`, after
        `emodpr_secinfo(secinfo)` passed and the page operand resolved to `slot`
        (the EPC page of a driver record always does); returns as `emodpr_locked`.
        The caller holds the lock."""
        epc = self.epc
        f = epc.flags[slot]
        if not f & F_VALID:
            raise self._not_valid("EMODPR", slot)
        if self._conflicts and self._take_conflict(slot):
            return SGX_EPC_PAGE_CONFLICT
        if f & _UNSETTLED:
            return SGX_PAGE_NOT_MODIFIABLE
        if epc.pt[slot] != PT_REG:
            return NOT_REG
        enc = self.enclaves[epc.owner[slot]]
        if not enc.initialized:
            raise GeneralProtection(reason="EMODPR: the enclave is not initialized")
        epc.flags[slot] = (f & _EMODPR_KEEPS) | (f & secinfo & SI_RWX) | F_PR
        epc.epoch[slot] = enc.epoch
        return 0

    def not_reg_fault(self, leaf: str, epc_page: int) -> PageFault:
        """The #PF of EMODPR on a VALID page that is not REG (`emodpr_locked`'s NOT_REG)."""
        slot = self._epc_operand(epc_page, leaf)
        return PageFault(PFEC_ENCLS, epc_page,
                         f"{leaf}: page {epc_page:#x} is {pt_name(self.epc.pt[slot])}, "
                         "not REG")

    def emodt(self, secinfo: int, epc_page: int) -> int:
        """EMODT: change a page's type to TCS or TRIM, set MODIFIED, clear RWX.

        Returns: 0, SGX_EPC_PAGE_CONFLICT, SGX_PAGE_NOT_MODIFIABLE. Raises: #GP (no
        SGX2; reserved bits, target type not TCS/TRIM, not an EPC page,
        enclave not initialized); #PF (not VALID; a type change the leaf does not
        allow)."""
        with self.lock:
            self.trace.emit(LEAF, "EMODT", addr=self._page_of(epc_page), secinfo=secinfo)
            return self.emodt_locked(secinfo, epc_page)

    def emodt_locked(self, secinfo: int, epc_page: int) -> int:
        """EMODT's checks and effect without its event; the caller holds the lock
        (the driver's page loops call this for each page, counting the events)."""
        new_pt = self.emodt_secinfo(secinfo)
        return self.emodt_page_locked(new_pt, self._epc_operand(epc_page, "EMODT"))

    def emodt_secinfo(self, secinfo: int) -> int:
        """EMODT's checks before its page operand's: SGX2, then the SECINFO (#GP).
        Returns: the new page type. A driver page loop makes them once per batch, at
        its first EMODT, before `emodt_page_locked`."""
        if not self.sgx2:
            self._require_sgx2("EMODT")
        new_pt = secinfo_pt(secinfo)
        if not secinfo_reserved_ok(secinfo):
            raise GeneralProtection(
                reason=f"EMODT: SECINFO.FLAGS {secinfo:#x} sets reserved bits")
        if new_pt not in (PT_TCS, PT_TRIM):
            raise GeneralProtection(
                reason=f"EMODT: new type {pt_name(new_pt)} is neither TCS nor TRIM")
        return new_pt

    def emodt_page_locked(self, new_pt: int, slot: int) -> int:
        """EMODT's checks and effect on the page in EPC `slot`, after `emodt_secinfo`
        passed (giving `new_pt`) and the page operand resolved to `slot`; returns as
        `emodt_locked`. The caller holds the lock."""
        epc = self.epc
        f = epc.flags[slot]
        if not f & F_VALID:
            raise self._not_valid("EMODT", slot)
        if self._conflicts and self._take_conflict(slot):
            return SGX_EPC_PAGE_CONFLICT
        old_pt = epc.pt[slot]
        allowed = (old_pt == PT_REG or (old_pt == PT_TCS and new_pt == PT_TRIM)
                   or (old_pt in (PT_SS_FIRST, PT_SS_REST) and new_pt == PT_TRIM))
        if not allowed:
            raise PageFault(PFEC_ENCLS, epc.paddr(slot),
                            f"EMODT: {pt_name(old_pt)} page {epc.paddr(slot):#x} cannot "
                            f"become {pt_name(new_pt)}")
        if f & _UNSETTLED:
            return SGX_PAGE_NOT_MODIFIABLE
        enc = self.enclaves[epc.owner[slot]]
        if not enc.initialized:
            raise GeneralProtection(reason="EMODT: the enclave is not initialized")
        epc.flags[slot] = (f & _EMODT_KEEPS) | F_MODIFIED
        epc.pt[slot] = new_pt
        epc.epoch[slot] = enc.epoch
        if self.tcs:
            self.tcs.pop(slot, None)
        return 0

    def eremove(self, epc_page: int) -> int:
        """EREMOVE: free an EPC page (a SECS only once it has no children).

        Returns: 0 (also for a page that is not VALID), SGX_CHILD_PRESENT,
        SGX_ENCLAVE_ACT (a logical processor is inside the page's enclave).
        Raises: #GP (not an EPC page)."""
        with self.lock:
            self.trace.emit(LEAF, "EREMOVE", addr=self._page_of(epc_page))
            return self.eremove_locked(epc_page)

    def eremove_locked(self, epc_page: int) -> int:
        """EREMOVE's checks and effect without its event; the caller holds the lock."""
        return self.eremove_page_locked(self._epc_operand(epc_page, "EREMOVE"))

    def eremove_page_locked(self, slot: int) -> int:
        """EREMOVE of the page in EPC `slot` (its operand resolved there); returns as
        `eremove_locked`. The caller holds the lock."""
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

    def etrack(self, secs_page: int) -> int:
        """ETRACK: start a tracking cycle closing the enclave's current epoch.

        Returns: 0, SGX_PREV_TRK_INCMPL (the previous cycle has threads left).
        Raises: #GP (not a SECS)."""
        with self.lock:
            self.trace.emit(LEAF, "ETRACK")
            return self.etrack_locked(secs_page)

    def etrack_locked(self, secs_page: int) -> int:
        """ETRACK's checks and effect without its event; the caller holds the lock."""
        return self.etrack_enclave_locked(self._secs_operand(secs_page, "ETRACK"))

    def etrack_enclave_locked(self, enc: EnclaveControl) -> int:
        """ETRACK on the enclave its SECS operand resolved to (`secs_enclave`); returns
        as `etrack_locked`. The caller holds the lock."""
        if enc.track_waiting:
            return SGX_PREV_TRK_INCMPL
        enc.track_epoch = enc.epoch
        enc.epoch += 1
        if enc.inside:
            enc.track_waiting = set(enc.inside)
        else:                   # nobody to wait for (track_waiting is empty, see above)
            enc.tracked = enc.track_epoch
        return 0

    def secs_enclave(self, secs_page: int, leaf: str) -> EnclaveControl:
        """The enclave whose SECS is at `secs_page` (#GP/#PF as a SECS operand of
        `leaf`): a driver page loop resolves its SECS once per batch, under the lock
        that keeps it a SECS throughout, for `etrack_enclave_locked` and
        `ipi_enclave_locked`."""
        return self._secs_operand(secs_page, leaf)

    def ipi(self, secs_page: int) -> None:
        """Interrupt every logical processor inside the enclave (the kernel's IPIs after
        ETRACK): each takes an AEX and ERESUMEs, which completes the tracking cycle."""
        with self.lock:
            for _ in range(self.ipi_locked(secs_page)):
                self.trace.emit(AEX, "INTR")

    def ipi_locked(self, secs_page: int) -> int:
        """`ipi` without its events; the caller holds the lock. Returns: how many
        logical processors were interrupted (one AEX "INTR" event each)."""
        return self.ipi_enclave_locked(self._secs_operand(secs_page, "IPI"))

    def ipi_enclave_locked(self, enc: EnclaveControl) -> int:
        """`ipi_locked` on the enclave its SECS resolved to (`secs_enclave`)."""
        n = self.interrupt(enc) if enc.inside else 0
        if enc.track_waiting:
            enc.track_waiting.clear()
            enc.tracked = enc.track_epoch
        return n

"""What every part of the CPU model shares: its state and the operand checks.

`Processor` holds the CPU's view of the machine (the EPC and its EPCM, the page
tables it walks, the per-enclave and per-TCS control records of state.py) and the
checks several leaves make on their operands: an ENCLS page operand that must be
an EPC page, a SECS operand, the page-table half of an ENCLU operand access, and
the SECINFO an ENCLU leaf reads. encls.py, enclu.py and access.py add the leaves
and the data accesses; cpu.py puts them together.

Every check that fails raises a `CpuFault` whose `reason` names the check with
its values; the reasons are the model's explanation for users, not hardware state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from sgx_emm.flags import PAGE_SHIFT, PAGE_SIZE
from sgx_emm.platform.epcm import (
    EPC_BASE,
    F_BLOCKED,
    F_MODIFIED,
    F_PENDING,
    F_R,
    F_VALID,
    F_W,
    F_X,
    Epc,
)
from sgx_emm.platform.exceptions import GeneralProtection, NotInsideEnclave, PageFault
from sgx_emm.platform.mmu import AddressSpace
from sgx_emm.platform.secinfo import (
    PF_I,
    PF_P,
    PF_U,
    PF_W,
    PFEC_ENCLS,
    PFEC_LEAF,
    PT_NAMES,
    PT_REG,
    PT_SECS,
    SI_RESERVED_MASK,
    parse_secinfo,
)
from sgx_emm.platform.state import EnclaveControl, EntryState, TcsControl
from sgx_emm.trace import Trace

# access kinds, the PFEC bits of their #PF (U always set in enclave mode), the
# EPCM permission and the PTE bit each needs
READ = 0
WRITE = 1
FETCH = 2
KIND_NAMES = ("read", "write", "fetch")
KIND_PFEC = (PF_U, PF_U | PF_W, PF_U | PF_I)
KIND_EPCM = (F_R, F_W, F_X)
KIND_PTE = (0x1, 0x2, 0x4)
#: EPCM flags that must be exactly VALID for an ordinary access
BLOCKING = F_VALID | F_BLOCKED | F_PENDING | F_MODIFIED
#: the value AEX leaves in GPRSGX.RIP: the model has no code addresses
RIP_INTERRUPTED = 0x1
#: what `eaccept_locked` returns where the hardware takes the read #PF of a
#: not-present target PTE; never an SGX code
NOT_PRESENT = -1
#: what `emodpr_locked` returns where the hardware takes the #PF of a page that
#: is not REG; never an SGX code
NOT_REG = -2

Rip = int | Callable[[], object]


def epcm_perms(flags: int) -> str:
    """EPCM R/W/X bits as a short string ("RW", "-" for none)."""
    text = "".join(c for bit, c in ((F_R, "R"), (F_W, "W"), (F_X, "X")) if flags & bit)
    return text or "-"


def pt_name(pt: int) -> str:
    return PT_NAMES.get(pt, f"PT {pt}")


def describe_entry(epc: Epc, slot: int) -> str:
    """A one-line EPCM entry for reasons: "REG RW PENDING at 0x...". """
    f = epc.flags[slot]
    if not f & F_VALID:
        return "not VALID"
    states = [name for bit, name in ((F_PENDING, "PENDING"), (F_MODIFIED, "MODIFIED"),
                                     (F_BLOCKED, "BLOCKED")) if f & bit]
    return " ".join([pt_name(epc.pt[slot]), epcm_perms(f), *states,
                     f"at {epc.linaddr[slot]:#x}"])


class Processor:
    """The CPU's state and the operand checks its leaves share."""

    def __init__(self, epc: Epc, mm: AddressSpace, trace: Trace,
                 lock: threading.RLock, *, sgx2: bool = True) -> None:
        self.epc = epc
        self._epc_bytes = epc.npages << PAGE_SHIFT
        self.mm = mm
        self.trace = trace
        self.lock = lock
        self.sgx2 = sgx2
        self.enclaves: dict[int, EnclaveControl] = {}
        self.tcs: dict[int, TcsControl] = {}
        #: GPRSGX linear address -> callable the enclave wrote into SSA.RIP
        self.rip_overrides: dict[int, Callable[[], object]] = {}
        self._conflicts: set[int] = set()

    # ------------------------------------------------------------ ENCLS operands
    def _page_of(self, paddr: int) -> int | None:
        """The linear address of the EPC page at `paddr`, for the trace (None if none)."""
        slot = self.epc.slot_of(paddr)
        return self.epc.linaddr[slot] if slot is not None else None

    def _epc_operand(self, paddr: int, leaf: str) -> int:
        """An ENCLS page operand: page aligned (else #GP) and resolving within the
        EPC (else #PF, as the SDM's "does not resolve within an EPC")."""
        off = paddr - EPC_BASE
        if not off & (PAGE_SIZE - 1) and 0 <= off < self._epc_bytes:
            return off >> PAGE_SHIFT        # the usual case, without a call
        if paddr & (PAGE_SIZE - 1):
            raise GeneralProtection(reason=f"{leaf}: {paddr:#x} is not page aligned")
        slot = self.epc.slot_of(paddr)
        if slot is None:
            raise PageFault(PFEC_ENCLS, paddr,
                            f"{leaf}: {paddr:#x} does not resolve within the EPC")
        return slot

    def _secs_operand(self, paddr: int, leaf: str) -> EnclaveControl:
        """A SECS operand: an EPC page (#GP/#PF as `_epc_operand`) whose EPCM entry is
        a VALID SECS (else #PF)."""
        enc = self.enclaves.get((paddr - EPC_BASE) >> PAGE_SHIFT)
        if enc is None or paddr & (PAGE_SIZE - 1) or paddr < EPC_BASE:
            slot = self._epc_operand(paddr, leaf)
            raise PageFault(PFEC_ENCLS, paddr,
                            f"{leaf}: EPC page {paddr:#x} is not a SECS "
                            f"({describe_entry(self.epc, slot)})")
        return enc

    def _require_sgx2(self, leaf: str) -> None:
        """An SGX2 leaf number on a CPU without SGX2 is an unsupported leaf: #GP(0)."""
        if not self.sgx2:
            raise GeneralProtection(reason=f"{leaf}: SGX2 leaf on a CPU without SGX2")

    def _not_valid(self, leaf: str, slot: int) -> PageFault:
        """The #PF of an ENCLS page operand whose EPCM entry is not VALID."""
        paddr = self.epc.paddr(slot)
        return PageFault(PFEC_ENCLS, paddr,
                         f"{leaf}: EPCM entry of EPC page {paddr:#x} is not VALID")

    def inject_conflict(self, paddr: int) -> None:
        """Make the next EMODPR/EMODT on this page find it busy (SGX_EPC_PAGE_CONFLICT).

        Leaves are atomic in the model, so the conflict of two concurrent SGX2
        leaves on one page cannot arise by itself; this hook stands for it."""
        with self.lock:
            self._conflicts.add(self._epc_operand(paddr, "inject_conflict"))

    def _take_conflict(self, slot: int) -> bool:
        """Whether another SGX2 leaf holds the page (SGX_EPC_PAGE_CONFLICT), once."""
        if slot in self._conflicts:
            self._conflicts.discard(slot)
            return True
        return False

    def _free_page(self, enc: EnclaveControl | None, slot: int) -> None:
        if enc is not None and self.epc.pt[slot] != PT_SECS:
            enc.children -= 1
        self.tcs.pop(slot, None)
        self.epc.free(slot)

    def _leave(self, enc: EnclaveControl, tcs_slot: int) -> None:
        """A logical processor left the enclave: it no longer holds up tracking."""
        enc.inside.discard(tcs_slot)
        if tcs_slot in enc.track_waiting:
            enc.track_waiting.discard(tcs_slot)
            if not enc.track_waiting:
                enc.tracked = enc.track_epoch

    def interrupt(self, enc: EnclaveControl) -> int:
        """Interrupt every logical processor inside `enc` (enclu.py has the AEX).
        Returns: how many were interrupted."""
        raise NotImplementedError

    # ------------------------------------------------------------ ENCLU operands
    @staticmethod
    def _require_inside(entry: EntryState) -> None:
        if not entry.inside:
            raise NotInsideEnclave("this enclave thread is not inside the enclave")

    def _pte_slot(self, addr: int, kind: int, leaf: str) -> int:
        """Page-table half of a leaf operand access: the EPC slot the PTE maps."""
        pte = self.mm.pte(addr >> PAGE_SHIFT)
        if not pte:
            raise PageFault(KIND_PFEC[kind], addr,
                            f"{leaf}: no page-table entry for {addr:#x}")
        if not pte & KIND_PTE[kind]:
            raise PageFault(KIND_PFEC[kind] | PF_P, addr,
                            f"{leaf}: the page-table entry of {addr:#x} does not allow "
                            f"{KIND_NAMES[kind]}")
        return pte >> 3

    def _accepted_reg(self, enc: EnclaveControl, slot: int, addr: int, need: int) -> bool:
        epc = self.epc
        return ((epc.flags[slot] & (BLOCKING | need)) == (F_VALID | need)
                and epc.pt[slot] == PT_REG and epc.owner[slot] == enc.secs_slot
                and epc.linaddr[slot] == addr & ~(PAGE_SIZE - 1))

    def _not_accepted_reg(self, leaf: str, what: str, slot: int, addr: int) -> PageFault:
        return PageFault(PFEC_LEAF, addr,
                         f"{leaf}: {what} {addr:#x} is not an accepted readable REG page "
                         f"of this enclave (EPCM: {describe_entry(self.epc, slot)})")

    def _read_secinfo(self, enc: EnclaveControl, secinfo_addr: int,
                      leaf: str) -> tuple[int, bool]:
        """RBX of EACCEPT/EACCEPTCOPY/EMODPE when given as an address: the page must be
        a valid, readable, accepted REG page of this enclave, else #PF(RBX)."""
        slot = self._pte_slot(secinfo_addr, READ, leaf)
        if not self._accepted_reg(enc, slot, secinfo_addr, F_R):
            raise self._not_accepted_reg(leaf, "SECINFO at", slot, secinfo_addr)
        off = secinfo_addr & (PAGE_SIZE - 1)
        return parse_secinfo(bytes(self.epc.page_bytes(slot)[off:off + 64]))

    @staticmethod
    def _check_secinfo_addr(enc: EnclaveControl, secinfo_addr: int | None,
                            leaf: str) -> None:
        if secinfo_addr is None:
            return
        if secinfo_addr % 64:
            raise GeneralProtection(
                reason=f"{leaf}: SECINFO address {secinfo_addr:#x} is not 64-byte aligned")
        if not enc.contains(secinfo_addr, 64):
            raise GeneralProtection(
                reason=f"{leaf}: SECINFO address {secinfo_addr:#x} is outside the enclave")

    @staticmethod
    def _check_page_operand(enc: EnclaveControl, addr: int, leaf: str) -> None:
        if addr % PAGE_SIZE:
            raise GeneralProtection(reason=f"{leaf}: {addr:#x} is not page aligned")
        if not enc.contains(addr, PAGE_SIZE):
            raise GeneralProtection(
                reason=f"{leaf}: {addr:#x} is outside the enclave "
                       f"[{enc.base:#x}, {enc.end:#x})")

    @staticmethod
    def _checked_flags(secinfo: int, reserved_clear: bool, secinfo_addr: int | None,
                       leaf: str) -> int:
        """SECINFO's reserved-field checks, made after the operands' page walks:
        the reserved bytes of a SECINFO read from memory, then FLAGS' reserved bits
        (#GP). Returns: SECINFO.FLAGS."""
        if not reserved_clear:
            raise GeneralProtection(
                reason=f"{leaf}: reserved bytes of the SECINFO at {secinfo_addr:#x} "
                       "are not zero")
        if not 0 <= secinfo < 1 << 64 or secinfo & SI_RESERVED_MASK:
            raise GeneralProtection(
                reason=f"{leaf}: SECINFO.FLAGS {secinfo:#x} sets reserved bits")
        return secinfo

    # ------------------------------------------------------------ introspection
    def epcm_entry(self, paddr: int) -> dict[str, int | bool]:
        """The EPCM entry of an EPC page as named fields (tests, debugging)."""
        with self.lock:
            return self.epc.describe(self._epc_operand(paddr, "epcm_entry"))

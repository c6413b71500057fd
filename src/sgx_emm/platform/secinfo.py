"""Architectural constants and page images of SGX.

SECINFO flag bits, page types, SGX return codes, ENCLS/ENCLU leaf numbers, the
SECS and TCS images the loader hands to ECREATE/EADD, and the SSA frame layout
that AEX writes. Values are the hardware's; the in-memory layout of SECS is not
architectural here (the model never reads a SECS page from memory).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from sgx_emm.flags import PAGE_SIZE

# --- SECINFO.FLAGS bits (the low byte doubles as the EPCM flag byte in epcm.py) ---
SI_R = 0x1
SI_W = 0x2
SI_X = 0x4
SI_RWX = 0x7
SI_PENDING = 0x8
SI_MODIFIED = 0x10
SI_PR = 0x20
#: bits 7:6 and 63:16 of SECINFO.FLAGS are reserved
SI_RESERVED_MASK = 0xFFFF_FFFF_FFFF_00C0
SI_PT_SHIFT = 8

# --- page types (EPCM.PT, SECINFO.FLAGS bits 15:8) ---
PT_SECS = 0
PT_TCS = 1
PT_REG = 2
PT_VA = 3
PT_TRIM = 4
PT_SS_FIRST = 5
PT_SS_REST = 6
PT_NAMES = {PT_SECS: "SECS", PT_TCS: "TCS", PT_REG: "REG", PT_VA: "VA", PT_TRIM: "TRIM",
            PT_SS_FIRST: "SS_FIRST", PT_SS_REST: "SS_REST"}

# --- SGX return codes (RAX after a leaf that returns one) ---
SGX_SUCCESS = 0
SGX_EPC_PAGE_CONFLICT = 7
SGX_NOT_TRACKED = 11
SGX_CHILD_PRESENT = 13
SGX_ENCLAVE_ACT = 14
SGX_PREV_TRK_INCMPL = 17
SGX_PAGE_ATTRIBUTES_MISMATCH = 19
SGX_PAGE_NOT_MODIFIABLE = 20
SGX_CODE_NAMES = {
    SGX_SUCCESS: "SGX_SUCCESS", SGX_EPC_PAGE_CONFLICT: "SGX_EPC_PAGE_CONFLICT",
    SGX_NOT_TRACKED: "SGX_NOT_TRACKED", SGX_CHILD_PRESENT: "SGX_CHILD_PRESENT",
    SGX_ENCLAVE_ACT: "SGX_ENCLAVE_ACT", SGX_PREV_TRK_INCMPL: "SGX_PREV_TRK_INCMPL",
    SGX_PAGE_ATTRIBUTES_MISMATCH: "SGX_PAGE_ATTRIBUTES_MISMATCH",
    SGX_PAGE_NOT_MODIFIABLE: "SGX_PAGE_NOT_MODIFIABLE",
}

# --- ENCLU leaf numbers (the vDSO's `function` uses three of them) ---
EENTER = 2
ERESUME = 3
EEXIT = 4
EACCEPT = 5
EMODPE = 6
EACCEPTCOPY = 7

# --- exception vectors ---
VECTOR_UD = 6
VECTOR_GP = 13
VECTOR_PF = 14
VECTOR_NAMES = {VECTOR_UD: "#UD", VECTOR_GP: "#GP", VECTOR_PF: "#PF"}

# --- page-fault error code bits ---
PF_P = 0x1
PF_W = 0x2
PF_U = 0x4
PF_I = 0x10
PF_SGX = 0x8000
#: the #PF an ENCLS leaf raises for an EPC operand whose EPCM entry is wrong
PFEC_ENCLS = PF_SGX | PF_P                       # 0x8001
#: the #PF an ENCLU leaf raises for its own operand's EPCM entry (model choice,
#: see docs/platform-model.md), and for a written operand
PFEC_LEAF = PF_SGX | PF_U | PF_P                 # 0x8005
PFEC_LEAF_W = PFEC_LEAF | PF_W                   # 0x8007

# --- SECS.MISCSELECT ---
MISC_EXINFO = 0x1

# --- SSA frame layout: GPRSGX is the last 184 bytes of a frame ---
GPRSGX_SIZE = 184
GPR_RIP = 136
GPR_EXITINFO = 160
#: MISC.EXINFO {MADDR u64, ERRCD u32, reserved u32} sits just below GPRSGX
EXINFO_SIZE = 16
EXITINFO_VALID = 1 << 31
EXITINFO_TYPE_HW = 3 << 8


def secinfo_flags(prot: int, page_type: int, state: int = 0) -> int:
    """SECINFO.FLAGS from its parts (`page_type` is the bare PT value)."""
    return (prot & SI_RWX) | (state & (SI_PENDING | SI_MODIFIED | SI_PR)) | (
        page_type << SI_PT_SHIFT)


def secinfo_pt(flags: int) -> int:
    return (flags >> SI_PT_SHIFT) & 0xFF


def secinfo_reserved_ok(flags: int) -> bool:
    return 0 <= flags < 1 << 64 and not flags & SI_RESERVED_MASK


def parse_secinfo(image: bytes) -> tuple[int, bool]:
    """(FLAGS, reserved-bytes-clear) of a 64-byte SECINFO read from memory."""
    flags = int.from_bytes(image[:8], "little")
    return flags, not any(image[8:64])


@dataclass(frozen=True, slots=True)
class SecsImage:
    """What ECREATE takes from the SECS page the loader prepared."""

    base: int
    size: int
    ssa_frame_size: int = 1      # pages per SSA frame
    miscselect: int = MISC_EXINFO
    attributes: int = 0          # bit 1 DEBUG; not otherwise modelled


TCS_STRUCT = struct.Struct("<QQQIIQQQQII")
TCS_RESERVED_FROM = TCS_STRUCT.size  # 72


@dataclass(frozen=True, slots=True)
class TcsImage:
    """The architectural TCS fields (offsets as in the SDM, rest reserved = 0).

    What enclave code writes into a regular RW page before `modify_type(TCS)`
    (EACCEPT(TCS) checks it) and what EENTER reads: `ossa` is the offset of the
    SSA frames from the enclave base and `nssa` their number (at least 1, and 2
    for an exception to be handled inside: the dispatcher's nested entry uses the
    second); both frames must be committed RW pages inside the enclave, or EENTER
    faults. `oentry` is the entry point's offset, `ofsbase`/`ogsbase` the
    thread's TLS (offsets) and `fslimit`/`gslimit` its size minus one. `cssa`,
    `flags`, `state` and `aep` stay 0. `to_bytes()` gives the page;
    `Enclave.add_thread()` builds one this way (`sgx_emm.services.threads`).
    """

    ossa: int                 # SSA offset from the enclave base
    nssa: int = 1
    oentry: int = 0
    cssa: int = 0
    flags: int = 0            # bit 0 DBGOPTIN
    state: int = 0
    aep: int = 0
    ofsbase: int = 0
    ogsbase: int = 0
    fslimit: int = 0
    gslimit: int = 0

    def to_bytes(self) -> bytes:
        head = TCS_STRUCT.pack(self.state, self.flags, self.ossa, self.cssa, self.nssa,
                               self.oentry, self.aep, self.ofsbase, self.ogsbase,
                               self.fslimit, self.gslimit)
        return head + bytes(PAGE_SIZE - len(head))

    @classmethod
    def from_bytes(cls, page: bytes) -> TcsImage:
        (state, flags, ossa, cssa, nssa, oentry, aep, ofsbase, ogsbase, fslimit,
         gslimit) = TCS_STRUCT.unpack_from(page, 0)
        return cls(ossa=ossa, nssa=nssa, oentry=oentry, cssa=cssa, flags=flags,
                   state=state, aep=aep, ofsbase=ofsbase, ogsbase=ogsbase,
                   fslimit=fslimit, gslimit=gslimit)

    @staticmethod
    def valid_for_accept(page: bytes) -> bool:
        """The TCS checks of EACCEPT(TCS): reserved 0, DBGOPTIN 0, CSSA < NSSA, AEP 0,
        STATE 0."""
        tcs = TcsImage.from_bytes(page)
        return (not any(page[TCS_RESERVED_FROM:]) and tcs.flags == 0 and tcs.state == 0
                and tcs.aep == 0 and tcs.cssa < tcs.nssa)

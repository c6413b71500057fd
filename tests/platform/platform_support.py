"""A small enclave for unit tests: two TCS with NSSA 2, text, data, and mapped room
for EAUG pages (RW and RWX), built through the driver like the SDK loader does."""

from __future__ import annotations

from dataclasses import dataclass

from sgx_emm.platform import (
    MAP_FIXED,
    MAP_SHARED,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    EnclaveFd,
    Epc,
    Machine,
    SecsImage,
    TcsImage,
    secinfo_flags,
)
from sgx_emm.platform.secinfo import MISC_EXINFO, PT_REG, PT_TCS

PAGE = 0x1000
RW = PROT_READ | PROT_WRITE
RX = PROT_READ | PROT_EXEC
RWX = RW | PROT_EXEC
BASE = 0x7F00_0000_0000
SIZE = 0x100000
TCS1 = 0x0000
SSA1 = 0x1000      # 2 frames
TEXT = 0x3000
DATA = 0x4000      # 4 pages
TCS2 = 0x8000
SSA2 = 0x9000      # 2 frames
DYN = 0x10000      # RW mapping, no pages: EAUG on first touch
DYN_END = 0x80000
DYN_X = 0x80000    # RWX mapping, no pages
DYN_X_END = 0x90000
UNMAPPED = 0xA0000  # inside ELRANGE, no VMA
#: the SECINFO an EACCEPT of a freshly EAUGed page passes: R|W, REG, PENDING
ACCEPT_AUG = 0x20B


@dataclass
class Small:
    machine: Machine
    fd: EnclaveFd
    base: int = BASE

    def a(self, offset: int) -> int:
        return self.base + offset

    @property
    def tcs1(self) -> int:
        return self.base + TCS1

    @property
    def tcs2(self) -> int:
        return self.base + TCS2

    def paddr(self, addr: int) -> int:
        rec = self.fd.record(addr)
        assert rec is not None
        return Epc.paddr(rec[0])

    def slot(self, addr: int) -> int:
        rec = self.fd.record(addr)
        assert rec is not None
        return rec[0]

    def epcm(self, addr: int) -> dict[str, int | bool]:
        return self.machine.epc.describe(self.slot(addr))


def build_small(*, epc_pages: int = 512, sgx2: bool = True, init: bool = True,
                eaug_race_sigbus: bool = False, nssa: int = 2,
                miscselect: int = MISC_EXINFO) -> Small:
    m = Machine(epc_pages, sgx2=sgx2, eaug_race_sigbus=eaug_race_sigbus)
    fd = m.open_enclave()
    fd.create(SecsImage(BASE, SIZE, ssa_frame_size=1, miscselect=miscselect))
    fd.add_pages(TCS1, TcsImage(ossa=SSA1, nssa=nssa).to_bytes(), secinfo_flags(0, PT_TCS))
    fd.add_pages(SSA1, bytes(2 * PAGE), secinfo_flags(RW, PT_REG))
    fd.add_pages(TEXT, b"\x90" * PAGE, secinfo_flags(RX, PT_REG))
    fd.add_pages(DATA, bytes(4 * PAGE), secinfo_flags(RW, PT_REG))
    fd.add_pages(TCS2, TcsImage(ossa=SSA2, nssa=nssa).to_bytes(), secinfo_flags(0, PT_TCS))
    fd.add_pages(SSA2, bytes(2 * PAGE), secinfo_flags(RW, PT_REG))
    if not init:
        return Small(m, fd)
    fd.init()
    fixed = MAP_SHARED | MAP_FIXED
    m.mmap(BASE + TCS1, 3 * PAGE, RW, fixed, fd)
    m.mmap(BASE + TEXT, PAGE, RX, fixed, fd)
    m.mmap(BASE + DATA, 4 * PAGE, RW, fixed, fd)
    m.mmap(BASE + TCS2, 3 * PAGE, RW, fixed, fd)
    m.mmap(BASE + DYN, DYN_END - DYN, RW, fixed, fd)
    m.mmap(BASE + DYN_X, DYN_X_END - DYN_X, RWX, fixed, fd)
    return Small(m, fd)

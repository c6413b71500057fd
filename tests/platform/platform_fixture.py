"""The kernel selftests' test enclave (platform.md section E), built through the driver.

Layout (offsets from the base): two TCS pages (NSSA 1, each with its own SSA
frame), one text page (R-X), data (RW: the 8 KiB buffer, the two SSA frames, two
stack pages), heap. Size = the smallest power of two holding it, base aligned to
the size; pages are EADDed, EINIT, then every segment is mmapped
MAP_SHARED|MAP_FIXED with its prot, as `encl_load`/`encl_map_area` do.

The enclave's operations (encl_op_*) are Python programs run at OENTRY through
the vDSO-style entry; each returns its result through the op object, as the C
ops write it back into the op struct.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sgx_emm.platform import (
    MAP_FIXED,
    MAP_SHARED,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    EnclaveFd,
    EnclaveThread,
    Machine,
    Run,
    SecsImage,
    TcsImage,
    secinfo_flags,
)
from sgx_emm.platform.secinfo import EENTER, ERESUME, MISC_EXINFO, PT_REG, PT_TCS

PAGE = 0x1000
MAGIC = 0xFEDCBA9876543210
MAGIC2 = 0x0123456789ABCDEF

TCS_OFFSET = 0x0000         # two TCS pages
TEXT_OFFSET = 0x2000        # one page R-X
DATA_OFFSET = 0x3000        # buffer (2 pages), ssa x2, stack x2
BUFFER_OFFSET = DATA_OFFSET
SSA_OFFSET = DATA_OFFSET + 2 * PAGE
STACK_OFFSET = SSA_OFFSET + 2 * PAGE
DATA_PAGES = 6
HEAP_OFFSET = DATA_OFFSET + DATA_PAGES * PAGE

Program = Callable[[EnclaveThread], object]


@dataclass
class Op:
    """An encl_op: the program plus the slot it writes its result to."""

    program: Program
    ret: int | None = None
    value: int | None = None


@dataclass
class SelftestEnclave:
    machine: Machine
    fd: EnclaveFd
    base: int
    size: int
    heap_pages: int
    tcs: list[int] = field(default_factory=list)

    @property
    def data_start(self) -> int:
        """The second page of the buffer (encl_get_data_offset)."""
        return self.base + BUFFER_OFFSET + PAGE

    @property
    def buffer(self) -> int:
        return self.base + BUFFER_OFFSET

    @property
    def total_size(self) -> int:
        """First unused offset (encl.src_size)."""
        return HEAP_OFFSET + self.heap_pages * PAGE

    @property
    def heap(self) -> int:
        return self.base + HEAP_OFFSET

    # ---- running ops through the vDSO ----
    def enter(self, op: Op, tcs: int | None = None, run: Run | None = None) -> Run:
        run = run if run is not None else Run(tcs=self.tcs[0] if tcs is None else tcs)
        assert self.machine.vdso.enter(EENTER, run, op.program) == 0
        return run

    def eresume(self, run: Run) -> Run:
        assert self.machine.vdso.enter(ERESUME, run) == 0
        return run


def build_selftest_enclave(*, heap_pages: int = 4, epc_pages: int | None = None,
                           base: int | None = None, sgx2: bool = True,
                           reclaim: bool = False) -> SelftestEnclave:
    total = HEAP_OFFSET + heap_pages * PAGE
    size = 1 << (total - 1).bit_length()
    base = base if base is not None else size * max(1, 0x7F00_0000_0000 // size)
    machine = Machine(epc_pages if epc_pages is not None else total // PAGE + 1 + 64,
                      sgx2=sgx2, reclaim=reclaim)
    fd = machine.open_enclave()
    fd.create(SecsImage(base, size, ssa_frame_size=1, miscselect=MISC_EXINFO))
    for i in range(2):
        image = TcsImage(ossa=SSA_OFFSET + i * PAGE, nssa=1, oentry=TEXT_OFFSET)
        fd.add_pages(TCS_OFFSET + i * PAGE, image.to_bytes(), secinfo_flags(0, PT_TCS))
    fd.add_pages(TEXT_OFFSET, b"\xcc" * PAGE, secinfo_flags(PROT_READ | PROT_EXEC, PT_REG))
    fd.add_pages(DATA_OFFSET, bytes(DATA_PAGES * PAGE),
                 secinfo_flags(PROT_READ | PROT_WRITE, PT_REG))
    if heap_pages:
        fd.add_pages(HEAP_OFFSET, bytes(heap_pages * PAGE),
                     secinfo_flags(PROT_READ | PROT_WRITE, PT_REG))
    fd.init()
    flags = MAP_SHARED | MAP_FIXED
    machine.mmap(base + TCS_OFFSET, 2 * PAGE, PROT_READ | PROT_WRITE, flags, fd)
    machine.mmap(base + TEXT_OFFSET, PAGE, PROT_READ | PROT_EXEC, flags, fd)
    machine.mmap(base + DATA_OFFSET, DATA_PAGES * PAGE, PROT_READ | PROT_WRITE, flags, fd)
    if heap_pages:
        machine.mmap(base + HEAP_OFFSET, heap_pages * PAGE, PROT_READ | PROT_WRITE, flags, fd)
    encl = SelftestEnclave(machine, fd, base, size, heap_pages)
    encl.tcs = [base + TCS_OFFSET, base + TCS_OFFSET + PAGE]
    return encl


# ---- the enclave's operations ----
def put_to_buffer(encl: SelftestEnclave, value: int) -> Op:
    return Op(lambda t: t.write(encl.buffer, value.to_bytes(8, "little")))


def get_from_buffer(encl: SelftestEnclave) -> Op:
    op = Op(lambda t: None)

    def program(t: EnclaveThread) -> None:
        op.value = int.from_bytes(t.read(encl.buffer, 8), "little")
    op.program = program
    return op


def put_to_addr(addr: int, value: int) -> Op:
    return Op(lambda t: t.write(addr, value.to_bytes(8, "little")))


def get_from_addr(addr: int) -> Op:
    op = Op(lambda t: None)

    def program(t: EnclaveThread) -> None:
        op.value = int.from_bytes(t.read(addr, 8), "little")
    op.program = program
    return op


def nop() -> Op:
    return Op(lambda t: None)


def eaccept_op(addr: int, flags: int) -> Op:
    op = Op(lambda t: None)

    def program(t: EnclaveThread) -> None:
        op.ret = t.eaccept(flags, addr)
    op.program = program
    return op


def emodpe_op(addr: int, flags: int) -> Op:
    op = Op(lambda t: None)

    def program(t: EnclaveThread) -> None:
        op.ret = t.emodpe(flags, addr)
    op.program = program
    return op


def init_tcs_page_op(encl: SelftestEnclave, tcs_page: int, ssa_page: int) -> Op:
    """encl_init_tcs_page: write a TCS image (copy of TCS#1 with its own SSA) into a
    REG page the enclave accepted."""
    image = TcsImage(ossa=ssa_page - encl.base, nssa=1, oentry=TEXT_OFFSET)
    return Op(lambda t: t.write(tcs_page, image.to_bytes()))

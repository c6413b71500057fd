"""The Intel SDK's EMM API test scenarios, on the simulated enclave.

What `external/sgx-emm/api_tests/Enclave/Enclave.cpp` of intel/linux-sgx checks,
rewritten for `sgx_emm.Enclave` and the C-shaped `sgx_emm.capi` (calls return
the C result, so every step states the errno the SDK test expects). Memory
accesses go through `t.read` / `t.write` / `t.fetch`, so each fault takes the
whole #PF path (AEX, kernel, dispatcher, manager, custom handler). A handler's
`longjmp` is a Python exception raised in the handler and caught around the
access. After each scenario the enclave's books must agree with the EPCM
(`enclave_state.check_invariants`).

The thread-safe group also runs from 4 Python threads at once, each inside its
own `enc.enter()`, as the SDK's test app runs `ecall_test_sgx_mm` concurrently.
"""

from __future__ import annotations

import errno
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
from enclave_state import accepted_at, check_invariants, epcm_at, user_regions

from sgx_emm import Enclave
from sgx_emm import capi as c
from sgx_emm.emm.rt import PfInfo
from sgx_emm.enclave import ThreadContext
from sgx_emm.flags import (
    COMMIT_NOW,
    COMMIT_ON_DEMAND,
    EXCEPTION_CONTINUE_EXECUTION,
    EXCEPTION_CONTINUE_SEARCH,
    FIXED,
    PAGE_SIZE,
    PAGE_TYPE_TCS,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_READ_EXEC,
    PROT_READ_WRITE,
    PROT_WRITE,
    RESERVE,
)
from sgx_emm.platform import TcsImage
from sgx_emm.platform.secinfo import EXINFO_SIZE, GPRSGX_SIZE, PT_REG, PT_TCS
from sgx_emm.trace import HANDLER

PAGE = PAGE_SIZE
ALLOC_SIZE = 0x2000
COD = int(COMMIT_ON_DEMAND)
CNOW = int(COMMIT_NOW)
MAX_NESTED_HANDLER = 10
#: The SDK test asks for twice its configured maximum of reserved memory.
SDK_MAX_RESERVED = 0x90000000
#: A tiny x86 function returning 0 (push rbp; mov rbp,rsp; mov [rbp-8],rdi;
#: mov eax,0; pop rbp; ret): the bytes the SDK test copies into an RX page.
RETURN_ZERO = bytes((0x55, 0x48, 0x89, 0xE5, 0x48, 0x89, 0x7D, 0xF8,
                     0xB8, 0x00, 0x00, 0x00, 0x00, 0x5D, 0xC3))


def make_enclave() -> Enclave:
    return Enclave.create(size=1 << 30, epc_pages=8192, threads=4)


@pytest.fixture
def enc() -> Enclave:
    return make_enclave()


class LongJmp(Exception):
    """What the SDK's jmp_handler does with longjmp: unwind out of the access."""


@dataclass
class PfData:
    """The SDK's pf_data_t: the last fault a handler saw plus the test's wishes."""

    t: ThreadContext
    pf: PfInfo | None = None
    access: int = 0
    magic: int = 0
    addr_expected: int = 0
    calls: int = 0

    def record(self, pfinfo: PfInfo) -> None:
        self.pf = pfinfo
        self.calls += 1

    @property
    def errcd(self) -> int:
        return self.pf.errcd if self.pf is not None else 0


@dataclass
class Blocks:
    """The SDK test's `allocated_blocks`: areas any thread may free later."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    addrs: list[int] = field(default_factory=list)

    def push(self, addr: int) -> None:
        with self.lock:
            self.addrs.append(addr)


def alloc(addr: int | None, size: int, flags: int, handler: Any = None,
          private: Any = None) -> int:
    """sgx_mm_alloc that must succeed; returns the address."""
    ret, out = c.sgx_mm_alloc(addr, size, flags, handler, private)
    assert ret == 0, errno.errorcode.get(ret, ret)
    assert out != 0
    return out


# --------------------------------------------------------------- handlers

def page_of(addr: int) -> int:
    return addr & ~(PAGE - 1)


def jmp_handler(pfinfo: PfInfo, pd: PfData) -> int:
    """Commit the page, fill it with the magic byte, and unwind out of the read."""
    pd.record(pfinfo)
    if not pfinfo.rw and pfinfo.maddr == pd.addr_expected:
        assert c.sgx_mm_commit(page_of(pfinfo.maddr), PAGE) == 0
        pd.t.write(page_of(pfinfo.maddr), bytes([pd.magic]) * PAGE)
        raise LongJmp()
    return EXCEPTION_CONTINUE_SEARCH


def permissions_handler(pfinfo: PfInfo, pd: PfData) -> int:
    """Give back the permission the faulting access needs."""
    pd.record(pfinfo)
    page = page_of(pfinfo.maddr)
    if pfinfo.rw and pd.access == PROT_WRITE:
        assert c.sgx_mm_modify_permissions(page, PAGE, PROT_READ_WRITE) == 0
    elif not pfinfo.rw and pd.access & PROT_READ:
        assert c.sgx_mm_modify_permissions(page, PAGE, pd.access) == 0
    else:
        raise AssertionError(f"unexpected fault {pfinfo}")  # the SDK aborts
    return EXCEPTION_CONTINUE_EXECUTION


def commit_data_handler(pfinfo: PfInfo, pd: PfData) -> int:
    """Fill a faulting page with commit_data from a scratch COMMIT_NOW page."""
    pd.record(pfinfo)
    addr = pfinfo.maddr
    if pd.access == PROT_WRITE and pfinfo.rw and addr == pd.addr_expected:
        assert c.sgx_mm_modify_permissions(page_of(addr), PAGE, PROT_READ_WRITE) == 0
        return EXCEPTION_CONTINUE_EXECUTION
    if addr == pd.addr_expected:
        scratch = alloc(None, PAGE, CNOW)
        pd.t.write(scratch, bytes([pd.magic]) * PAGE)
        assert c.sgx_mm_commit_data(page_of(addr), PAGE, scratch, PROT_READ) == 0
        assert c.sgx_mm_dealloc(scratch, PAGE) == 0
        return EXCEPTION_CONTINUE_EXECUTION
    return EXCEPTION_CONTINUE_SEARCH


def nested_handler(pfinfo: PfInfo, pd: PfData) -> int:
    """commit_data from a page whose own handler recurses, 10 levels deep.

    EACCEPTCOPY reads its source, an uncommitted page of a region with this same
    handler, so every level faults once more from inside the manager's call.
    """
    pd.record(pfinfo)
    addr = pfinfo.maddr
    if addr != pd.addr_expected:
        return EXCEPTION_CONTINUE_SEARCH
    if pd.magic == MAX_NESTED_HANDLER:
        source = alloc(None, PAGE, CNOW)
        pd.t.write(source, bytes([pd.magic]) * PAGE)
        assert c.sgx_mm_commit_data(page_of(addr), PAGE, source, PROT_READ) == 0
    else:
        inner = PfData(pd.t)
        source = alloc(None, PAGE, COD, nested_handler, inner)
        inner.addr_expected = source
        inner.magic = pd.magic + 1
        assert c.sgx_mm_commit_data(page_of(addr), PAGE, source, PROT_READ) == 0
        assert inner.errcd != 0  # the source read faulted ...
        assert not inner.pf or not inner.pf.rw  # ... as a read
    assert c.sgx_mm_dealloc(source, PAGE) == 0
    return EXCEPTION_CONTINUE_EXECUTION


# -------------------------------------------------------------- scenarios

def scenario_alloc_dealloc(t: ThreadContext) -> None:
    assert c.sgx_mm_dealloc(0, ALLOC_SIZE) == errno.EINVAL
    addr = alloc(None, ALLOC_SIZE, CNOW)
    assert c.sgx_mm_dealloc(addr, ALLOC_SIZE) == 0


def scenario_alloc_commit_uncommit(t: ThreadContext, blocks: Blocks) -> None:
    assert c.sgx_mm_dealloc(0, ALLOC_SIZE) == errno.EINVAL
    addr = alloc(None, ALLOC_SIZE, CNOW)
    assert c.sgx_mm_commit(addr, ALLOC_SIZE) == 0
    assert c.sgx_mm_alloc(addr, ALLOC_SIZE, CNOW | FIXED) == (errno.EEXIST, 0)
    assert c.sgx_mm_uncommit(addr, ALLOC_SIZE) == 0
    assert c.sgx_mm_uncommit(addr, ALLOC_SIZE) == 0  # already uncommitted: no-op
    assert c.sgx_mm_commit(addr, ALLOC_SIZE) == 0
    blocks.push(addr)


def scenario_dealloc_stored(blocks: Blocks) -> None:
    """Free the areas other scenarios (maybe on other threads) left behind."""
    with blocks.lock:
        failed = [a for a in blocks.addrs if c.sgx_mm_dealloc(a, ALLOC_SIZE) != 0]
        blocks.addrs[:] = failed
    assert failed == []


def _restrict_then_fault_back(t: ThreadContext, pd: PfData, addr: int) -> None:
    """The common part of the two permission scenarios."""
    assert t.read(addr, 1) == b"\x00"
    assert pd.errcd == 0  # read without a fault
    t.write(addr, b"\xff")
    assert pd.errcd == 0  # write without a fault
    assert c.sgx_mm_modify_permissions(addr, ALLOC_SIZE // 2, PROT_READ) == 0
    pd.access = PROT_READ
    assert t.read(addr, 1) == b"\xff"
    assert pd.errcd == 0  # reading a read-only page does not fault
    pd.access = PROT_WRITE
    t.write(addr + ALLOC_SIZE - 1, b"\xff")
    assert pd.errcd == 0  # the second page is still RW
    t.write(addr, b"\xff")
    assert pd.errcd != 0  # the write faulted, the handler restored RW
    assert pd.pf is not None and pd.pf.rw
    assert pd.calls == 1


def scenario_permissions(t: ThreadContext, blocks: Blocks) -> None:
    pd = PfData(t)
    addr = alloc(None, ALLOC_SIZE, CNOW, permissions_handler, pd)
    _restrict_then_fault_back(t, pd, addr)
    assert c.sgx_mm_modify_permissions(addr + ALLOC_SIZE // 2, ALLOC_SIZE // 2,
                                       PROT_NONE) == 0
    blocks.push(addr)  # freed later, PROT_NONE half included, maybe by another thread


def scenario_permissions_dealloc(t: ThreadContext) -> None:
    pd = PfData(t)
    addr = alloc(None, ALLOC_SIZE, CNOW, permissions_handler, pd)
    _restrict_then_fault_back(t, pd, addr)
    pd.pf, pd.calls, pd.access = None, 0, PROT_READ | PROT_EXEC
    assert c.sgx_mm_dealloc(addr, ALLOC_SIZE) == 0
    assert pd.calls == 0  # trimming needs no fault


def scenario_commit_data(t: ThreadContext) -> None:
    magic = 0x55
    pd = PfData(t)
    addr = alloc(None, ALLOC_SIZE, COD, commit_data_handler, pd)
    pd.addr_expected, pd.magic = addr, magic
    assert t.read(addr, PAGE) == bytes([magic]) * PAGE
    assert pd.errcd != 0 and pd.pf is not None and not pd.pf.rw
    pd.access = PROT_WRITE
    t.write(addr, b"\xff")
    assert pd.errcd != 0 and pd.pf is not None and pd.pf.rw

    second = addr + PAGE
    assert c.sgx_mm_commit_data(second, PAGE, addr, PROT_READ) == 0
    assert t.read(second, PAGE) == t.read(addr, PAGE)
    source = t.read(addr, 2 * PAGE)

    # a 13-page reserve, carved into on-demand pieces that commit_data fills
    ret, p0 = c.sgx_mm_alloc(None, 13 * PAGE, int(RESERVE))
    assert ret == 0 and p0
    p = [p0 + i * PAGE for i in range(13)]
    assert c.sgx_mm_alloc(p[1], PAGE, COD | FIXED) == (0, p[1])          # -x-----------
    assert c.sgx_mm_commit_data(p[0], PAGE, addr, PROT_READ) == errno.EACCES
    assert c.sgx_mm_commit_data(p[1], PAGE, addr, PROT_READ) == 0        # -d-----------
    assert t.read(p[1], PAGE) == source[:PAGE]
    assert c.sgx_mm_commit_data(p[1], PAGE, addr, PROT_READ) == errno.EACCES
    assert c.sgx_mm_alloc(p[0], 4 * PAGE, COD | FIXED) == (errno.EEXIST, 0)
    assert c.sgx_mm_alloc(p[0], PAGE, COD | FIXED) == (0, p[0])          # xd-----------
    assert c.sgx_mm_commit_data(p[0], PAGE, addr, PROT_READ) == 0        # dd-----------
    assert c.sgx_mm_alloc(p[2], 2 * PAGE, COD | FIXED) == (0, p[2])      # ddxx---------
    assert c.sgx_mm_commit_data(p[2], 2 * PAGE, addr, PROT_READ) == 0    # dddd---------
    assert t.read(p[2], 2 * PAGE) == source
    for i in range(7, 11):  # no FIXED: the hint inside the reserve is honoured
        assert c.sgx_mm_alloc(p[i], PAGE, COD) == (0, p[i])             # dddd---xxxx--
    assert c.sgx_mm_commit_data(p[7], 4 * PAGE, p[0], PROT_READ) == 0   # dddd---dddd--
    assert t.read(p[7], 4 * PAGE) == t.read(p[0], 4 * PAGE)

    # code: write it into a RW page, commit_data it into an RX page, run it
    assert c.sgx_mm_modify_permissions(p[0], PAGE, PROT_READ_WRITE) == 0
    t.write(p[0], RETURN_ZERO)
    assert c.sgx_mm_alloc(p[12], PAGE, COD) == (0, p[12])                # dddd---ddddx-
    assert c.sgx_mm_commit_data(p[12], PAGE, p[0], PROT_READ_EXEC) == 0  # dddd---ddddc-
    assert t.fetch(p[12], len(RETURN_ZERO)) == RETURN_ZERO
    code_page = accepted_at(t.enclave, p[12])
    assert code_page is not None and code_page.rwx == PROT_READ_EXEC

    assert c.sgx_mm_dealloc(p[0], 13 * PAGE) == 0
    assert c.sgx_mm_dealloc(addr, ALLOC_SIZE) == 0


def scenario_alloc_jmp(t: ThreadContext) -> None:
    magic = 0x55
    pd = PfData(t)
    addr = alloc(None, ALLOC_SIZE, COD, jmp_handler, pd)
    pd.magic, pd.addr_expected = magic, addr
    with pytest.raises(LongJmp):
        t.read(addr, 1)  # never returns: the handler unwinds past it
    assert t.read(addr, 1) == bytes([magic])
    assert pd.pf is not None and not pd.pf.rw and pd.pf.sgx
    assert pd.calls == 1
    assert c.sgx_mm_dealloc(addr, ALLOC_SIZE) == 0


def scenario_alloc_nested(t: ThreadContext) -> None:
    pd = PfData(t)
    addr = alloc(None, ALLOC_SIZE, COD, nested_handler, pd)
    pd.addr_expected, pd.magic = addr, 1
    assert t.read(addr, PAGE) == bytes([MAX_NESTED_HANDLER]) * PAGE
    assert pd.errcd != 0 and pd.pf is not None and not pd.pf.rw
    assert c.sgx_mm_dealloc(addr, ALLOC_SIZE) == 0


def scenario_alloc_dealloc_unsafe1(t: ThreadContext) -> None:
    assert c.sgx_mm_dealloc(0, ALLOC_SIZE) == errno.EINVAL
    addr = alloc(None, ALLOC_SIZE, CNOW)
    assert c.sgx_mm_commit(addr, ALLOC_SIZE) == 0
    assert c.sgx_mm_alloc(addr, ALLOC_SIZE, CNOW | FIXED) == (errno.EEXIST, 0)
    assert c.sgx_mm_uncommit(addr, ALLOC_SIZE) == 0
    assert c.sgx_mm_uncommit(addr, ALLOC_SIZE) == 0
    assert c.sgx_mm_commit(addr, ALLOC_SIZE) == 0
    assert c.sgx_mm_dealloc(addr, ALLOC_SIZE) == 0
    assert c.sgx_mm_dealloc(addr, ALLOC_SIZE) == errno.EINVAL
    assert c.sgx_mm_uncommit(addr, ALLOC_SIZE) == errno.EINVAL  # already freed
    assert c.sgx_mm_alloc(addr, ALLOC_SIZE, COD | FIXED) == (0, addr)
    assert c.sgx_mm_dealloc(addr, ALLOC_SIZE) == 0
    assert c.sgx_mm_alloc(addr, ALLOC_SIZE, COD | FIXED) == (0, addr)
    ret, addr2 = c.sgx_mm_alloc(addr, ALLOC_SIZE, COD)  # taken: placed elsewhere
    assert ret == 0 and addr2 not in (0, addr)
    t.write(addr2, b"\xff")
    t.write(addr2 + ALLOC_SIZE - 1, b"\xff")
    assert c.sgx_mm_dealloc(addr, ALLOC_SIZE) == 0
    assert c.sgx_mm_dealloc(addr2, ALLOC_SIZE) == 0


def scenario_alloc_dealloc_unsafe2(t: ThreadContext) -> None:
    assert c.sgx_mm_dealloc(0, ALLOC_SIZE) == errno.EINVAL
    addr = alloc(None, ALLOC_SIZE, CNOW)
    assert c.sgx_mm_commit(addr, ALLOC_SIZE) == 0
    assert c.sgx_mm_alloc(addr, ALLOC_SIZE, CNOW | FIXED) == (errno.EEXIST, 0)
    assert c.sgx_mm_uncommit(addr, 2 * ALLOC_SIZE) == errno.EINVAL  # runs past the region
    assert c.sgx_mm_uncommit(addr, ALLOC_SIZE) == 0
    assert c.sgx_mm_commit(addr, ALLOC_SIZE) == 0
    assert c.sgx_mm_dealloc(addr, 2 * ALLOC_SIZE) == 0  # freeing free space too is fine
    assert c.sgx_mm_alloc(None, SDK_MAX_RESERVED * 2, CNOW) == (errno.ENOMEM, 0)
    enc = t.enclave
    too_big = enc.user_end - enc.user_base + PAGE
    assert c.sgx_mm_alloc(None, too_big, int(RESERVE)) == (errno.ENOMEM, 0)


# ------------------------------------------------------- single-thread tests

def run_in(enc: Enclave, *scenarios: Any) -> None:
    with enc.enter() as t:
        for scenario in scenarios:
            scenario(t)
            check_invariants(enc)
    assert not enc.crashed


def test_alloc_dealloc(enc: Enclave) -> None:
    before = user_regions(enc)
    run_in(enc, scenario_alloc_dealloc)
    assert user_regions(enc) == before


def test_alloc_commit_uncommit_then_dealloc_stored(enc: Enclave) -> None:
    blocks = Blocks()
    run_in(enc, lambda t: scenario_alloc_commit_uncommit(t, blocks))
    (addr,) = blocks.addrs
    (region,) = user_regions(enc)
    assert (region.start, region.size, list(region.committed)) == (addr, ALLOC_SIZE,
                                                                   [True, True])
    run_in(enc, lambda t: scenario_dealloc_stored(blocks))
    assert blocks.addrs == [] and user_regions(enc) == []


def test_unsafe_sequences(enc: Enclave) -> None:
    run_in(enc, scenario_alloc_dealloc_unsafe1, scenario_alloc_dealloc_unsafe2)
    assert user_regions(enc) == []


def test_permissions_leave_a_half_none_block_that_dealloc_frees(enc: Enclave) -> None:
    blocks = Blocks()
    run_in(enc, lambda t: scenario_permissions(t, blocks))
    (addr,) = blocks.addrs
    spans = [(r.start, r.size, r.prot) for r in user_regions(enc)]
    assert spans == [(addr, PAGE, PROT_READ_WRITE), (addr + PAGE, PAGE, PROT_NONE)]
    none_page = accepted_at(enc, addr + PAGE)
    assert none_page is not None and none_page.rwx == 0
    run_in(enc, lambda t: scenario_dealloc_stored(blocks))
    assert user_regions(enc) == []
    assert epcm_at(enc, addr) == [] and epcm_at(enc, addr + PAGE) == []


def test_permissions_then_dealloc(enc: Enclave) -> None:
    run_in(enc, scenario_permissions_dealloc)
    assert user_regions(enc) == []


def test_commit_data_with_handler_13_pages_and_rx_page(enc: Enclave) -> None:
    run_in(enc, scenario_commit_data)
    assert user_regions(enc) == []


def test_jump_handler_unwinds_out_of_the_access(enc: Enclave) -> None:
    run_in(enc, scenario_alloc_jmp)
    assert user_regions(enc) == []


def test_nested_handlers_ten_deep(enc: Enclave) -> None:
    resumed = enc.trace.total(HANDLER, "emm")
    run_in(enc, scenario_alloc_nested)
    assert user_regions(enc) == []
    # one fault per level: the read, then each level's EACCEPTCOPY source
    assert enc.trace.total(HANDLER, "emm") - resumed == MAX_NESTED_HANDLER


def test_sdk_thread_group_in_one_thread(enc: Enclave) -> None:
    """ecall_test_sgx_mm, in the SDK's order."""
    blocks = Blocks()
    run_in(enc, scenario_alloc_dealloc,
           lambda t: scenario_alloc_commit_uncommit(t, blocks),
           lambda t: scenario_permissions(t, blocks),
           scenario_permissions_dealloc, scenario_commit_data,
           lambda t: scenario_dealloc_stored(blocks),
           scenario_alloc_jmp, scenario_alloc_nested)
    assert user_regions(enc) == []


def test_sdk_thread_group_from_four_threads(enc: Enclave) -> None:
    """ecall_test_sgx_mm from 4 threads at once, each entered on its own TCS."""
    blocks = Blocks()
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def body() -> None:
        try:
            with enc.enter() as t:
                barrier.wait(timeout=30)
                scenario_alloc_dealloc(t)
                scenario_alloc_commit_uncommit(t, blocks)
                scenario_permissions(t, blocks)
                scenario_permissions_dealloc(t)
                scenario_commit_data(t)
                scenario_dealloc_stored(blocks)
                scenario_alloc_jmp(t)
                scenario_alloc_nested(t)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=body, daemon=True) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not any(th.is_alive() for th in threads), "deadlock: a thread never finished"
    assert errors == []
    run_in(enc, lambda t: scenario_dealloc_stored(blocks))  # whatever raced past the others
    assert user_regions(enc) == []
    check_invariants(enc)


# -------------------------------------------------------- thread context

#: The SDK test's thread context: 16 guard | 5 stack | 16 guard | TCS | 2 SSA |
#: 16 guard | TLS, in pages.
CTX_PAGES = 16 * 3 + 5 + 1 + 2 + 1
CTX_STACK, CTX_TCS, CTX_SSA, CTX_TLS = 16, 37, 38, 56


def alloc_context(enc: Enclave, t: ThreadContext) -> int:
    """ecall_alloc_context: build a new thread's memory and turn a page into its TCS."""
    ret, base = c.sgx_mm_alloc(None, CTX_PAGES * PAGE, int(RESERVE))
    assert ret == 0 and base
    for offset, pages in ((CTX_STACK, 5), (CTX_TCS, 1), (CTX_SSA, 2), (CTX_TLS, 1)):
        at = base + offset * PAGE
        assert c.sgx_mm_alloc(at, pages * PAGE, CNOW | FIXED) == (0, at)
    tcs, ssa, tls = (base + o * PAGE for o in (CTX_TCS, CTX_SSA, CTX_TLS))
    image = TcsImage(ossa=ssa - enc.base, nssa=2,
                     oentry=enc.layout.find("code").offset,
                     ofsbase=tls - enc.base, ogsbase=tls - enc.base,
                     fslimit=0xFFFFFFFF, gslimit=0xFFFFFFFF)
    t.write(tcs, image.to_bytes())
    assert c.sgx_mm_modify_type(tcs, PAGE, int(PAGE_TYPE_TCS)) == 0
    return tcs


def test_thread_context_tcs_entry_and_dealloc(enc: Enclave) -> None:
    with enc.enter() as t:
        tcs = alloc_context(enc, t)
        check_invariants(enc)
    entry = accepted_at(enc, tcs)
    assert entry is not None and entry.pt == PT_TCS and entry.rwx == 0
    (tcs_region,) = [r for r in user_regions(enc) if r.start == tcs]
    assert tcs_region.page_type == PAGE_TYPE_TCS and tcs_region.prot == PROT_NONE
    with enc.enter() as t:  # a TCS page is not data: the enclave cannot read it
        assert c.sgx_mm_modify_permissions(tcs, PAGE, PROT_READ) == errno.EACCES
        assert c.sgx_mm_modify_type(tcs, PAGE, int(PAGE_TYPE_TCS)) == 0  # already TCS

    scratch_box: list[int] = []
    with enc.enter(tcs=tcs) as t2:  # a thread entered through the new TCS
        assert t2.tcs == tcs
        scratch = alloc(None, PAGE, COD)
        scratch_box.append(scratch)
        t2.write(scratch, b"new thread")  # faults: the AEX lands in the new SSA
        assert t2.read(scratch, 10) == b"new thread"
        # MISC.EXINFO of SSA frame 0 (just below GPRSGX) names the faulting address
        ssa = tcs - CTX_TCS * PAGE + CTX_SSA * PAGE
        exinfo = t2.read(ssa + PAGE - GPRSGX_SIZE - EXINFO_SIZE, 8)
        assert int.from_bytes(exinfo, "little") == scratch
    assert not enc.crashed

    with enc.enter() as t:
        assert c.sgx_mm_dealloc(scratch_box[0], PAGE) == 0
        assert c.sgx_mm_dealloc(tcs - CTX_TCS * PAGE, CTX_PAGES * PAGE) == 0
        check_invariants(enc)
    assert user_regions(enc) == []
    assert all(epcm_at(enc, tcs + i * PAGE) == [] for i in range(-CTX_TCS, CTX_PAGES - CTX_TCS))
    with pytest.raises(ValueError, match="not a TCS page"), enc.enter(tcs=tcs):
        pass  # the TCS page is gone: refused before EENTER, the enclave lives on
    assert not enc.crashed


def test_new_tcs_pages_are_regular_until_modify_type(enc: Enclave) -> None:
    """Before modify_type the page is a plain RW REG page; entering it fails."""
    with enc.enter():
        ret, base = c.sgx_mm_alloc(None, PAGE, CNOW)
        assert ret == 0
        page = accepted_at(enc, base)
        assert page is not None and page.pt == PT_REG
    with pytest.raises(ValueError, match="not a TCS page"), enc.enter(tcs=base):
        pass
    with pytest.raises(ValueError, match="not a TCS page"):
        enc.enter(tcs=base)  # refused by the call itself, before any `with`
    assert not enc.crashed

"""The Linux EDMM selftests (tools/testing/selftests/sgx/main.c), platform.md section E.

Each test drives the selftest enclave through the driver calls and the vDSO-style
entry, and asserts every value the section lists: return values, `function`,
vector, error code, address, `result`, `count`.
"""

from __future__ import annotations

import errno

import pytest
from platform_fixture import (
    MAGIC,
    MAGIC2,
    PAGE,
    Op,
    SelftestEnclave,
    build_selftest_enclave,
    eaccept_op,
    emodpe_op,
    get_from_addr,
    get_from_buffer,
    init_tcs_page_op,
    nop,
    put_to_addr,
    put_to_buffer,
)
from platform_support import ACCEPT_AUG

from sgx_emm.platform import (
    MAP_FIXED,
    MAP_SHARED,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    EnclaveThread,
    ModifyTypes,
    RemovePages,
    RestrictPermissions,
    Run,
)
from sgx_emm.platform.secinfo import EEXIT, ERESUME, PT_TCS, PT_TRIM

RWX = PROT_READ | PROT_WRITE | PROT_EXEC
SHARED_FIXED = MAP_SHARED | MAP_FIXED
ACCEPT_RESTRICT_R = 0x221   # R|REG|PR
ACCEPT_TRIM = 0x410         # TRIM|MODIFIED
ACCEPT_TCS = 0x110          # TCS|MODIFIED
EMODPE_RW = 0x203           # R|W|REG


@pytest.fixture
def encl() -> SelftestEnclave:
    return build_selftest_enclave()


def assert_eexit(run: Run) -> None:
    assert run.function == EEXIT
    assert run.exception_vector == 0
    assert run.exception_error_code == 0
    assert run.exception_addr == 0


def assert_fault(run: Run, errcd: int, addr: int) -> None:
    assert run.function == ERESUME
    assert run.exception_vector == 14
    assert run.exception_error_code == errcd
    assert run.exception_addr == addr


def read_back(encl: SelftestEnclave, addr: int) -> int | None:
    op = get_from_addr(addr)
    assert_eexit(encl.enter(op))
    return op.value


def test_tcs_entry(encl: SelftestEnclave) -> None:
    assert_eexit(encl.enter(nop(), tcs=encl.tcs[0]))
    assert_eexit(encl.enter(nop(), tcs=encl.tcs[1]))


def test_buffer_put_get(encl: SelftestEnclave) -> None:
    assert_eexit(encl.enter(put_to_buffer(encl, MAGIC)))
    op = get_from_buffer(encl)
    assert_eexit(encl.enter(op))
    assert op.value == MAGIC


def test_pte_permissions(encl: SelftestEnclave) -> None:
    m = encl.machine
    assert_eexit(encl.enter(put_to_addr(encl.data_start, MAGIC)))
    assert read_back(encl, encl.data_start) == MAGIC
    m.mprotect(encl.data_start, PAGE, PROT_READ)
    run = encl.enter(put_to_addr(encl.data_start, MAGIC2))
    assert_fault(run, 0x7, encl.data_start)
    m.mprotect(encl.data_start, PAGE, PROT_READ | PROT_WRITE)
    encl.eresume(run)
    assert run.function == EEXIT
    assert read_back(encl, encl.data_start) == MAGIC2


def test_tcs_permissions(encl: SelftestEnclave) -> None:
    params = RestrictPermissions(offset=encl.tcs[0] - encl.base, length=PAGE,
                                 permissions=PROT_READ)
    with pytest.raises(OSError) as err:
        encl.fd.restrict_permissions(params)
    assert err.value.errno == errno.EINVAL
    assert params.result == 0
    assert params.count == 0


def test_epcm_permissions(encl: SelftestEnclave) -> None:
    assert_eexit(encl.enter(put_to_addr(encl.data_start, MAGIC)))
    assert read_back(encl, encl.data_start) == MAGIC
    params = RestrictPermissions(offset=encl.data_start - encl.base, length=PAGE,
                                 permissions=PROT_READ)
    assert encl.fd.restrict_permissions(params) == 0
    assert params.result == 0
    assert params.count == PAGE
    accept = eaccept_op(encl.data_start, ACCEPT_RESTRICT_R)
    assert_eexit(encl.enter(accept))
    assert accept.ret == 0
    run = encl.enter(put_to_addr(encl.data_start, MAGIC2))
    assert_fault(run, 0x8007, encl.data_start)
    extend = emodpe_op(encl.data_start, EMODPE_RW)
    assert_eexit(encl.enter(extend, tcs=encl.tcs[1]))
    assert extend.ret == 0
    encl.eresume(run)
    assert run.function == EEXIT
    assert read_back(encl, encl.data_start) == MAGIC2


def _map_past_end(encl: SelftestEnclave, pages: int = 1, prot: int = RWX) -> int:
    addr = encl.base + encl.total_size
    assert encl.machine.mmap(addr, pages * PAGE, prot, SHARED_FIXED, encl.fd) == addr
    return addr


def test_augment(encl: SelftestEnclave) -> None:
    addr = _map_past_end(encl)
    run = encl.enter(put_to_addr(addr, MAGIC))
    assert_fault(run, 0x8007, addr)
    accept = eaccept_op(addr, ACCEPT_AUG)
    assert_eexit(encl.enter(accept, tcs=encl.tcs[1]))
    assert accept.ret == 0
    encl.eresume(run)
    assert run.function == EEXIT
    assert read_back(encl, addr) == MAGIC
    encl.machine.munmap(addr, PAGE)


def test_augment_via_eaccept(encl: SelftestEnclave) -> None:
    addr = _map_past_end(encl)
    accept = eaccept_op(addr, ACCEPT_AUG)
    assert_eexit(encl.enter(accept))
    assert accept.ret == 0
    assert encl.machine.trace.total("pf", "0x4") >= 1   # the transparent fault happened
    assert_eexit(encl.enter(put_to_addr(addr, MAGIC)))
    assert read_back(encl, addr) == MAGIC


def test_tcs_create(encl: SelftestEnclave) -> None:
    stack = _map_past_end(encl, 3, PROT_READ | PROT_WRITE)
    tcs, ssa = stack + PAGE, stack + 2 * PAGE
    for page in (stack, tcs, ssa):
        accept = eaccept_op(page, ACCEPT_AUG)
        assert_eexit(encl.enter(accept))
        assert accept.ret == 0
    assert_eexit(encl.enter(init_tcs_page_op(encl, tcs, ssa)))
    modt = ModifyTypes(offset=tcs - encl.base, length=PAGE, page_type=PT_TCS)
    assert encl.fd.modify_types(modt) == 0
    assert modt.result == 0
    assert modt.count == PAGE
    accept = eaccept_op(tcs, ACCEPT_TCS)
    assert_eexit(encl.enter(accept))
    assert accept.ret == 0
    # enter through the new TCS
    assert_eexit(encl.enter(put_to_buffer(encl, MAGIC), tcs=tcs))
    get = get_from_buffer(encl)
    assert_eexit(encl.enter(get, tcs=tcs))
    assert get.value == MAGIC
    # trim all three pages, accept, remove
    modt = ModifyTypes(offset=stack - encl.base, length=3 * PAGE, page_type=PT_TRIM)
    assert encl.fd.modify_types(modt) == 0
    assert modt.result == 0
    assert modt.count == 3 * PAGE
    for page in (stack, tcs, ssa):
        accept = eaccept_op(page, ACCEPT_TRIM)
        assert_eexit(encl.enter(accept))
        assert accept.ret == 0
    remove = RemovePages(offset=stack - encl.base, length=3 * PAGE)
    assert encl.fd.remove_pages(remove) == 0
    assert remove.count == 3 * PAGE
    # the former TCS address gets a fresh EAUG page
    accept = eaccept_op(tcs, ACCEPT_AUG)
    assert_eexit(encl.enter(accept))
    assert accept.ret == 0
    assert_eexit(encl.enter(put_to_addr(tcs, MAGIC)))
    assert read_back(encl, tcs) == MAGIC


def _trim_data_start(encl: SelftestEnclave) -> None:
    modt = ModifyTypes(offset=encl.data_start - encl.base, length=PAGE, page_type=PT_TRIM)
    assert encl.fd.modify_types(modt) == 0
    assert modt.result == 0
    assert modt.count == PAGE


def test_remove_added_page_no_eaccept(encl: SelftestEnclave) -> None:
    _trim_data_start(encl)
    remove = RemovePages(offset=encl.data_start - encl.base, length=PAGE)
    with pytest.raises(OSError) as err:
        encl.fd.remove_pages(remove)
    assert err.value.errno == errno.EPERM
    assert remove.count == 0


def test_remove_added_page_invalid_access(encl: SelftestEnclave) -> None:
    assert_eexit(encl.enter(put_to_addr(encl.data_start, MAGIC)))
    assert read_back(encl, encl.data_start) == MAGIC
    _trim_data_start(encl)
    run = encl.enter(get_from_addr(encl.data_start))
    assert_fault(run, 0x8005, encl.data_start)


def test_remove_added_page_invalid_access_after_eaccept(encl: SelftestEnclave) -> None:
    assert_eexit(encl.enter(put_to_addr(encl.data_start, MAGIC)))
    assert read_back(encl, encl.data_start) == MAGIC
    _trim_data_start(encl)
    accept = eaccept_op(encl.data_start, ACCEPT_TRIM)
    assert_eexit(encl.enter(accept))
    assert accept.ret == 0
    run = encl.enter(get_from_addr(encl.data_start))
    assert_fault(run, 0x8005, encl.data_start)


def test_remove_untouched_page(encl: SelftestEnclave) -> None:
    _trim_data_start(encl)
    accept = eaccept_op(encl.data_start, ACCEPT_TRIM)
    assert_eexit(encl.enter(accept))
    assert accept.ret == 0
    remove = RemovePages(offset=encl.data_start - encl.base, length=PAGE)
    assert encl.fd.remove_pages(remove) == 0
    assert remove.count == PAGE


def test_unclobbered_vdso_oversubscribed_remove() -> None:
    heap_pages = 512
    # The heap is as large as the EPC: loading it, trimming it and accepting every
    # page only works because the driver evicts (EWB) and reloads (ELDU) pages.
    encl = build_selftest_enclave(heap_pages=heap_pages, epc_pages=heap_pages, reclaim=True)
    trace = encl.machine.trace
    assert trace.total("leaf", "EWB") > 0
    heap_size = heap_pages * PAGE
    modt = ModifyTypes(offset=encl.heap - encl.base, length=heap_size, page_type=PT_TRIM)
    assert encl.fd.modify_types(modt) == 0
    assert modt.result == 0
    assert modt.count == heap_size

    results: list[int] = []

    def accept_all(t: EnclaveThread) -> None:
        for i in range(heap_pages):
            results.append(t.eaccept(ACCEPT_TRIM, encl.heap + i * PAGE))
    assert_eexit(encl.enter(Op(accept_all)))
    assert results == [0] * heap_pages
    remove = RemovePages(offset=encl.heap - encl.base, length=heap_size)
    assert encl.fd.remove_pages(remove) == 0
    assert remove.count == heap_size
    assert trace.total("leaf", "ELDU") > 0
    assert encl.machine.epc.free_pages >= heap_pages - 16
    # the rest of the enclave still works (pages come back from the backing store)
    assert_eexit(encl.enter(put_to_addr(encl.data_start, MAGIC)))
    assert read_back(encl, encl.data_start) == MAGIC

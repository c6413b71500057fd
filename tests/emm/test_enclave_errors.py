"""Every error path of the manager on a real simulated enclave.

Bad input gives the documented errno (spec/emm.md, including its Deviations)
and changes nothing: regions of both roots, commit bitmaps, every EPCM entry,
the driver's page records and VMAs, and no leaf, ocall, ioctl or syscall was
issued (`enclave_state.snapshot` before and after). Faults nobody handles
raise `EnclaveCrashed` and the enclave stays crashed; the manager's abort cases
raise `EnclaveAbort`; reads from outside give 0xFF; `Enclave.create` validates
its arguments.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from enclave_state import accepted_at, check_invariants, snapshot, user_regions

from sgx_emm import EmmError, Enclave, EnclaveAbort, EnclaveCrashed
from sgx_emm import capi as c
from sgx_emm.emm.rt import PfInfo
from sgx_emm.flags import (
    COMMIT_NOW,
    COMMIT_ON_DEMAND,
    EXCEPTION_CONTINUE_EXECUTION,
    EXCEPTION_CONTINUE_SEARCH,
    FIXED,
    PAGE_SIZE,
    PAGE_TYPE_REG,
    PAGE_TYPE_SS_FIRST,
    PAGE_TYPE_SS_REST,
    PAGE_TYPE_TCS,
    PAGE_TYPE_TRIM,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_READ_EXEC,
    PROT_READ_WRITE,
    PROT_WRITE,
    RESERVE,
    SYSTEM,
    aligned,
)
from sgx_emm.platform import TcsImage
from sgx_emm.runtime.dispatcher import ExceptionRecord

PAGE = PAGE_SIZE
COD = int(COMMIT_ON_DEMAND)
CNOW = int(COMMIT_NOW)
U64 = 1 << 64


def small_enclave() -> Enclave:
    return Enclave.create(size=1 << 30, epc_pages=8192, threads=2)


@dataclass
class Scene:
    """An enclave with one region of each kind; addresses by name."""

    enc: Enclave
    cod: int        # 4 pages on demand: pages 0 and 1 committed, 2 and 3 not
    now: int        # 2 pages COMMIT_NOW, RW
    ro: int         # 2 pages COMMIT_NOW, restricted to READ
    none: int       # 1 page COMMIT_NOW, PROT_NONE
    rx: int         # 1 page committed by commit_data with RX
    res: int        # 4 pages RESERVE
    tcs: int        # 1 TCS page made by modify_type
    free: int       # a free page, with free pages after it
    meta: int       # the first metadata reserve's on-demand part


def build_scene() -> Scene:
    """Regions 16 pages apart, so every range can run into free space."""
    enc = small_enclave()
    emm = enc.emm
    slots = iter(range(enc.user_base + 0x100000, enc.user_end, 16 * PAGE))

    def at(size: int, flags: int) -> int:
        addr = next(slots)
        assert emm.alloc(addr, size, flags | FIXED) == addr
        return addr

    with enc.enter() as t:
        cod = at(4 * PAGE, COD)
        t.write(cod, b"cod0")
        t.write(cod + PAGE, b"cod1")
        now = at(2 * PAGE, CNOW)
        ro = at(2 * PAGE, CNOW)
        emm.modify_permissions(ro, 2 * PAGE, PROT_READ)
        none = at(PAGE, CNOW)
        emm.modify_permissions(none, PAGE, PROT_NONE)
        rx = at(PAGE, COD)
        emm.commit_data(rx, PAGE, now, PROT_READ_EXEC)
        res = at(4 * PAGE, int(RESERVE))
        tcs = at(PAGE, CNOW)
        t.write(tcs, TcsImage(ossa=0, nssa=1).to_bytes())
        emm.modify_type(tcs, PAGE, int(PAGE_TYPE_TCS))
        free = next(slots)
    meta = next(r.start for r in enc.emm.regions() if r.is_meta and r.alloc_flags & COD)
    check_invariants(enc)
    return Scene(enc, cod, now, ro, none, rx, res, tcs, free, meta)


@pytest.fixture
def scene() -> Scene:
    return build_scene()


BadCall = Callable[[Scene], object]

#: (name, call, errno): every call must fail with that errno and change nothing.
BAD_CALLS: list[tuple[str, BadCall, int]] = [
    # alloc: checks in the spec's order
    ("alloc SYSTEM", lambda s: s.enc.emm.alloc(None, PAGE, COD | int(SYSTEM)), errno.EINVAL),
    ("alloc no commit mode", lambda s: s.enc.emm.alloc(None, PAGE, int(FIXED)), errno.EINVAL),
    ("alloc two commit modes", lambda s: s.enc.emm.alloc(None, PAGE, COD | CNOW),
     errno.EINVAL),
    ("alloc TCS type", lambda s: s.enc.emm.alloc(None, PAGE, COD | int(PAGE_TYPE_TCS)),
     errno.EINVAL),
    ("alloc TRIM type", lambda s: s.enc.emm.alloc(None, PAGE, COD | int(PAGE_TYPE_TRIM)),
     errno.EINVAL),
    ("alloc type 0x300", lambda s: s.enc.emm.alloc(None, PAGE, COD | 0x300), errno.EINVAL),
    ("alloc size 0", lambda s: s.enc.emm.alloc(None, 0, COD), errno.EINVAL),
    ("alloc size unaligned", lambda s: s.enc.emm.alloc(None, 0x800, COD), errno.EINVAL),
    ("alloc alignment 2^11", lambda s: s.enc.emm.alloc(None, PAGE, COD | aligned(11)),
     errno.EINVAL),
    ("alloc alignment 2^64", lambda s: s.enc.emm.alloc(None, PAGE, COD | aligned(64)),
     errno.EINVAL),
    ("alloc addr not aligned to 2^16",
     lambda s: s.enc.emm.alloc(((s.free >> 16) + 1 << 16) + PAGE, PAGE, COD | aligned(16)),
     errno.EINVAL),
    ("alloc addr unaligned", lambda s: s.enc.emm.alloc(s.free + 8, PAGE, COD), errno.EINVAL),
    ("alloc outside ELRANGE",
     lambda s: s.enc.emm.alloc(s.enc.base + s.enc.size, PAGE, COD), errno.EACCES),
    ("alloc running past ELRANGE",
     lambda s: s.enc.emm.alloc(s.enc.base + s.enc.size - PAGE, 2 * PAGE, COD), errno.EACCES),
    ("alloc below ELRANGE", lambda s: s.enc.emm.alloc(s.enc.base - PAGE, PAGE, COD),
     errno.EACCES),
    ("alloc FIXED over a region", lambda s: s.enc.emm.alloc(s.cod, PAGE, COD | FIXED),
     errno.EEXIST),
    ("alloc FIXED over reserve and region",
     lambda s: s.enc.emm.alloc(s.res - 16 * PAGE, 20 * PAGE, COD | FIXED), errno.EEXIST),
    ("alloc FIXED over a reserve and a gap before the next",
     lambda s: s.enc.emm.alloc(s.res, 17 * PAGE, COD | FIXED), errno.EEXIST),
    ("alloc FIXED over the metadata reserve",
     lambda s: s.enc.emm.alloc(s.enc.user_base, PAGE, COD | FIXED), errno.EEXIST),
    ("alloc FIXED in the runtime's range",
     lambda s: s.enc.emm.alloc(s.enc.base + 0x200000, PAGE, COD | FIXED), errno.EPERM),
    ("alloc larger than the user range",
     lambda s: s.enc.emm.alloc(None, s.enc.user_end - s.enc.user_base + PAGE, COD),
     errno.ENOMEM),
    # dealloc
    ("dealloc NULL", lambda s: s.enc.emm.dealloc(0, PAGE), errno.EINVAL),
    ("dealloc unaligned", lambda s: s.enc.emm.dealloc(s.cod + 8, PAGE), errno.EINVAL),
    ("dealloc size 0", lambda s: s.enc.emm.dealloc(s.cod, 0), errno.EINVAL),
    ("dealloc wrapping", lambda s: s.enc.emm.dealloc(s.cod, U64 - PAGE), errno.EINVAL),
    ("dealloc free space", lambda s: s.enc.emm.dealloc(s.free, PAGE), errno.EINVAL),
    ("dealloc starting in free space",
     lambda s: s.enc.emm.dealloc(s.cod - PAGE, 2 * PAGE), errno.EINVAL),
    ("dealloc metadata", lambda s: s.enc.emm.dealloc(s.meta, PAGE), errno.EACCES),
    # commit
    ("commit RESERVE", lambda s: s.enc.emm.commit(s.res, PAGE), errno.EACCES),
    ("commit read-only", lambda s: s.enc.emm.commit(s.ro, PAGE), errno.EACCES),
    ("commit TCS", lambda s: s.enc.emm.commit(s.tcs, PAGE), errno.EACCES),
    ("commit metadata", lambda s: s.enc.emm.commit(s.meta, PAGE), errno.EACCES),
    ("commit past the region", lambda s: s.enc.emm.commit(s.cod, 64 * PAGE), errno.EINVAL),
    ("commit free", lambda s: s.enc.emm.commit(s.free, PAGE), errno.EINVAL),
    ("commit unaligned size", lambda s: s.enc.emm.commit(s.cod, 0x800), errno.EINVAL),
    # uncommit
    ("uncommit RESERVE", lambda s: s.enc.emm.uncommit(s.res, PAGE), errno.EACCES),
    ("uncommit metadata", lambda s: s.enc.emm.uncommit(s.meta, PAGE), errno.EACCES),
    ("uncommit past the region", lambda s: s.enc.emm.uncommit(s.cod, 64 * PAGE),
     errno.EINVAL),
    ("uncommit free", lambda s: s.enc.emm.uncommit(s.free, PAGE), errno.EINVAL),
    ("uncommit size 0", lambda s: s.enc.emm.uncommit(s.cod, 0), errno.EINVAL),
    # modify_permissions
    ("modify_permissions bad bits",
     lambda s: s.enc.emm.modify_permissions(s.now, PAGE, 8), errno.EINVAL),
    ("modify_permissions X without R",
     lambda s: s.enc.emm.modify_permissions(s.now, PAGE, int(PROT_EXEC)), errno.EINVAL),
    ("modify_permissions uncommitted",
     lambda s: s.enc.emm.modify_permissions(s.cod, 4 * PAGE, PROT_READ), errno.EINVAL),
    ("modify_permissions RESERVE",
     lambda s: s.enc.emm.modify_permissions(s.res, PAGE, PROT_READ), errno.EACCES),
    ("modify_permissions TCS",
     lambda s: s.enc.emm.modify_permissions(s.tcs, PAGE, PROT_READ), errno.EACCES),
    ("modify_permissions metadata",
     lambda s: s.enc.emm.modify_permissions(s.meta, PAGE, PROT_READ), errno.EACCES),
    ("modify_permissions size 0",
     lambda s: s.enc.emm.modify_permissions(s.now, 0, PROT_READ), errno.EINVAL),
    ("modify_permissions past the region",
     lambda s: s.enc.emm.modify_permissions(s.rx, 64 * PAGE, PROT_READ), errno.EINVAL),
    ("modify_permissions free",
     lambda s: s.enc.emm.modify_permissions(s.free, PAGE, PROT_READ), errno.EINVAL),
    # modify_type
    ("modify_type to REG", lambda s: s.enc.emm.modify_type(s.now, PAGE, int(PAGE_TYPE_REG)),
     errno.EPERM),
    ("modify_type to TRIM",
     lambda s: s.enc.emm.modify_type(s.now, PAGE, int(PAGE_TYPE_TRIM)), errno.EPERM),
    ("modify_type two pages",
     lambda s: s.enc.emm.modify_type(s.now, 2 * PAGE, int(PAGE_TYPE_TCS)), errno.EINVAL),
    ("modify_type unaligned",
     lambda s: s.enc.emm.modify_type(s.now + 8, PAGE, int(PAGE_TYPE_TCS)), errno.EINVAL),
    ("modify_type free", lambda s: s.enc.emm.modify_type(s.free, PAGE, int(PAGE_TYPE_TCS)),
     errno.EINVAL),
    ("modify_type uncommitted",
     lambda s: s.enc.emm.modify_type(s.cod + 3 * PAGE, PAGE, int(PAGE_TYPE_TCS)),
     errno.EACCES),
    ("modify_type RESERVE",
     lambda s: s.enc.emm.modify_type(s.res, PAGE, int(PAGE_TYPE_TCS)), errno.EACCES),
    ("modify_type read-only",
     lambda s: s.enc.emm.modify_type(s.ro, PAGE, int(PAGE_TYPE_TCS)), errno.EACCES),
    ("modify_type metadata",
     lambda s: s.enc.emm.modify_type(s.meta, PAGE, int(PAGE_TYPE_TCS)), errno.EACCES),
    # commit_data
    ("commit_data size 0", lambda s: s.enc.emm.commit_data(s.cod + 2 * PAGE, 0, s.now,
                                                           PROT_READ), errno.EINVAL),
    ("commit_data unaligned data",
     lambda s: s.enc.emm.commit_data(s.cod + 2 * PAGE, PAGE, s.now + 8, PROT_READ),
     errno.EINVAL),
    ("commit_data bad prot bits",
     lambda s: s.enc.emm.commit_data(s.cod + 2 * PAGE, PAGE, s.now, 8), errno.EINVAL),
    ("commit_data X without R",
     lambda s: s.enc.emm.commit_data(s.cod + 2 * PAGE, PAGE, s.now, int(PROT_EXEC)),
     errno.EINVAL),
    ("commit_data data outside ELRANGE",
     lambda s: s.enc.emm.commit_data(s.cod + 2 * PAGE, PAGE, s.enc.base + s.enc.size,
                                     PROT_READ), errno.EINVAL),
    ("commit_data committed page",
     lambda s: s.enc.emm.commit_data(s.cod + PAGE, 2 * PAGE, s.now, PROT_READ), errno.EACCES),
    ("commit_data COMMIT_NOW region",
     lambda s: s.enc.emm.commit_data(s.now, PAGE, s.now, PROT_READ), errno.EINVAL),
    ("commit_data RESERVE",
     lambda s: s.enc.emm.commit_data(s.res, PAGE, s.now, PROT_READ), errno.EACCES),
    ("commit_data free",
     lambda s: s.enc.emm.commit_data(s.free, PAGE, s.now, PROT_READ), errno.EINVAL),
    ("commit_data past the region",
     lambda s: s.enc.emm.commit_data(s.cod + 2 * PAGE, 64 * PAGE, s.now, PROT_READ),
     errno.EINVAL),
]


@pytest.mark.parametrize(("call", "code"), [(c_, e) for _, c_, e in BAD_CALLS],
                         ids=[n for n, _, _ in BAD_CALLS])
def test_bad_input_gives_the_errno_and_changes_nothing(scene: Scene, call: BadCall,
                                                      code: int) -> None:
    enc = scene.enc
    with enc.enter():
        before = snapshot(enc)
        with pytest.raises(EmmError) as info:
            call(scene)
        after = snapshot(enc)
    assert info.value.errno == code, errno.errorcode.get(info.value.errno or 0)
    assert after == before
    assert not enc.crashed


def test_capi_returns_the_errno_instead_of_raising(scene: Scene) -> None:
    enc = scene.enc
    with enc.enter():
        before = snapshot(enc)
        assert c.sgx_mm_alloc(scene.cod, PAGE, COD | FIXED, None, None) == (errno.EEXIST, 0)
        assert c.sgx_mm_dealloc(scene.free, PAGE) == errno.EINVAL
        assert c.sgx_mm_commit(scene.res, PAGE) == errno.EACCES
        assert c.sgx_mm_uncommit(scene.free, PAGE) == errno.EINVAL
        assert c.sgx_mm_modify_permissions(scene.now, PAGE, 8) == errno.EINVAL
        assert c.sgx_mm_modify_type(scene.now, PAGE, int(PAGE_TYPE_REG)) == errno.EPERM
        assert c.sgx_mm_commit_data(scene.now, PAGE, scene.now, PROT_READ) == errno.EINVAL
        assert snapshot(enc) == before


def test_capi_outside_an_enclave_thread_is_refused(scene: Scene) -> None:
    with pytest.raises(RuntimeError):
        c.sgx_mm_dealloc(scene.free, PAGE)


def test_ocall_refusal_is_efault_and_changes_no_region(scene: Scene) -> None:
    """W without R passes the manager's checks; the driver refuses the restriction."""
    enc = scene.enc
    with enc.enter():
        before = snapshot(enc)
        with pytest.raises(EmmError) as info:
            enc.emm.modify_permissions(scene.now, PAGE, int(PROT_WRITE))
        after = snapshot(enc)
    assert info.value.errno == errno.EFAULT
    assert (after.user, after.rts, after.epcm, after.records) == (
        before.user, before.rts, before.epcm, before.records)


def test_user_calls_never_touch_the_runtime_root(scene: Scene) -> None:
    enc = scene.enc
    rts = enc.emm.regions("rts")
    code = rts[0].start  # the image's code, an rts region
    with enc.enter():
        calls: list[Callable[[], None]] = [
            lambda: enc.emm.dealloc(code, PAGE),
            lambda: enc.emm.uncommit(code, PAGE),
            lambda: enc.emm.modify_permissions(code, PAGE, PROT_READ)]
        for call in calls:
            with pytest.raises(EmmError) as info:
                call()
            assert info.value.errno == errno.EINVAL
    assert enc.emm.regions("rts") == rts


# ------------------------------------------------------- unhandled faults

def test_unhandled_fault_crashes_and_the_enclave_stays_crashed() -> None:
    enc = small_enclave()
    with enc.enter() as t:
        addr = enc.emm.alloc(None, PAGE, CNOW)
        enc.emm.modify_permissions(addr, PAGE, PROT_READ)
        assert t.read(addr, 1) == b"\x00"
        with pytest.raises(EnclaveCrashed) as info:
            t.write(addr, b"x")  # committed, region says READ: nobody handles it
    assert info.value.vector == 14
    assert info.value.errcd is not None and info.value.errcd & 0x2  # a write
    assert enc.crashed
    with pytest.raises(EnclaveCrashed), enc.enter():
        pass
    with pytest.raises(EnclaveCrashed), enc.enter():  # and again: it stays dead
        pass


def test_fault_on_free_address_crashes() -> None:
    enc = small_enclave()
    free = enc.user_end - 64 * PAGE
    with pytest.raises(EnclaveCrashed), enc.enter() as t:
        t.read(free, 1)
    assert enc.crashed


def test_registered_handler_that_searches_on_still_crashes() -> None:
    enc = small_enclave()
    seen: list[ExceptionRecord] = []

    def observer(record: ExceptionRecord) -> int:
        seen.append(record)
        return EXCEPTION_CONTINUE_SEARCH

    enc.register_exception_handler(observer)
    with pytest.raises(EnclaveCrashed), enc.enter() as t:
        addr = enc.emm.alloc(None, PAGE, CNOW)
        enc.emm.modify_permissions(addr, PAGE, PROT_READ)
        t.write(addr + 5, b"x")
    assert [(r.vector, r.maddr) for r in seen] == [(14, addr + 5)]  # full address: EXINFO


def test_registered_handler_can_fix_the_fault() -> None:
    """After the manager declines, sgx_register_exception_handler's handlers run."""
    enc = small_enclave()

    def fixer(record: ExceptionRecord) -> int:
        page = record.maddr & ~(PAGE - 1)
        assert c.sgx_mm_modify_permissions(page, PAGE, PROT_READ_WRITE) == 0
        return EXCEPTION_CONTINUE_EXECUTION

    enc.register_exception_handler(fixer)
    with enc.enter() as t:
        addr = enc.emm.alloc(None, PAGE, CNOW)
        enc.emm.modify_permissions(addr, PAGE, PROT_READ)
        t.write(addr, b"fixed")
        assert t.read(addr, 5) == b"fixed"
    assert not enc.crashed
    check_invariants(enc)
    assert enc.unregister_exception_handler(fixer)
    assert not enc.unregister_exception_handler(fixer)
    with pytest.raises(EnclaveCrashed), enc.enter() as t:
        enc.emm.modify_permissions(addr, PAGE, PROT_READ)
        t.write(addr, b"again")  # nobody fixes it now


def test_custom_region_handler_declining_crashes() -> None:
    enc = small_enclave()
    faults: list[PfInfo] = []

    def decline(pfinfo: PfInfo, private: object) -> int:
        faults.append(pfinfo)
        return EXCEPTION_CONTINUE_SEARCH

    with pytest.raises(EnclaveCrashed), enc.enter() as t:
        addr = enc.emm.alloc(None, PAGE, COD, decline)
        t.read(addr, 1)
    assert len(faults) == 1 and faults[0].sgx and not faults[0].rw


def test_modify_type_of_a_page_without_a_valid_tcs_crashes() -> None:
    """EACCEPT(TCS) checks the page's TCS fields (NSSA 0 here): #GP, as on hardware."""
    enc = small_enclave()
    with pytest.raises(EnclaveCrashed) as info, enc.enter():
        addr = enc.emm.alloc(None, PAGE, CNOW)
        enc.emm.modify_type(addr, PAGE, int(PAGE_TYPE_TCS))
    assert info.value.vector == 13
    assert enc.crashed


# ------------------------------------------------------------------ aborts

def test_fault_on_a_reserve_page_aborts() -> None:
    enc = small_enclave()
    with pytest.raises(EnclaveAbort), enc.enter() as t:
        addr = enc.emm.alloc(None, 2 * PAGE, int(RESERVE))
        t.read(addr + PAGE, 1)
    assert enc.crashed
    with pytest.raises((EnclaveCrashed, EnclaveAbort)), enc.enter():
        pass


def test_fault_on_an_uncommitted_commit_now_page_aborts() -> None:
    enc = small_enclave()
    with pytest.raises(EnclaveAbort), enc.enter() as t:
        addr = enc.emm.alloc(None, 2 * PAGE, CNOW)
        enc.emm.uncommit(addr, PAGE)
        t.write(addr, b"x")
    assert enc.crashed


# -------------------------------------------------------- outside views

def test_host_read_gives_ff_and_host_write_is_dropped() -> None:
    enc = small_enclave()
    with enc.enter() as t:
        addr = enc.emm.alloc(None, 2 * PAGE, COD)
        t.write(addr, b"secret")
    assert enc.host_read(addr, 6) == b"\xff" * 6
    assert enc.host_read(addr + PAGE - 3, 6) == b"\xff" * 6  # across a page boundary
    enc.machine.host_write(addr, b"evil!!")
    with enc.enter() as t:
        assert t.read(addr, 6) == b"secret"
        assert t.read(addr + PAGE, 1) == b"\x00"  # the host touched it: EAUG, still pending
    check_invariants(enc)


def test_host_read_of_unmapped_memory_is_efault() -> None:
    enc = small_enclave()
    with pytest.raises(OSError) as info:
        enc.host_read(enc.base + enc.size + PAGE, 4)
    assert info.value.errno == errno.EFAULT


# -------------------------------------------------------- create arguments

@pytest.mark.parametrize("kwargs", [
    {"size": 3 << 20},                                   # not a power of two
    {"size": 1 << 19},                                   # smaller than 1 MiB
    {"size": 1 << 30, "base": 0},                        # base 0
    {"size": 1 << 30, "base": 0x7F0000001000},           # base not aligned to size
    {"size": 1 << 30, "threads": 0},
    {"size": 1 << 30, "user_base": 0x7F0000000000},      # user range over the image
    {"size": 1 << 30, "user_base": 0x7F0020000800},      # unaligned user range
    {"size": 1 << 30, "user_size": 1 << 30},             # user range past ELRANGE
    {"size": 1 << 30, "user_size": 0},
    {"size": 1 << 30, "emalloc_initial": 0x1800},
    {"size": 1 << 30, "emalloc_initial": 0},
])
def test_create_validates_its_arguments(kwargs: dict[str, int]) -> None:
    args: dict[str, Any] = {"epc_pages": 1024}
    args.update(kwargs)
    with pytest.raises(ValueError):
        Enclave.create(**args)


def test_create_with_custom_user_range() -> None:
    enc = Enclave.create(size=1 << 30, epc_pages=1024, threads=1,
                         user_base=0x7F0010000000, user_size=0x100000)
    assert (enc.user_base, enc.user_end) == (0x7F0010000000, 0x7F0010100000)
    with enc.enter():
        with pytest.raises(EmmError) as info:
            enc.emm.alloc(None, 0x100000, COD)  # the metadata reserve took the start
        assert info.value.errno == errno.ENOMEM
        addr = enc.emm.alloc(None, PAGE, COD)
    assert enc.user_base <= addr < enc.user_end
    assert [r.start for r in user_regions(enc)] == [addr]


# ------------------------- inputs the reference accepts and SGX2 then refuses
# Documented deviations (docs/deviations.md 21-23): the manager refuses the call,
# or sends the ocall that keeps mapping and region in step, instead of letting the
# hardware kill the enclave.


def test_commit_data_write_only_is_einval_and_changes_nothing() -> None:
    enc = small_enclave()
    with enc.enter():
        src = enc.emm.alloc(None, PAGE, CNOW)
        dst = enc.emm.alloc(None, PAGE, COD)
        before = snapshot(enc)
        with pytest.raises(EmmError) as info:
            enc.emm.commit_data(dst, PAGE, src, int(PROT_WRITE))  # EACCEPTCOPY would #GP
        assert snapshot(enc) == before
    assert info.value.errno == errno.EINVAL
    assert "W without R" in info.value.reason
    assert not enc.crashed


@pytest.mark.parametrize("page_type", [PAGE_TYPE_SS_FIRST, PAGE_TYPE_SS_REST])
def test_commit_now_shadow_stack_is_einval_and_changes_nothing(page_type: int) -> None:
    enc = small_enclave()
    with enc.enter():
        before = snapshot(enc)
        with pytest.raises(EmmError) as info:
            enc.emm.alloc(None, PAGE, CNOW | int(page_type))  # EACCEPT SS|PENDING: #GP
        assert snapshot(enc) == before
    assert info.value.errno == errno.EINVAL
    assert not enc.crashed


def test_explicit_commit_in_an_rwx_region_leaves_the_page_rw() -> None:
    """What the spec says commit does (EACCEPT REG|RW|PENDING) even where the region
    is RWX: the EPCM and the region then disagree (only the fault path has the
    deviation that gives the page the region's prot)."""
    enc = small_enclave()
    with enc.enter():
        addr = enc.emm.alloc(None, 2 * PAGE, CNOW)
        enc.emm.modify_permissions(addr, 2 * PAGE, PROT_READ_WRITE | PROT_EXEC)
        enc.emm.uncommit(addr, PAGE)
        enc.emm.commit(addr, PAGE)
    page = accepted_at(enc, addr)
    assert page is not None and page.rwx == PROT_READ_WRITE
    assert user_regions(enc)[0].prot == PROT_READ_WRITE | PROT_EXEC


def test_page_uncommitted_from_prot_none_can_be_touched_again() -> None:
    """The region is made READ for the trim and the trim notify carries that READ,
    so the mapping stays readable and the next read commits the page on demand."""
    enc = small_enclave()
    with enc.enter() as t:
        addr = enc.emm.alloc(None, 2 * PAGE, COD)
        t.write(addr, b"x")
        enc.emm.modify_permissions(addr, PAGE, PROT_NONE)
        enc.emm.uncommit(addr, PAGE)
        (region, _) = user_regions(enc)
        assert region.prot == PROT_READ and not region.committed[0]
        vma = enc.machine.mm.find_vma(addr)
        assert vma is not None and vma.prot == PROT_READ
        assert t.read(addr, 1) == b"\x00"  # committed again on demand, as the region says
    check_invariants(enc)


def test_reclaim_lets_an_enclave_commit_more_than_the_epc_holds() -> None:
    small = Enclave.create(size=1 << 30, epc_pages=256, threads=1, reclaim=True)
    with small.enter() as t:
        addr = small.emm.alloc(None, 512 * PAGE, COD)
        for i in range(512):
            t.write(addr + i * PAGE, bytes([i & 0xFF]))
        assert all(t.read(addr + i * PAGE, 1) == bytes([i & 0xFF]) for i in range(0, 512, 37))
    tight = Enclave.create(size=1 << 30, epc_pages=256, threads=1)
    with pytest.raises(EnclaveCrashed), tight.enter() as t:
        addr = tight.emm.alloc(None, 512 * PAGE, COD)
        for i in range(512):
            t.write(addr + i * PAGE, b"x")  # no free EPC page: SIGBUS, reported

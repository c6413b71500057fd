"""Enclave memory accesses (platform.md C): page tables first, EPCM second, the
exact error codes, AEX clearing the reported address's low bits while SSA EXINFO
keeps it whole, and 0xFF for reads from outside."""

from __future__ import annotations

import pytest
from platform_support import (
    DATA,
    DYN,
    DYN_X,
    PAGE,
    RW,
    TEXT,
    UNMAPPED,
    Small,
)

from sgx_emm.platform import FaultReported, ModifyTypes, RestrictPermissions, Run
from sgx_emm.platform.secinfo import ERESUME, PT_TRIM


def errcd_of(s: Small, action: str, addr: int, tcs: int | None = None) -> tuple[int, int]:
    with s.machine.vdso.inline(Run(tcs=tcs or s.tcs1)) as t:
        with pytest.raises(FaultReported) as err:
            if action == "read":
                t.read(addr, 4)
            elif action == "write":
                t.write(addr, b"abcd")
            else:
                t.fetch(addr, 4)
        return err.value.run.exception_error_code, err.value.run.exception_addr


@pytest.mark.parametrize(("action", "code"), [("read", 0x4), ("write", 0x6), ("fetch", 0x14)])
def test_not_present_read_write_fetch(s: Small, action: str, code: int) -> None:
    assert errcd_of(s, action, s.a(UNMAPPED) + 0x123) == (code, s.a(UNMAPPED))


def test_reported_fault_keeps_the_ssa_frame_until_nssa_is_exhausted(s: Small) -> None:
    errcd_of(s, "read", s.a(UNMAPPED))      # CSSA 0 -> 1
    errcd_of(s, "read", s.a(UNMAPPED))      # entered at CSSA 1 -> 2 = NSSA
    run = Run(tcs=s.tcs1)
    with pytest.raises(FaultReported), s.machine.vdso.inline(run):
        pass
    assert run.exception_vector == 13


def test_pte_read_only_write_is_7(s: Small) -> None:
    s.machine.mprotect(s.a(DATA), PAGE, 0x1)
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        t.read(s.a(DATA), 4)                       # maps the PTE read-only
    assert errcd_of(s, "write", s.a(DATA) + 8) == (0x7, s.a(DATA))


def test_pte_nx_fetch_is_15(s: Small) -> None:
    assert errcd_of(s, "fetch", s.a(DATA)) == (0x15, s.a(DATA))


def test_epcm_x_clear_fetch_is_8015(s: Small) -> None:
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        assert t.eaccept(0x20B, s.a(DYN_X)) == 0   # RWX mapping, EPCM RW
    assert errcd_of(s, "fetch", s.a(DYN_X)) == (0x8015, s.a(DYN_X))


def test_fetch_from_text_works(s: Small) -> None:
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        assert t.fetch(s.a(TEXT), 4) == b"\x90" * 4


def test_pending_page_read_and_write(s: Small) -> None:
    assert errcd_of(s, "read", s.a(DYN)) == (0x8005, s.a(DYN))       # EAUG then 0x8005
    assert errcd_of(s, "write", s.a(DYN) + 4) == (0x8007, s.a(DYN))


def test_trim_page_read_is_8005(s: Small) -> None:
    assert s.fd.modify_types(ModifyTypes(DATA, PAGE, PT_TRIM)) == 0
    assert errcd_of(s, "read", s.a(DATA)) == (0x8005, s.a(DATA))


def test_tcs_page_access_from_enclave(s: Small) -> None:
    assert errcd_of(s, "read", s.tcs2) == (0x8005, s.tcs2)
    assert errcd_of(s, "write", s.tcs2) == (0x8007, s.tcs2)


def test_epcm_w_clear_write_is_8007_and_pr_alone_blocks_nothing(s: Small) -> None:
    assert s.fd.restrict_permissions(RestrictPermissions(DATA, PAGE, 0x1)) == 0
    assert errcd_of(s, "write", s.a(DATA)) == (0x8007, s.a(DATA))
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        t.read(s.a(DATA), 4)          # PR set, R still there: reads work


def test_access_spanning_pages_faults_on_first_bad_page(s: Small) -> None:
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        t.write(s.a(DATA) + PAGE - 2, b"abcd")
        assert t.read(s.a(DATA) + PAGE - 2, 4) == b"abcd"
    last = s.a(DATA + 3 * PAGE) + PAGE - 2
    code, addr = errcd_of(s, "write", last)
    assert (code, addr) == (0x8007, s.tcs2)              # the next page is TCS#2
    with s.machine.vdso.inline(Run(tcs=s.tcs2)) as t:
        assert t.read(last, 2) == b"\0\0"               # nothing was written


def test_ssa_holds_full_address_and_exit_info(s: Small) -> None:
    seen: dict[str, int] = {}

    def handler(run: Run) -> int:
        with s.machine.vdso.inline(Run(tcs=run.tcs)) as t2:
            assert t2.level == 1
            frame = t2.ssa(0)
            seen.update(vector=frame.vector, valid=int(frame.exitinfo_valid),
                        maddr=frame.exinfo_maddr, errcd=frame.exinfo_errcd,
                        reported=run.exception_addr)
        return 0

    with pytest.raises(FaultReported) as err, \
            s.machine.vdso.inline(Run(tcs=s.tcs1, user_handler=handler)) as t:
        t.write(s.a(DYN) + 0x567, b"x")
    assert seen == {"vector": 14, "valid": 1, "maddr": s.a(DYN) + 0x567, "errcd": 0x8007,
                    "reported": s.a(DYN)}
    assert err.value.run.handler_result == 0
    assert err.value.run.function == ERESUME


def test_host_read_gives_ff_and_host_write_is_dropped(s: Small) -> None:
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        t.write(s.a(DATA), b"secret")
    assert s.machine.host_read(s.a(DATA), 6) == b"\xff" * 6
    s.machine.host_write(s.a(DATA), b"XXXXXX")
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        assert t.read(s.a(DATA), 6) == b"secret"
    with pytest.raises(OSError):
        s.machine.host_read(s.a(UNMAPPED), 4)


def test_untouched_committed_page_reads_zero_without_buffer(s: Small) -> None:
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        assert t.eaccept(0x20B, s.a(DYN)) == 0
        assert t.read(s.a(DYN), 16) == bytes(16)
        assert s.slot(s.a(DYN)) not in s.machine.epc.contents
        t.write(s.a(DYN), b"\x01")
        assert s.slot(s.a(DYN)) in s.machine.epc.contents


def test_bad_access_arguments_raise_value_error(s: Small) -> None:
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        with pytest.raises(ValueError):
            t.read(s.a(DATA), -1)
        with pytest.raises(ValueError):
            t.read(-5, 1)


def test_thread_after_eexit_is_not_inside(s: Small) -> None:
    from sgx_emm.platform import NotInsideEnclave
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        pass
    with pytest.raises(NotInsideEnclave):
        t.read(s.a(DATA), 1)


def test_trace_counts_faults_by_error_code(s: Small) -> None:
    errcd_of(s, "write", s.a(DYN))
    counts = s.machine.trace.by_category()
    assert counts["pf"]["0x6"] >= 1 and counts["pf"]["0x8007"] == 1
    assert counts["leaf"]["EAUG"] == 1
    assert counts["aex"]["#PF"] >= 2
    assert RW == 3

"""EnclaveCrashed.cause and EnclaveAbort.cause: one sentence saying what went wrong."""

from __future__ import annotations

import pytest

from sgx_emm import EmmError, Enclave, EnclaveAbort, EnclaveCrashed
from sgx_emm.diagnosis import fault_text, pfec_text
from sgx_emm.flags import COMMIT_NOW, PAGE_SIZE, PROT_READ, RESERVE
from sgx_emm.runtime.urts import UntrustedRuntime


def small(untrusted: type[UntrustedRuntime] = UntrustedRuntime) -> Enclave:
    return Enclave.create(size=1 << 30, epc_pages=4096, threads=2, untrusted_runtime=untrusted)


class SkipsRestrict(UntrustedRuntime):
    def restrict_permissions(self, addr: int, length: int, prot: int) -> None:
        pass


class SkipsMmap(UntrustedRuntime):
    def alloc_ocall(self, addr: int, length: int, page_type: int, alloc_flags: int) -> int:
        return 0


def test_pfec_bits_are_decoded() -> None:
    assert pfec_text(0x8007) == ("write of a present page, refused by the EPCM "
                                 "(PFEC 0x8007: P W U SGX)")
    assert pfec_text(0x14).startswith("instruction fetch of a page the page tables do not map")
    assert fault_text(13, 0) == "#GP(0)"


def test_an_unhandled_write_to_a_read_only_page_names_the_page_and_the_handlers() -> None:
    enc = small()
    with pytest.raises(EnclaveCrashed) as info, enc.enter() as t:
        addr = enc.emm.alloc(None, PAGE_SIZE, COMMIT_NOW)
        enc.emm.modify_permissions(addr, PAGE_SIZE, PROT_READ)
        t.write(addr, b"x")
    cause = info.value.cause
    assert f"at {addr:#x} (u+{addr - enc.user_base:#x})" in cause
    assert "#PF (write of a present page" in cause
    assert "the manager's #PF handler returned CONTINUE_SEARCH" in cause
    assert "R--" in cause  # the page's state: read-only
    assert cause in str(info.value)


def test_a_livelock_says_what_the_handler_returned_and_why_nothing_changed() -> None:
    enc = small(SkipsRestrict)
    with pytest.raises(EnclaveCrashed, match="livelock") as info, enc.enter() as t:
        addr = enc.emm.alloc(None, PAGE_SIZE, COMMIT_NOW)
        with pytest.raises(EmmError):
            enc.emm.modify_permissions(addr, PAGE_SIZE, PROT_READ)
        t.write(addr, b"x")
    cause = info.value.cause
    assert "times without progress" in cause
    assert "the manager's #PF handler returned CONTINUE_EXECUTION" in cause
    assert "nothing changed" in cause and "read-only" in cause


def test_runaway_nesting_names_the_fault_it_started_with() -> None:
    with pytest.raises(EnclaveCrashed, match="nested") as info:
        small(SkipsMmap)
    cause = info.value.cause
    assert cause.startswith("exception handling nested 32 levels deep: while handling #PF")
    assert "the same fault every time" in cause


def test_an_abort_has_a_cause() -> None:
    enc = small()
    with pytest.raises(EnclaveAbort) as info, enc.enter() as t:
        addr = enc.emm.alloc(None, PAGE_SIZE, RESERVE)
        t.write(addr, b"x")
    assert "does not commit on demand" in info.value.cause
    assert "RESERVE" in info.value.cause


def test_a_livelock_cause_quotes_what_the_kernel_last_answered() -> None:
    """The platform's livelock note carries the kernel's last answer; the cause keeps
    that answer and drops the note's own repetition of the livelock."""
    from sgx_emm import Enclave, diagnosis

    enc = Enclave.create()
    note = ("the same fault was delivered 256 times without progress (livelock); "
            "last kernel answer: ELDU of 0x1000 failed with SGX_MAC_COMPARE_FAIL (9)")
    cause = diagnosis.livelock_cause(enc, 13, 0, 0x1000, 256, [], "", note)
    assert cause.endswith("; the kernel: ELDU of 0x1000 failed with SGX_MAC_COMPARE_FAIL (9)")
    assert "livelock" not in cause
    bare = diagnosis.livelock_cause(enc, 13, 0, 0x1000, 256, [], "",
                                    "the same fault was delivered 256 times (livelock)")
    assert "the kernel" not in bare

"""A hostile OS is a small subclass of the untrusted runtime (design.md).

Each test swaps one ocall service for one that skips its work but reports
success, and checks that the trusted side is not fooled: it relies only on what
the hardware tells it (EACCEPT results, faults), so the lie ends in an error, an
abort or a crash, never in the enclave believing something false.
"""

from __future__ import annotations

import pytest

from sgx_emm import EmmError, Enclave, EnclaveAbort, EnclaveCrashed
from sgx_emm.flags import COMMIT_NOW, COMMIT_ON_DEMAND, PAGE_SIZE, PROT_READ, PROT_READ_WRITE
from sgx_emm.runtime.urts import UntrustedRuntime

SGX_PAGE_ATTRIBUTES_MISMATCH = 19


class SkipsRestrict(UntrustedRuntime):
    """Says it restricted permissions (EMODPR) but did not."""

    def restrict_permissions(self, addr: int, length: int, prot: int) -> None:
        return None


class SkipsTrim(UntrustedRuntime):
    """Says it changed pages to TRIM (EMODT) but did not."""

    def modify_types(self, addr: int, length: int, page_type: int) -> None:
        return None


class SkipsRemove(UntrustedRuntime):
    """Never removes trimmed pages, hoping to hand the old contents back later."""

    def remove_pages(self, addr: int, length: int) -> None:
        return None


class SkipsMmap(UntrustedRuntime):
    """Says it mapped a range for EAUG but did not."""

    def alloc_ocall(self, addr: int, length: int, page_type: int, alloc_flags: int) -> int:
        return 0


def small(untrusted: type[UntrustedRuntime]) -> Enclave:
    return Enclave.create(size=1 << 30, epc_pages=4096, threads=2, untrusted_runtime=untrusted)


def test_a_skipped_restrict_is_caught_by_eaccept() -> None:
    enc = small(SkipsRestrict)
    with enc.enter():
        addr = enc.emm.alloc(None, PAGE_SIZE, COMMIT_NOW)
        with pytest.raises(EmmError) as info:
            enc.emm.modify_permissions(addr, PAGE_SIZE, PROT_READ)
        # the EACCEPT of REG|PR|R does not match the still-RW EPCM entry
        assert info.value.errno == SGX_PAGE_ATTRIBUTES_MISMATCH
        region = next(r for r in enc.emm.regions() if r.start == addr)
        assert region.prot == PROT_READ_WRITE  # the manager did not believe the OS


def test_a_skipped_restrict_then_a_read_only_pte_is_a_crash_not_a_hang() -> None:
    enc = small(SkipsRestrict)
    with pytest.raises(EnclaveCrashed, match="livelock"), enc.enter() as t:
        addr = enc.emm.alloc(None, PAGE_SIZE, COMMIT_NOW)
        with pytest.raises(EmmError):
            enc.emm.modify_permissions(addr, PAGE_SIZE, PROT_READ)
        t.write(addr, b"x")  # the OS keeps the PTE read-only: denial of service only
    assert enc.crashed
    with pytest.raises(EnclaveCrashed):
        enc.enter().__enter__()


def test_a_skipped_trim_makes_the_enclave_abort() -> None:
    enc = small(SkipsTrim)
    with pytest.raises(EnclaveAbort), enc.enter():
        addr = enc.emm.alloc(None, PAGE_SIZE, COMMIT_NOW)
        enc.emm.uncommit(addr, PAGE_SIZE)  # EACCEPT(TRIM|MODIFIED) on a REG page fails
    assert enc.crashed


def test_a_skipped_remove_never_gives_the_old_contents_back() -> None:
    enc = small(SkipsRemove)
    with pytest.raises(EnclaveAbort), enc.enter() as t:
        addr = enc.emm.alloc(None, PAGE_SIZE, COMMIT_ON_DEMAND)
        t.write(addr, b"secret")
        enc.emm.uncommit(addr, PAGE_SIZE)  # trimmed and accepted; the OS keeps the page
        data = t.read(addr, 6)  # the manager must EACCEPT a fresh page: it cannot
        pytest.fail(f"read returned {data!r} from a page the enclave trimmed")


def test_a_skipped_mmap_crashes_the_enclave_at_start() -> None:
    # the first metadata reserve cannot be committed: every EACCEPT faults again
    with pytest.raises(EnclaveCrashed, match="nested"):
        small(SkipsMmap)


def test_the_honest_runtime_does_all_of_it() -> None:
    enc = small(UntrustedRuntime)
    with enc.enter() as t:
        addr = enc.emm.alloc(None, 2 * PAGE_SIZE, COMMIT_ON_DEMAND)
        t.write(addr, b"secret")
        enc.emm.modify_permissions(addr, PAGE_SIZE, PROT_READ)
        assert t.read(addr, 6) == b"secret"
        enc.emm.uncommit(addr, PAGE_SIZE)
        assert t.read(addr, 6) == bytes(6)  # a fresh page after the trim
    assert not enc.crashed

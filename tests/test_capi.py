"""sgx_emm.capi: the private mm_* calls return C results on the rts root, and every
call acts on the enclave of the calling thread."""

from __future__ import annotations

import errno

import pytest

from sgx_emm import Enclave
from sgx_emm import capi as c
from sgx_emm.flags import (
    COMMIT_NOW,
    COMMIT_ON_DEMAND,
    PAGE_SIZE,
    PAGE_TYPE_TCS,
    PROT_READ,
    RESERVE,
    SYSTEM,
)
from sgx_emm.platform import TcsImage


def test_private_calls_return_c_results_on_the_rts_root() -> None:
    enc = Enclave.create(size=1 << 30, epc_pages=4096, threads=2)
    with enc.enter() as t:
        ret, addr = c.mm_alloc(None, 3 * PAGE_SIZE, COMMIT_ON_DEMAND | SYSTEM)
        assert ret == 0 and not enc.user_base <= addr < enc.user_end
        assert any(r.start == addr for r in enc.emm.regions("rts"))
        assert c.mm_commit(addr, 2 * PAGE_SIZE) == 0
        assert c.mm_uncommit(addr + PAGE_SIZE, PAGE_SIZE) == 0
        _, src = c.mm_alloc(None, PAGE_SIZE, COMMIT_NOW | SYSTEM)
        t.write(src, b"data")
        assert c.mm_commit_data(addr + 2 * PAGE_SIZE, PAGE_SIZE, src, PROT_READ) == 0
        assert t.read(addr + 2 * PAGE_SIZE, 4) == b"data"
        assert c.mm_modify_permissions(addr + 2 * PAGE_SIZE, PAGE_SIZE, PROT_READ) == 0
        t.write(addr, TcsImage(ossa=0, nssa=1).to_bytes())
        assert c.mm_modify_type(addr, PAGE_SIZE, PAGE_TYPE_TCS) == 0
        assert c.mm_dealloc(addr, 3 * PAGE_SIZE) == 0
        assert c.mm_dealloc(addr, 3 * PAGE_SIZE) == errno.EINVAL
        # errors come back as the C integers, and a failed alloc leaves out_addr NULL
        assert c.mm_alloc(None, PAGE_SIZE, 0) == (errno.EINVAL, 0)
        assert c.mm_modify_type(src, PAGE_SIZE, PROT_READ) == errno.EPERM
        free = enc.base + 0x1000_0000  # below the user range, past the image
        assert c.mm_init_ema(free, PAGE_SIZE, RESERVE | SYSTEM, 0) == 0
        assert c.mm_init_ema(free, PAGE_SIZE, RESERVE | SYSTEM, 0) == errno.EINVAL  # overlap
        assert c.sgx_mm_alloc(None, PAGE_SIZE, COMMIT_NOW | SYSTEM) == (errno.EINVAL, 0)


def test_capi_needs_an_enclave_entry() -> None:
    with pytest.raises(RuntimeError, match="not inside an enclave"):
        c.sgx_mm_alloc(None, PAGE_SIZE, COMMIT_NOW)


def test_capi_acts_on_the_enclave_the_thread_is_in() -> None:
    one = Enclave.create(size=1 << 30, epc_pages=2048, threads=1)
    two = Enclave.create(base=0x7E00_0000_0000, size=1 << 30, epc_pages=2048, threads=1)
    with two.enter():
        ret, addr = c.sgx_mm_alloc(None, PAGE_SIZE, COMMIT_NOW)
    assert ret == 0 and two.user_base <= addr < two.user_end
    assert any(r.start == addr for r in two.emm.regions())
    assert not any(r.start == addr for r in one.emm.regions())

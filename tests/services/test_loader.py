"""Loading code: EACCEPTCOPY (dynamic loader) and write-then-protect (JIT), W^X."""

from __future__ import annotations

import errno

import pytest
from services_support import small

from sgx_emm import EmmError, Enclave, EnclaveCrashed
from sgx_emm.flags import PAGE_SIZE, PROT_READ, PROT_READ_EXEC, PROT_READ_WRITE_EXEC
from sgx_emm.services import NotInsideEnclave


def user_regions(enc: Enclave) -> list[object]:
    return [r for r in enc.emm.regions("user") if not r.is_meta]


CODE = bytes.fromhex("554889e5b82a0000005dc3")     # push rbp; mov rbp,rsp; mov eax,42; ...


def test_dynamic_loader_copies_with_eacceptcopy(enc: Enclave) -> None:
    with enc.enter() as t:
        before = enc.trace.counts
        addr = enc.loader.load(CODE * 500)                   # two pages
        flow = enc.trace.counts - before
        # each page: EACCEPTCOPY meets no page, the kernel EAUGs it, EACCEPTCOPY again
        assert flow[("leaf", "EACCEPTCOPY")] == 4 and flow[("leaf", "EAUG")] == 4
        assert t.fetch(addr, len(CODE)) == CODE
        assert t.fetch(addr + PAGE_SIZE, 4) == (CODE * 500)[PAGE_SIZE:PAGE_SIZE + 4]
        (region,) = [r for r in enc.emm.regions("user") if r.start == addr]
        assert region.prot == PROT_READ_EXEC and region.size == 2 * PAGE_SIZE
        # the staging buffer is gone: only the code's region is left
        assert [r.start for r in user_regions(enc)] == [addr]


def test_jit_writes_then_protects(enc: Enclave) -> None:
    with enc.enter() as t:
        before = enc.trace.counts
        addr = enc.loader.load(CODE, jit=True)
        flow = enc.trace.counts - before
        assert flow[("leaf", "EMODPR")] == 1 and flow[("leaf", "EMODPE")] == 1
        assert flow[("leaf", "EACCEPTCOPY")] == 0
        assert t.fetch(addr, len(CODE)) == CODE
        assert [code.jit for code in enc.loader.loaded()] == [True]


def test_loaded_code_is_never_writable(enc: Enclave) -> None:
    with enc.enter():
        for prot in (PROT_READ_WRITE_EXEC, 0x2, 0x4, 0x8):
            with pytest.raises(ValueError, match="prot"):
                enc.loader.load(CODE, prot=prot)
        data = enc.loader.load(b"constant", prot=PROT_READ)
        assert data
    with pytest.raises(EnclaveCrashed), enc.enter() as t:
        addr = enc.loader.load(CODE)
        t.write(addr, b"\x90")


def test_unload_gives_the_pages_back(enc: Enclave) -> None:
    with enc.enter():
        addr = enc.loader.load(CODE)
        before = enc.trace.counts
        enc.loader.unload(addr)
        assert (enc.trace.counts - before)[("ioctl", "REMOVE_PAGES")] == 1
        assert user_regions(enc) == [] and enc.loader.loaded() == []
        with pytest.raises(ValueError, match="no code was loaded"):
            enc.loader.unload(addr)


def test_bad_input(enc: Enclave) -> None:
    with enc.enter():
        with pytest.raises(ValueError, match="empty"):
            enc.loader.load(b"")
        with pytest.raises(TypeError):
            enc.loader.load("c3")  # type: ignore[arg-type]
        assert user_regions(enc) == []
    with pytest.raises(NotInsideEnclave):
        enc.loader.load(CODE)


def test_out_of_memory_leaves_nothing_behind() -> None:
    enc = small(user_size=0x20000)          # the metadata reserve takes most of it
    with enc.enter():
        regions = user_regions(enc)
        with pytest.raises(EmmError) as info:
            enc.loader.load(CODE * 2000)
        assert info.value.errno == errno.ENOMEM
        assert user_regions(enc) == regions and enc.loader.loaded() == []


def test_threads_load_and_run_code() -> None:
    enc = small(threads=3)

    def load_and_fetch(n: int) -> bytes:
        ctx = enc.current()
        assert ctx is not None
        addr = enc.loader.load(bytes([n]) * 8, jit=bool(n % 2))
        return ctx.fetch(addr, 8)

    handles = [enc.threads.create(load_and_fetch, n) for n in (1, 2)]
    assert [enc.threads.join(h) for h in handles] == [b"\1" * 8, b"\2" * 8]
    assert len(enc.loader.loaded()) == 2

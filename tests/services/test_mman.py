"""mmap, munmap, mprotect and madvise with POSIX results, on the manager."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from services_support import small

from sgx_emm import Enclave, EnclaveCrashed
from sgx_emm.flags import PAGE_SIZE, PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE
from sgx_emm.services import NotInsideEnclave
from sgx_emm.services.mman import (
    MADV_DONTNEED,
    MADV_WILLNEED,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_POPULATE,
    MAP_PRIVATE,
    MAP_SHARED,
)

RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS


def errno_of(call: object) -> int:
    with pytest.raises(OSError) as info:
        call()  # type: ignore[operator]
    return int(info.value.errno or 0)


def test_anonymous_read_write_memory_commits_on_touch(enc: Enclave) -> None:
    with enc.enter() as t:
        before = enc.trace.counts
        a = enc.mman.mmap(None, 3 * PAGE_SIZE, RW)
        assert (enc.trace.counts - before)[("leaf", "EAUG")] == 0
        assert t.read(a + PAGE_SIZE, 4) == bytes(4)                 # zero-filled
        t.write(a, b"abc")
        assert (enc.trace.counts - before)[("leaf", "EAUG")] == 2
        populated = enc.mman.mmap(None, 2 * PAGE_SIZE, RW, ANON | MAP_POPULATE)
        (region,) = [r for r in enc.emm.regions("user") if r.start == populated]
        assert all(region.committed)


def test_protections_as_asked(enc: Enclave) -> None:
    with enc.enter() as t:
        ro = enc.mman.mmap(None, PAGE_SIZE, PROT_READ)
        assert t.read(ro, 2) == b"\0\0"
        rx = enc.mman.mmap(None, PAGE_SIZE, PROT_EXEC)        # X implies R on x86
        assert t.fetch(rx, 1) == b"\0"
        none = enc.mman.mmap(None, PAGE_SIZE, PROT_NONE)
        prots = {r.start: r.prot for r in enc.emm.regions("user")}
        assert prots[ro] == PROT_READ and prots[rx] == PROT_READ | PROT_EXEC
        assert prots[none] == PROT_NONE
        assert [m.start for m in enc.mman.mappings()] == sorted([ro, rx, none])


def test_fixed_replaces_and_noreplace_refuses(enc: Enclave) -> None:
    with enc.enter() as t:
        a = enc.mman.mmap(None, 4 * PAGE_SIZE, RW)
        t.write(a + PAGE_SIZE, b"old")
        b = enc.mman.mmap(a + PAGE_SIZE, PAGE_SIZE, RW, ANON | MAP_FIXED)
        assert b == a + PAGE_SIZE and t.read(b, 3) == bytes(3)        # new, zeroed
        assert [(m.start - a, m.end - a) for m in enc.mman.mappings()] == [
            (0, PAGE_SIZE), (PAGE_SIZE, 2 * PAGE_SIZE), (2 * PAGE_SIZE, 4 * PAGE_SIZE)]
        assert errno_of(lambda: enc.mman.mmap(a, PAGE_SIZE, RW,
                                              ANON | MAP_FIXED_NOREPLACE)) == errno.EEXIST
        free = a + 0x100000
        assert enc.mman.mmap(free, PAGE_SIZE, RW, ANON | MAP_FIXED_NOREPLACE) == free
        hinted = enc.mman.mmap(free + 0x10000, PAGE_SIZE, RW)          # a free hint
        assert hinted == free + 0x10000


def test_partial_munmap_and_mprotect_split_mappings(enc: Enclave) -> None:
    with enc.enter() as t:
        a = enc.mman.mmap(None, 4 * PAGE_SIZE, RW)
        t.write(a + 2 * PAGE_SIZE, b"keep")
        enc.mman.mprotect(a + 2 * PAGE_SIZE, PAGE_SIZE, PROT_READ)
        assert t.read(a + 2 * PAGE_SIZE, 4) == b"keep"                  # contents survive
        enc.mman.munmap(a + PAGE_SIZE, PAGE_SIZE)
        got = [(m.start - a, m.end - a, int(m.prot)) for m in enc.mman.mappings()]
        assert got == [(0, PAGE_SIZE, RW), (2 * PAGE_SIZE, 3 * PAGE_SIZE, PROT_READ),
                       (3 * PAGE_SIZE, 4 * PAGE_SIZE, RW)]
        enc.mman.munmap(a, 0x100000)                 # unmapped parts are no error
        assert enc.mman.mappings() == []
        none = enc.mman.mmap(None, PAGE_SIZE, PROT_NONE)
        enc.mman.mprotect(none, PAGE_SIZE, RW)       # a reserve becomes usable memory
        t.write(none, b"now")
        assert t.read(none, 3) == b"now"


def test_a_write_to_a_read_only_mapping_crashes(enc: Enclave) -> None:
    with pytest.raises(EnclaveCrashed), enc.enter() as t:
        ro = enc.mman.mmap(None, PAGE_SIZE, PROT_READ)
        t.write(ro, b"x")


def test_madvise(enc: Enclave) -> None:
    with enc.enter() as t:
        a = enc.mman.mmap(None, 2 * PAGE_SIZE, RW)
        t.write(a, b"gone soon")
        enc.mman.madvise(a, 2 * PAGE_SIZE, MADV_DONTNEED)
        assert t.read(a, 9) == bytes(9)                  # zeros again, as on Linux
        enc.mman.madvise(a, 2 * PAGE_SIZE, MADV_WILLNEED)
        (region,) = [r for r in enc.emm.regions("user") if r.start == a]
        assert all(region.committed)
        ro = enc.mman.mmap(None, PAGE_SIZE, PROT_READ)
        assert errno_of(lambda: enc.mman.madvise(ro, PAGE_SIZE, MADV_DONTNEED)) == errno.EINVAL
        assert errno_of(lambda: enc.mman.madvise(a, PAGE_SIZE, 99)) == errno.EINVAL
        assert errno_of(lambda: enc.mman.madvise(a + 0x100000, PAGE_SIZE,
                                                 MADV_DONTNEED)) == errno.ENOMEM


def test_posix_errors(enc: Enclave) -> None:
    m = enc.mman
    with enc.enter():
        a = m.mmap(None, PAGE_SIZE, RW)
        before = m.mappings()
        assert errno_of(lambda: m.mmap(None, 0, RW)) == errno.EINVAL
        assert errno_of(lambda: m.mmap(None, PAGE_SIZE, 0x10)) == errno.EINVAL
        assert errno_of(lambda: m.mmap(None, PAGE_SIZE, RW, MAP_ANONYMOUS)) == errno.EINVAL
        assert errno_of(lambda: m.mmap(None, PAGE_SIZE, RW,
                                       ANON | MAP_SHARED)) == errno.EINVAL
        assert errno_of(lambda: m.mmap(None, PAGE_SIZE, RW, MAP_PRIVATE)) == errno.ENODEV
        assert errno_of(lambda: m.mmap(a + 1, PAGE_SIZE, RW, ANON | MAP_FIXED)) == errno.EINVAL
        assert errno_of(lambda: m.mmap(None, PAGE_SIZE, RW, ANON | MAP_FIXED)) == errno.EINVAL
        assert errno_of(lambda: m.mmap(enc.base, PAGE_SIZE, RW,
                                       ANON | MAP_FIXED)) == errno.ENOMEM
        assert errno_of(lambda: m.mmap(None, 1 << 40, RW)) == errno.ENOMEM
        assert errno_of(lambda: m.munmap(a + 1, PAGE_SIZE)) == errno.EINVAL
        assert errno_of(lambda: m.munmap(a, 0)) == errno.EINVAL
        assert errno_of(lambda: m.mprotect(a, 2 * PAGE_SIZE, PROT_READ)) == errno.ENOMEM
        assert errno_of(lambda: m.mprotect(a, PAGE_SIZE, 0x8)) == errno.EINVAL
        with pytest.raises(TypeError):
            m.mmap(None, "4096", RW)  # type: ignore[arg-type]
        assert m.mappings() == before
    with pytest.raises(NotInsideEnclave):
        m.mmap(None, PAGE_SIZE, RW)


def test_w_xor_x_when_enforced(enc: Enclave) -> None:
    m = enc.mman
    with enc.enter() as t:
        rwx = m.mmap(None, PAGE_SIZE, RW | PROT_EXEC)          # allowed by default
        t.write(rwx, b"\xc3")
        assert t.fetch(rwx, 1) == b"\xc3"
        m.wx = True
        assert errno_of(lambda: m.mmap(None, PAGE_SIZE, RW | PROT_EXEC)) == errno.EACCES
        a = m.mmap(None, PAGE_SIZE, RW)
        assert errno_of(lambda: m.mprotect(a, PAGE_SIZE, RW | PROT_EXEC)) == errno.EACCES
        m.mprotect(a, PAGE_SIZE, PROT_READ | PROT_EXEC)          # W then X is fine


# ------------------------------------------------------------------ a model
PAGES = 12


@settings(max_examples=30)
@given(st.lists(st.tuples(st.sampled_from(["map", "fixed", "unmap", "protect", "touch"]),
                          st.integers(0, PAGES - 1), st.integers(1, 4),
                          st.sampled_from([PROT_NONE, PROT_READ, RW])), max_size=25))
def test_mappings_follow_a_page_model(steps: list[tuple[str, int, int, int]]) -> None:
    """Against a page -> prot model: which pages are mapped, with what protection,
    and that data written survives mprotect and disappears with munmap."""
    enc = small(threads=1)
    m = enc.mman
    model: dict[int, int] = {}
    data: dict[int, int] = {}
    with enc.enter() as t:
        base = m.mmap(None, PAGES * PAGE_SIZE, RW)      # find a free window, then drop it
        m.munmap(base, PAGES * PAGE_SIZE)
        for op, first, count, prot in steps:
            count = min(count, PAGES - first)
            addr, pages = base + first * PAGE_SIZE, range(first, first + count)
            if op in ("map", "fixed"):
                flags = ANON | (MAP_FIXED if op == "fixed" else MAP_FIXED_NOREPLACE)
                if op == "map" and any(p in model for p in pages):
                    with pytest.raises(OSError) as info:
                        m.mmap(addr, count * PAGE_SIZE, prot, flags)
                    assert info.value.errno == errno.EEXIST
                    continue
                assert m.mmap(addr, count * PAGE_SIZE, prot, flags) == addr
                for p in pages:
                    model[p] = prot
                    data.pop(p, None)
            elif op == "unmap":
                m.munmap(addr, count * PAGE_SIZE)
                for p in pages:
                    model.pop(p, None)
                    data.pop(p, None)
            elif op == "protect":
                if not all(p in model for p in pages):
                    with pytest.raises(OSError) as info:
                        m.mprotect(addr, count * PAGE_SIZE, prot)
                    assert info.value.errno == errno.ENOMEM
                    continue
                m.mprotect(addr, count * PAGE_SIZE, prot)
                for p in pages:
                    model[p] = prot
            elif model.get(first) == RW:
                t.write(addr, bytes([first + 1]))
                data[first] = first + 1
            got: dict[int, int] = {}
            for mapping in m.mappings():
                for a in range(mapping.start, mapping.end, PAGE_SIZE):
                    got[(a - base) // PAGE_SIZE] = int(mapping.prot)
            assert got == model
        for p, byte in data.items():
            if model.get(p, PROT_NONE) & PROT_READ:
                assert t.read(base + p * PAGE_SIZE, 1) == bytes([byte])
    assert not enc.crashed


def test_mprotect_none_then_read_keeps_the_contents_of_an_on_demand_mapping() -> None:
    """Found by the page model: the second mprotect tried to commit a PROT_NONE region
    (commit EACCEPTs RW), though the first mprotect had committed every page."""
    enc = Enclave.create()
    with enc.enter() as t:
        m = enc.mman
        addr = m.mmap(None, 2 * PAGE_SIZE, RW, ANON)
        t.write(addr, b"kept")
        m.mprotect(addr, 2 * PAGE_SIZE, PROT_NONE)
        m.mprotect(addr, 2 * PAGE_SIZE, PROT_READ)
        assert t.read(addr, 4) == b"kept"
        assert t.read(addr + PAGE_SIZE, 1) == b"\0"
        assert [int(x.prot) for x in m.mappings()] == [PROT_READ]
    assert enc.check() == []

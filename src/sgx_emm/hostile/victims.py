"""The bundled victim workloads: ordinary enclave code that checks its own data.

Each victim runs inside an entered enclave thread, uses one manager flow the
attacks aim at, publishes the addresses an attacker would learn anyway (it
served the mmap), and checks with `marks.expect` that every byte it reads is one
it wrote, or zero for a page it never wrote. A victim never looks at the
hardware: judging the books is the harness's job (`enc.check()`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sgx_emm.flags import (
    COMMIT_NOW,
    COMMIT_ON_DEMAND,
    FIXED,
    PAGE_SIZE,
    PROT_READ,
    PROT_READ_WRITE,
)
from sgx_emm.hostile.base import Marks, Victim
from sgx_emm.platform import TcsImage

if TYPE_CHECKING:
    from sgx_emm.enclave import Enclave, ThreadContext

P = PAGE_SIZE
#: the victim's secret; the controlled-channel victim leaks it page by page
SECRET = bytes.fromhex("5ec2e7a9")


def _secret(i: int) -> bytes:
    return bytes([0x40 + i]) * 8 + SECRET


def commit(enc: Enclave, t: ThreadContext, marks: Marks) -> None:
    """COMMIT_ON_DEMAND pages committed by faults and by `commit`; COMMIT_NOW pages."""
    emm = enc.emm
    heap = marks.publish("heap", emm.alloc(None, 4 * P, COMMIT_ON_DEMAND))
    emm.commit(heap + 3 * P, P)
    for i in range(4):
        t.write(heap + i * P, _secret(i))
    marks.reached("written")
    now = marks.publish("now", emm.alloc(None, 2 * P, COMMIT_NOW))
    for i in range(2):
        marks.expect(t.read(now + i * P, 12) == bytes(12), "a fresh COMMIT_NOW page is zero")
        t.write(now + i * P, _secret(10 + i))
    for i in range(4):
        marks.expect(t.read(heap + i * P, 12) == _secret(i), f"heap page {i} reads back")
    for i in range(2):
        marks.expect(t.read(now + i * P, 12) == _secret(10 + i), f"now page {i} reads back")
    emm.dealloc(heap, 4 * P)
    emm.dealloc(now, 2 * P)


def restrict(enc: Enclave, t: ThreadContext, marks: Marks) -> None:
    """Make pages read-only (EMODPR + EACCEPT), read them, then writable again."""
    emm = enc.emm
    a = marks.publish("page", emm.alloc(None, 2 * P, COMMIT_NOW))
    t.write(a, _secret(1))
    emm.modify_permissions(a, 2 * P, PROT_READ)
    marks.expect(t.read(a, 12) == _secret(1), "a read-only page keeps its data")
    emm.modify_permissions(a, P, PROT_READ_WRITE)
    t.write(a, _secret(2))
    marks.expect(t.read(a, 12) == _secret(2), "a page made writable again takes writes")
    emm.dealloc(a, 2 * P)


def trim(enc: Enclave, t: ThreadContext, marks: Marks) -> None:
    """Uncommit and free pages that held a secret; what comes back must be zeros."""
    emm = enc.emm
    a = marks.publish("page", emm.alloc(None, 2 * P, COMMIT_ON_DEMAND))
    t.write(a, _secret(3))
    t.write(a + P, _secret(4))
    emm.uncommit(a, P)
    marks.expect(t.read(a, 12) == bytes(12), "an uncommitted page comes back as zeros")
    emm.dealloc(a, 2 * P)
    again = emm.alloc(a, 2 * P, COMMIT_ON_DEMAND | FIXED)
    marks.expect(t.read(again + P, 12) == bytes(12), "a freed page comes back as zeros")
    emm.dealloc(again, 2 * P)


def tcs(enc: Enclave, t: ThreadContext, marks: Marks) -> None:
    """Turn a committed page into a TCS (EMODT + EACCEPT), then free it."""
    emm = enc.emm
    a = marks.publish("page", emm.alloc(None, P, COMMIT_NOW))
    t.write(a, TcsImage(ossa=0, nssa=1).to_bytes())
    emm.modify_type(a, P, 0x100)
    region = next(r for r in emm.regions() if r.start == a)
    marks.expect(region.page_type == 0x100, "the page is a TCS in the books")
    emm.dealloc(a, P)


def commit_data(enc: Enclave, t: ThreadContext, marks: Marks) -> None:
    """Copy pages in with EACCEPTCOPY, read them, free them, then reuse the range."""
    emm = enc.emm
    src = emm.alloc(None, 2 * P, COMMIT_NOW)
    t.write(src, _secret(5))
    t.write(src + P, _secret(6))
    dst = marks.publish("dest", emm.alloc(None, 3 * P, COMMIT_ON_DEMAND))
    emm.commit_data(dst, 2 * P, src, PROT_READ_WRITE)
    marks.expect(t.read(dst, 12) == _secret(5), "the first copied page")
    marks.expect(t.read(dst + P, 12) == _secret(6), "the second copied page")
    emm.dealloc(dst, 3 * P)
    again = emm.alloc(dst, 3 * P, COMMIT_ON_DEMAND | FIXED)
    for i in range(3):
        marks.expect(t.read(again + i * P, 12) == bytes(12), f"reused page {i} is zero")
    emm.dealloc(again, 3 * P)
    emm.dealloc(src, 2 * P)


#: pages the paging victim writes: more than its enclave's EPC holds
PAGING_PAGES = 160


def paging(enc: Enclave, t: ThreadContext, marks: Marks) -> None:
    """Write more pages than the EPC holds (EWB / ELDU), then read every one back."""
    emm = enc.emm
    a = marks.publish("heap", emm.alloc(None, PAGING_PAGES * P, COMMIT_ON_DEMAND))
    for i in range(PAGING_PAGES):
        t.write(a + i * P, bytes([i, 0]) + SECRET)
    marks.reached("written")
    for rounds in (1, 2):
        for i in range(PAGING_PAGES):
            got = t.read(a + i * P, 6)
            marks.expect(got == bytes([i, rounds - 1]) + SECRET,
                         f"page {i} read back {got.hex()} (round {rounds})")
            t.write(a + i * P + 1, bytes([rounds]))
    emm.dealloc(a, PAGING_PAGES * P)


#: pages of the controlled-channel victim's lookup table: one per nibble value
TABLE_PAGES = 16


def table(enc: Enclave, t: ThreadContext, marks: Marks) -> None:
    """Secret-dependent lookups in a page-per-entry table (a classic T-table shape)."""
    emm = enc.emm
    tbl = marks.publish("table", emm.alloc(None, TABLE_PAGES * P, COMMIT_NOW))
    for i in range(TABLE_PAGES):
        t.write(tbl + i * P, bytes([i]))
    marks.reached("table_ready")
    out = 0
    for byte in SECRET:
        for nibble in (byte >> 4, byte & 0xF):
            out = (out << 4) | t.read(tbl + nibble * P, 1)[0]
    marks.reached("table_done")
    marks.expect(out == int.from_bytes(SECRET, "big"), "the lookups computed the secret")
    emm.dealloc(tbl, TABLE_PAGES * P)


def two_threads(enc: Enclave, t: ThreadContext, marks: Marks) -> None:
    """Restrict a page while a second enclave thread is inside (tracking matters)."""
    emm = enc.emm
    a = marks.publish("page", emm.alloc(None, P, COMMIT_NOW))
    t.write(a, _secret(7))
    with enc.enter() as other:
        marks.expect(other.read(a, 12) == _secret(7), "the second thread sees the data")
        marks.reached("written")
        emm.modify_permissions(a, P, PROT_READ)
        marks.expect(other.read(a, 12) == _secret(7), "the second thread still reads")
    marks.expect(t.read(a, 12) == _secret(7), "a read-only page keeps its data")
    emm.dealloc(a, P)


VICTIMS: dict[str, Victim] = {
    "commit": commit, "restrict": restrict, "trim": trim, "tcs": tcs,
    "commit_data": commit_data, "paging": paging, "table": table,
    "two_threads": two_threads,
}

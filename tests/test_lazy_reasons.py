"""EmmError reasons given as a function are formatted when read, and read the same.

The manager raises its most frequent refusals (commit on a read-only region,
mprotect of an uncommitted page) with `EmmError(err, function, *values)` so a
caller that never reads the reason never pays for it. Everything a caller can
see must equal the error built with the text up front.
"""

from __future__ import annotations

import errno
import pickle

from sgx_emm import EmmError, Enclave
from sgx_emm.flags import COMMIT_ON_DEMAND, PAGE_SIZE, PROT_READ


def not_writable(start: int, end: int) -> str:
    return f"region {start:#x}-{end:#x} is not writable"


def test_a_lazy_reason_reads_as_the_eager_one() -> None:
    calls: list[tuple[int, int]] = []

    def counted(start: int, end: int) -> str:
        calls.append((start, end))
        return not_writable(start, end)

    lazy = EmmError(errno.EACCES, counted, 0x1000, 0x2000)
    eager = EmmError(errno.EACCES, not_writable(0x1000, 0x2000))
    assert calls == []  # nothing formatted at the raise
    assert lazy.reason == eager.reason == "region 0x1000-0x2000 is not writable"
    assert str(lazy) == str(eager) and repr(lazy) == repr(eager)
    assert lazy.strerror == eager.strerror and lazy.args == eager.args
    assert lazy.errno == eager.errno == errno.EACCES
    assert calls == [(0x1000, 0x2000)]  # formatted once, however often read
    back = pickle.loads(pickle.dumps(lazy))
    assert type(back) is EmmError and back.errno == errno.EACCES
    assert back.reason == eager.reason


def test_the_managers_lazy_refusal_names_the_region_as_it_was_at_the_raise() -> None:
    enc = Enclave.create(size=1 << 30, epc_pages=2048, threads=2)
    with enc.enter():
        a = enc.emm.alloc(None, PAGE_SIZE, COMMIT_ON_DEMAND)
        enc.emm.commit(a, PAGE_SIZE)
        enc.emm.modify_permissions(a, PAGE_SIZE, PROT_READ)
        try:
            enc.emm.commit(a, PAGE_SIZE)
        except EmmError as exc:
            caught = exc
        enc.emm.dealloc(a, PAGE_SIZE)  # the region is gone before the reason is read
    assert caught.errno == errno.EACCES
    assert caught.reason == (f"region {a:#x}-{a + PAGE_SIZE:#x} (COMMIT_ON_DEMAND, REG|R) "
                             "is not writable (commit EACCEPTs RW)")

"""Shared set-up for the manager tests: a manager over the null runtime.

Layout (small numbers so failures read easily): ELRANGE [0x10000000, 0x20000000),
user range [0x18000000, 0x20000000), meta area at 0x10001000. The first metadata
reserve (guard / 64 KiB on-demand region / guard) takes [USER_BASE, FIRST_FREE).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

import pytest

from sgx_emm.emm import EnclaveMemoryManager, Region
from sgx_emm.emm.emalloc import MetaAllocator
from sgx_emm.errors import EmmError
from sgx_emm.runtime.null import NullRuntime

BASE = 0x10000000
SIZE = 0x10000000
USER_BASE = 0x18000000
USER_END = 0x20000000
META_AREA = 0x10001000
FIRST_FREE = USER_BASE + 0x20000
PAGE = 0x1000

RW_REG = 0x203
SECINFO_COMMIT = 0x20B  # REG | RW | PENDING
SECINFO_TRIM = 0x410  # TRIM | MODIFIED


class FailingMeta(MetaAllocator):
    """The real allocator, but `fail_mallocs` lets the next n mallocs return None."""

    fail_after: int | None = None

    def malloc(self, size: int) -> int | None:
        if self.fail_after is not None:
            if self.fail_after == 0:
                return None
            self.fail_after -= 1
        return super().malloc(size)

    def bump_region(self, data_size: int, touched_lo: int,
                    touched_hi: int) -> tuple[int, int, int] | None:
        """Off while failures are armed: every block then goes through `malloc`."""
        if self.fail_after is not None:
            return None
        return super().bump_region(data_size, touched_lo, touched_hi)


def make(*, record: bool = True, leaky: bool = True,
         runtime_cls: Callable[..., NullRuntime] = NullRuntime,
         ) -> tuple[EnclaveMemoryManager, NullRuntime]:
    rt = runtime_cls(BASE, SIZE, record=record)
    mgr = EnclaveMemoryManager(
        rt, rt.primitives, meta_area_base=META_AREA,
        meta_allocator=lambda host: FailingMeta(host, meta_area_base=META_AREA, leaky=leaky))
    mgr.init(USER_BASE, USER_END)
    rt.reset()
    return mgr, rt


def meta(mgr: EnclaveMemoryManager) -> FailingMeta:
    m = mgr.meta_allocator
    assert isinstance(m, FailingMeta)
    return m


def state(mgr: EnclaveMemoryManager) -> tuple[list[Region], list[Region]]:
    return mgr.regions("user"), mgr.regions("rts")


def seq(rt: NullRuntime) -> list[tuple[Any, ...]]:
    """Recorded calls as plain tuples: (name, *args)."""
    return [(c.name, *c.args) for c in rt.calls]


def call(name: str, *args: int) -> tuple[Any, ...]:
    return (name, *args)


def expect_error(code: int, fn: Callable[..., Any], *args: Any) -> None:
    with pytest.raises(EmmError) as info:
        fn(*args)
    assert info.value.errno == code, (
        f"expected {errno.errorcode.get(code)}, got {errno.errorcode.get(info.value.errno)}")


def rejects(mgr: EnclaveMemoryManager, rt: NullRuntime, code: int, fn: Callable[..., Any],
            *args: Any) -> None:
    """`fn(*args)` fails with `code`, issues no ocall or leaf, and changes no region."""
    before = state(mgr)
    rt.reset()
    expect_error(code, fn, *args)
    assert rt.calls == []
    assert state(mgr) == before


def user_spans(mgr: EnclaveMemoryManager) -> list[tuple[int, int, int]]:
    """(start, size, alloc_flags) of the non-metadata user regions."""
    return [(r.start, r.size, r.alloc_flags) for r in mgr.regions() if not r.is_meta]



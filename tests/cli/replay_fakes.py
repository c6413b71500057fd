"""A small stand-in enclave for testing the replay runner and the renderers alone.

It keeps regions as plain lists and emits a few trace events so that the runner's
bookkeeping (addresses of lines, threads, per-call counts, dead enclave) can be
checked without the platform. The CLI tests run on the real enclave.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sgx_emm import flags as F
from sgx_emm.emm.rt import PfInfo
from sgx_emm.errors import EmmError, EnclaveAbort, EnclaveCrashed
from sgx_emm.trace import ENTRY, LEAF, OCALL, Trace

BASE = 0x7F0000000000
SIZE = 1 << 36
USER_BASE = BASE + SIZE // 2
#: Accesses here make the fake enclave crash / abort, as an unhandled fault would.
CRASH_ADDR = USER_BASE + 0xDEAD000
ABORT_ADDR = USER_BASE + 0xAB0000


@dataclass
class FakeRegion:
    start: int
    size: int
    alloc_flags: int
    si_flags: int
    committed: list[bool]
    handler: Any = None
    is_meta: bool = False


@dataclass
class FakeEmm:
    trace: Trace
    regions_by_root: dict[str, list[FakeRegion]] = field(
        default_factory=lambda: {"user": [], "rts": []})
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    next_user: int = USER_BASE + 0x100000
    next_rts: int = BASE + 0x1000000

    def regions(self, root: str = "user") -> list[FakeRegion]:
        return sorted(self.regions_by_root[root], key=lambda r: r.start)

    def _alloc(self, root: str, addr: int | None, size: int, flags: int, handler: Any) -> int:
        if flags & F.FIXED and addr is not None and self._find(root, addr):
            raise EmmError(errno.EEXIST)
        if addr is None:
            if root == "user":
                addr, self.next_user = self.next_user, self.next_user + size
            else:
                addr, self.next_rts = self.next_rts, self.next_rts + size
        pages = size // F.PAGE_SIZE
        now = bool(flags & F.COMMIT_NOW)
        self.regions_by_root[root].append(
            FakeRegion(addr, size, flags & 0xFF, 3 | F.PAGE_TYPE_REG, [now] * pages, handler))
        if not flags & F.RESERVE:
            self.trace.emit(OCALL, "alloc_ocall")
        for _ in range(pages if now else 0):
            self.trace.emit(LEAF, "EACCEPT")
        return addr

    def _find(self, root: str, addr: int) -> FakeRegion | None:
        for r in self.regions_by_root[root]:
            if r.start <= addr < r.start + r.size:
                return r
        return None

    def _need(self, root: str, addr: int) -> FakeRegion:
        region = self._find(root, addr)
        if region is None:
            raise EmmError(errno.EINVAL)
        return region

    def alloc(self, addr: int | None, size: int, flags: int, handler: Any = None,
              private: Any = None) -> int:
        if flags & F.SYSTEM:
            raise EmmError(errno.EINVAL)
        return self._alloc("user", addr, size, flags, handler)

    def mm_alloc(self, addr: int | None, size: int, flags: int, handler: Any = None,
                 private: Any = None) -> int:
        return self._alloc("rts", addr, size, flags, handler)

    def __getattr__(self, name: str) -> Any:
        """dealloc, commit, ... and their mm_ forms: check the region, record the call."""
        root = "rts" if name.startswith("mm_") else "user"
        op = name.removeprefix("mm_")
        if op not in ("dealloc", "commit", "uncommit", "commit_data", "modify_type",
                      "modify_permissions", "init_ema"):
            raise AttributeError(name)

        def call(addr: int, size: int, *rest: Any, **kw: Any) -> None:
            self.calls.append((name, addr, size, *rest))
            if op == "init_ema":
                if self._find(root, addr):
                    raise EmmError(errno.EINVAL)
                self.regions_by_root[root].append(FakeRegion(addr, size, rest[0] & 0xFF,
                                                             rest[1], [False] * (size >> 12)))
                return
            region = self._need(root, addr)
            if op == "commit":
                first = (addr - region.start) >> 12
                for i in range(first, first + (size >> 12)):
                    if not region.committed[i]:
                        region.committed[i] = True
                        self.trace.emit(LEAF, "EACCEPT")
            if op == "dealloc":
                self.regions_by_root[root].remove(region)
        return call

    def handle_page_fault(self, pfinfo: PfInfo) -> int:
        region = self._find("user", pfinfo.maddr) or self._find("rts", pfinfo.maddr)
        if region is None:
            return F.EXCEPTION_CONTINUE_SEARCH
        if region.handler is not None:
            result: int = region.handler(pfinfo, None)
            return result
        region.committed[(pfinfo.maddr - region.start) >> 12] = True
        self.trace.emit(LEAF, "EACCEPT")
        return F.EXCEPTION_CONTINUE_EXECUTION


class FakeThread:
    def __init__(self, enclave: FakeEnclave, tcs: int) -> None:
        self.enclave = enclave
        self.tcs = tcs

    def _check(self, addr: int) -> None:
        if addr == CRASH_ADDR:
            raise EnclaveCrashed("unhandled #PF", vector=14, errcd=0x4, addr=addr)
        if addr == ABORT_ADDR:
            raise EnclaveAbort("abort() in the fault handler")

    def read(self, addr: int, n: int) -> bytes:
        self._check(addr)
        self.enclave.accesses.append(("read", self.tcs, addr))
        return bytes(self.enclave.memory.get(addr + i, 0) for i in range(n))

    def fetch(self, addr: int, n: int) -> bytes:
        return self.read(addr, n)

    def write(self, addr: int, data: bytes) -> None:
        self._check(addr)
        self.enclave.accesses.append(("write", self.tcs, addr))
        for i, b in enumerate(data):
            self.enclave.memory[addr + i] = b


class FakeEnclave:
    def __init__(self, threads: int = 4) -> None:
        self.base = BASE
        self.size = SIZE
        self.user_base = USER_BASE
        self.user_end = BASE + SIZE
        self.trace = Trace()
        self.emm = FakeEmm(self.trace)
        self.tcs_addresses = [BASE + 0x100000 + i * 0x10000 for i in range(threads)]
        self.memory: dict[int, int] = {}
        self.accesses: list[tuple[str, int, int]] = []
        self.entered: list[int] = []

    @contextmanager
    def enter(self, tcs: int | None = None) -> Iterator[FakeThread]:
        assert tcs is not None
        self.entered.append(tcs)
        self.trace.emit(ENTRY, "EENTER")
        try:
            yield FakeThread(self, tcs)
        finally:
            self.trace.emit(ENTRY, "EEXIT")

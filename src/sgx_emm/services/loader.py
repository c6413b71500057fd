"""Loading code into the enclave (`enc.loader`), W^X throughout.

Two ways, the two the manager was made for:

- as a dynamic loader does (the default): the code is first written into a
  read-write staging buffer, then `commit_data` copies it page by page into a
  fresh on-demand region with the final permissions in one leaf each
  (EACCEPTCOPY: the page is never writable), and the buffer is freed;
- as a JIT does (`jit=True`): the code is written into freshly committed
  read-write pages, which `modify_permissions` then makes read-execute
  (EMODPR through the driver, EACCEPT, EMODPE for the X bit): the pages are
  writable first and executable after, never both.

`load(code) -> addr` returns the first byte of the code (page aligned); the
bytes come back from `t.fetch(addr, n)` inside an entry. `unload(addr)` gives
the pages back (trimmed). Writable-and-executable protections are refused.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sgx_emm.errors import EmmError
from sgx_emm.flags import (
    COMMIT_NOW,
    COMMIT_ON_DEMAND,
    PAGE_SIZE,
    PROT_EXEC,
    PROT_READ,
    PROT_READ_EXEC,
    PROT_WRITE,
)
from sgx_emm.services.entry import current

if TYPE_CHECKING:
    from sgx_emm.services.host import Host


@dataclass(frozen=True, slots=True)
class LoadedCode:
    """One loaded piece of code: where, how big (bytes and pages), how it was loaded."""

    addr: int
    length: int
    size: int
    prot: int
    jit: bool


class Loader:
    """Loads and unloads code; see the module doc."""

    def __init__(self, enc: Host) -> None:
        self._enc = enc
        self._lock = threading.Lock()
        self._loaded: dict[int, LoadedCode] = {}

    def loaded(self) -> list[LoadedCode]:
        with self._lock:
            return sorted(self._loaded.values(), key=lambda c: c.addr)

    def load(self, code: bytes, *, jit: bool = False, prot: int = PROT_READ_EXEC) -> int:
        """Put `code` into new pages with `prot` (read-execute by default, or read
        only); returns its address. ValueError for empty code or a protection that
        is writable or not readable; EmmError(ENOMEM) when memory runs out (nothing
        is left behind)."""
        if not isinstance(code, bytes | bytearray | memoryview):
            raise TypeError(f"code: expected bytes, got {type(code).__name__}")
        data = bytes(code)
        if not data:
            raise ValueError("code is empty: nothing to load")
        if isinstance(prot, bool) or not isinstance(prot, int):
            raise TypeError(f"prot: expected an int, got {type(prot).__name__}")
        if prot & PROT_WRITE or not prot & PROT_READ or prot & ~(PROT_READ | PROT_EXEC):
            raise ValueError(f"prot {prot:#x}: loaded code is read-only (PROT_READ, or "
                             "PROT_READ|PROT_EXEC); W^X forbids writable code")
        ctx = current(self._enc, "loader.load")
        emm = self._enc.emm
        size = -(-len(data) // PAGE_SIZE) * PAGE_SIZE
        padded = data + bytes(size - len(data))
        if jit:
            addr = emm.alloc(None, size, COMMIT_NOW)
            try:
                ctx.write(addr, padded)
                emm.modify_permissions(addr, size, prot)
            except EmmError:
                emm.dealloc(addr, size)
                raise
        else:
            staging = emm.alloc(None, size, COMMIT_NOW)
            try:
                ctx.write(staging, padded)
                addr = emm.alloc(None, size, COMMIT_ON_DEMAND)
                try:
                    emm.commit_data(addr, size, staging, prot)
                except EmmError:
                    emm.dealloc(addr, size)
                    raise
            finally:
                emm.dealloc(staging, size)
        with self._lock:
            self._loaded[addr] = LoadedCode(addr, len(data), size, prot, jit)
        return addr

    def unload(self, addr: int) -> None:
        """Give back the pages of code loaded at `addr`; ValueError if nothing is."""
        current(self._enc, "loader.unload")
        with self._lock:
            code = self._loaded.pop(addr, None)
        if code is None:
            where = f"{addr:#x}" if isinstance(addr, int) else repr(addr)
            raise ValueError(f"unload({where}): no code was loaded there")
        try:
            self._enc.emm.dealloc(code.addr, code.size)
        except EmmError:
            with self._lock:
                self._loaded[addr] = code
            raise

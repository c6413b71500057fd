"""The controlled channel: what an OS learns by watching the enclave's page faults.

The OS cannot read enclave memory, but it decides which pages are mapped, so it
sees every page fault's page-aligned address (Xu, Cui, Peinado, "Controlled-
Channel Attacks", IEEE S&P 2015). Unmapping the pages of a secret-dependent
lookup table and remapping each one as it faults gives the sequence of pages the
enclave touched. SGX does not hide this (AEX only clears the low 12 bits of the
address) and neither can the manager: on-demand commit, the ocalls' arguments
and EAUG requests tell the OS which pages the enclave uses, when, and how much
it allocates. These attacks never corrupt anything; their row says what leaks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sgx_emm.flags import PAGE_SIZE, PROT_READ_WRITE
from sgx_emm.hostile.base import Attack, Installer, Marks, Switch
from sgx_emm.hostile.driver import Hostile, hooks
from sgx_emm.hostile.victims import TABLE_PAGES
from sgx_emm.platform.hooks import Encl
from sgx_emm.platform.uapi import FaultResult
from sgx_emm.runtime.urts import UntrustedRuntime

if TYPE_CHECKING:
    from sgx_emm.enclave import Enclave

FAMILY = "channel"
P = PAGE_SIZE


class PageTrace(Hostile):
    """Unmap the table, log each faulting table page, remap it, unmap the last one."""

    def __init__(self, enc: Enclave, marks: Marks) -> None:
        super().__init__(enc, marks)
        self.trace: list[int] = []
        self.open: int | None = None
        self.armed = False

    def start(self) -> None:
        table = self.marks.get("table")
        assert table is not None
        self.armed = True
        self.enc.machine.kernel.mprotect(table, TABLE_PAGES * P, 0)

    def stop(self) -> None:
        table = self.marks.get("table")
        assert table is not None
        self.armed = False
        self.enc.machine.kernel.mprotect(table, TABLE_PAGES * P, PROT_READ_WRITE)

    def page_fault(self, addr: int, errcd: int) -> FaultResult | None:
        table = self.marks.get("table")
        if not self.armed or table is None or not table <= addr < table + TABLE_PAGES * P:
            return None
        page = (addr - table) // P
        self.trace.append(page)
        kernel = self.enc.machine.kernel
        if self.open is not None:
            kernel.mprotect(table + self.open * P, P, 0)
        kernel.mprotect(table + page * P, P, PROT_READ_WRITE)
        self.open = page
        return None

    def leaked(self) -> str | None:
        if not self.trace:
            return None
        nibbles = "".join(f"{n:x}" for n in self.trace)
        return (f"the page trace of the table lookups, {' '.join(nibbles)}: the secret "
                f"0x{nibbles} (no fault happens inside the enclave's own view)")


def page_trace() -> Installer:
    base = hooks(PageTrace)

    def install(enc: Enclave, marks: Marks) -> Switch:
        switch = base(enc, marks)
        h = enc.machine.kernel.hooks
        assert isinstance(h, PageTrace)
        marks.on("table_ready", h.start)
        marks.on("table_done", h.stop)
        return switch
    return install


class EaugWatch(Hostile):
    """Log every page the kernel EAUGs: the enclave's first touch of each page."""

    def __init__(self, enc: Enclave, marks: Marks) -> None:
        super().__init__(enc, marks)
        self.pages: list[int] = []

    def eaug(self, encl: Encl, addr: int) -> str | None:
        self.pages.append(addr)
        return None

    def leaked(self) -> str | None:
        heap = self.marks.get("heap")
        if heap is None:
            return None
        mine = [(a - heap) // P for a in self.pages if heap <= a < heap + 4 * P]
        return (f"{len(self.pages)} first touches; the heap pages in the order used: "
                f"{mine} (on-demand commit shows when each page is first used)")


class OcallWatcher(UntrustedRuntime):
    """The honest runtime, keeping a log of every request."""

    log: list[str]

    def alloc_ocall(self, addr: int, length: int, page_type: int, alloc_flags: int) -> int:
        self.log.append(f"alloc {length // P}p")
        return super().alloc_ocall(addr, length, page_type, alloc_flags)

    def modify_ocall(self, addr: int, length: int, flags_from: int, flags_to: int) -> int:
        self.log.append(f"modify {length // P}p {flags_from:#x}->{flags_to:#x}")
        return super().modify_ocall(addr, length, flags_from, flags_to)


def ocall_watch(enc: Enclave, marks: Marks) -> Switch:
    watcher = OcallWatcher(enc.machine.kernel, enc.fd)
    watcher.log = []
    old = enc.use_untrusted_runtime(watcher)

    def off() -> None:
        enc.use_untrusted_runtime(old)

    def leaked() -> str | None:
        return ("every allocation size and permission change: " + ", ".join(watcher.log)
                if watcher.log else None)
    return Switch(off, leaked)


def attacks() -> list[Attack]:
    return [
        Attack("channel.page-trace", FAMILY,
               "unmaps a lookup table and logs which page each access faults on",
               "none: the OS sees page-granular fault addresses (AEX clears only the low "
               "12 bits); code must not make page accesses depend on secrets",
               "table", page_trace()),
        Attack("channel.first-touch", FAMILY, "logs every EAUG (the first touch of a page)",
               "none: on-demand commit asks the OS for each page when first used; "
               "COMMIT_NOW hides the order, not the size", "commit", hooks(EaugWatch)),
        Attack("channel.ocall-arguments", FAMILY,
               "logs the manager's ocalls: addresses, sizes, permissions",
               "none: the manager must ask the OS to map and change pages; only their "
               "contents stay secret", "restrict", ocall_watch),
    ]

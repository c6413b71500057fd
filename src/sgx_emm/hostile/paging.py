"""Attacks on EPC paging: what the kernel hands back when it reloads an evicted page.

When the EPC runs short the kernel evicts enclave pages (EBLOCK, ETRACK, EWB) to
ordinary memory it controls, and reloads them with ELDU on the next touch. In
between the attacker holds the sealed page and may keep old copies, change its
bytes or swap it for another page. SGX seals every evicted page: EWB writes a
MAC over the contents and the page's metadata (address, type, permissions) and
a version kept in an EPC Version Array slot; ELDU checks both and clears the
slot, so a forged, relabelled or replayed page is refused (the kernel's SIGBUS).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from sgx_emm.flags import PAGE_SIZE
from sgx_emm.hostile.base import Attack, Marks
from sgx_emm.hostile.driver import Hostile, hooks
from sgx_emm.hostile.pagetables import at
from sgx_emm.platform.hooks import Encl
from sgx_emm.platform.state import EvictedPage
from sgx_emm.platform.uapi import FaultOutcome, FaultResult

if TYPE_CHECKING:
    from sgx_emm.enclave import Enclave

FAMILY = "paging"
P = PAGE_SIZE
#: the paging victim's enclave: paging on, an EPC smaller than what it writes
PAGING_ENCLAVE = (("reclaim", True), ("epc_pages", 160))


class ReplayOld(Hostile):
    """Keeps the first sealed copy of every page and hands it back later."""

    def __init__(self, enc: Enclave, marks: Marks) -> None:
        super().__init__(enc, marks)
        self.first: dict[int, EvictedPage] = {}
        self.loads: dict[int, int] = {}

    def eldu(self, encl: Encl, addr: int, page: EvictedPage) -> EvictedPage:
        first = self.first.setdefault(addr, page)
        n = self.loads[addr] = self.loads.get(addr, 0) + 1
        return first if n > 1 else page


class Forge(Hostile):
    """Flips bytes of the sealed contents before reloading."""

    def eldu(self, encl: Encl, addr: int, page: EvictedPage) -> EvictedPage:
        data = bytearray(page.contents or bytes(P))
        data[0] ^= 0xFF
        return replace(page, contents=bytes(data))


class Relabel(Hostile):
    """Hands back another page's sealed image, relabelled with this page's address."""

    def __init__(self, enc: Enclave, marks: Marks) -> None:
        super().__init__(enc, marks)
        self.other: EvictedPage | None = None

    def eldu(self, encl: Encl, addr: int, page: EvictedPage) -> EvictedPage:
        if self.other is None:
            self.other = page         # page B: the first sealed page it was given
        if self.other.linaddr == addr:
            return page
        return replace(self.other, linaddr=addr)


class WithholdReload(Hostile):
    """Never reloads an evicted page (the fault ends in SIGBUS)."""

    def page_fault(self, addr: int, errcd: int) -> FaultResult | None:
        if self.enc.fd.evicted(addr & ~(P - 1)) is not None:
            return FaultResult(FaultOutcome.SIGBUS, "the attacker will not reload the page")
        return None


class EvictStorm(Hostile):
    """Evicts the victim's pages at every fault and whenever it likes."""

    def strike(self) -> None:
        heap = self.marks.get("heap")
        if heap is None:
            return
        for i in range(0, 160, 7):
            self.enc.fd.evict(heap + i * P)

    def page_fault(self, addr: int, errcd: int) -> FaultResult | None:
        self.strike()
        return None


def attacks() -> list[Attack]:
    sealed = ("EWB seals the page (MAC over contents and metadata, version in a VA slot); "
              "ELDU checks both, so the page is refused and the enclave never reads it")
    return [
        Attack("paging.replay-old", FAMILY, "reloads an older sealed copy of a page",
               sealed, "paging", hooks(ReplayOld), PAGING_ENCLAVE),
        Attack("paging.forge", FAMILY, "changes the bytes of a sealed page",
               sealed, "paging", hooks(Forge), PAGING_ENCLAVE),
        Attack("paging.relabel", FAMILY,
               "reloads page B's sealed image as page A",
               sealed, "paging", hooks(Relabel), PAGING_ENCLAVE),
        Attack("paging.withhold-reload", FAMILY, "never reloads an evicted page",
               "denial of service only: the access can never complete and the enclave "
               "stops (SIGBUS reaches it as a crash)", "paging", hooks(WithholdReload),
               PAGING_ENCLAVE),
        Attack("paging.evict-storm", FAMILY, "evicts the victim's pages again and again",
               "eviction and reload are transparent to enclave code: same bytes, same "
               "permissions", "paging", at("written", EvictStorm), PAGING_ENCLAVE),
    ]

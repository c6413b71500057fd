"""EPC allocation and the reclaimer (Linux main.c: sgx_alloc_epc_page, ksgxd).

`Reclaimer.alloc` hands out a free EPC page; when the EPC is full and reclaim is
on, it first evicts one enclave page (EWB through `Encl.evict`), scanning the EPC
like a clock hand. The model runs ksgxd's work synchronously, inside the
allocation that needs it. Never evicted: SECS, TCS and VA pages, the SSA frames
of a TCS that has been entered, pages the driver marked as being reclaimed.
"""

from __future__ import annotations

from sgx_emm.platform.encl import EVICTABLE, Encl
from sgx_emm.platform.epcm import F_VALID, Epc


class Reclaimer:
    """The EPC allocator with optional eviction when the EPC is full."""

    def __init__(self, epc: Epc, *, reclaim: bool = False) -> None:
        self.epc = epc
        #: evict enclave pages (EWB) when the EPC is full; load them back (ELDU) on use
        self.enabled = reclaim
        self._enclaves: dict[int, Encl] = {}
        self._hand = 0

    def register(self, encl: Encl) -> None:
        """An enclave whose pages the reclaimer may evict (after ENCLAVE_CREATE)."""
        assert encl.secs_slot is not None
        self._enclaves[encl.secs_slot] = encl
        if self.enabled:
            encl.ensure_va()   # a VA page before the EPC fills: EWB needs a slot

    def prepare_enclaves(self) -> None:
        """Paging was switched on: each enclave gets a VA page now, while the EPC may
        still have room (eviction never makes one)."""
        for encl in self._enclaves.values():
            encl.ensure_va()

    def owner(self, secs_slot: int) -> Encl | None:
        """The enclave whose SECS is in `secs_slot`, if the driver created it."""
        return self._enclaves.get(secs_slot)

    def alloc(self, *, reclaim: bool = True) -> int | None:
        """sgx_alloc_epc_page: a free slot, evicting one page first if the EPC is full,
        reclaim is on and the caller allows it. Returns: the slot, or None."""
        slot = self.epc.alloc()
        tries = 2    # an eviction may spend the page it frees on a new VA page
        while slot is None and reclaim and self.enabled and tries and self.reclaim_one():
            slot = self.epc.alloc()
            tries -= 1
        return slot

    def reclaim_one(self) -> bool:
        """Evict one REG/TRIM/SS page, the next the clock hand finds that may go.
        Returns: True if a page was evicted."""
        epc = self.epc
        n = epc.npages
        for _ in range(n):
            slot = self._hand
            self._hand = (slot + 1) % n
            if not epc.flags[slot] & F_VALID or epc.pt[slot] not in EVICTABLE:
                continue
            encl = self._enclaves.get(epc.owner[slot])
            if encl is not None and encl.evict(epc.linaddr[slot]):
                return True
        return False

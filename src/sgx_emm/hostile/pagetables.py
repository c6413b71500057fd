"""Attacks through the page tables: mappings changed behind the enclave's back.

The OS owns the page tables and may change them at any interrupt: narrow them
(mprotect, unmap), widen them, or point a PTE at another EPC page. SGX checks
every enclave access against the EPCM after the page tables, and the EPCM binds
each page to one linear address of one enclave, so a PTE can deny service but
never grant access or substitute a page. The manager's #PF handler serves a
fault only where the EPCM confirms it (a committed page whose access is allowed
is retried, never re-accepted), so a lie ends in a fault loop, i.e. a crash.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sgx_emm.flags import PAGE_SHIFT, PAGE_SIZE
from sgx_emm.hostile.base import Attack, Installer, Marks, Switch
from sgx_emm.hostile.driver import Hostile, hooks
from sgx_emm.platform.uapi import FaultOutcome, FaultResult

if TYPE_CHECKING:
    from sgx_emm.enclave import Enclave

FAMILY = "page tables"
P = PAGE_SIZE


def at(checkpoint: str, action: type[Hostile]) -> Installer:
    """Install `action`'s hooks and run its `strike()` when the victim reaches
    `checkpoint` (the OS may act at any interrupt; the checkpoint picks one)."""
    base = hooks(action)

    def install(enc: Enclave, marks: Marks) -> Switch:
        switch = base(enc, marks)
        h = enc.machine.kernel.hooks
        marks.on(checkpoint, lambda: h.strike())  # type: ignore[union-attr]
        return switch
    return install


class MprotectNone(Hostile):
    def strike(self) -> None:
        heap = self.marks.get("heap")
        assert heap is not None
        self.enc.machine.kernel.mprotect(heap, 4 * P, 0)


class WidenEverything(Hostile):
    def map_prot(self, syscall: str, addr: int, length: int, prot: int) -> int:
        return 0x7 if prot else 0x3


class SwapPtes(Hostile):
    def strike(self) -> None:
        heap = self.marks.get("heap")
        assert heap is not None
        mm = self.enc.machine.mm
        a, b = heap >> PAGE_SHIFT, (heap + P) >> PAGE_SHIFT
        pa, pb = mm.pte(a), mm.pte(b)
        mm.set_pte(a, pb >> 3, pb & 7)
        mm.set_pte(b, pa >> 3, pa & 7)


class ZapAll(Hostile):
    def strike(self) -> None:
        enc = self.enc
        enc.machine.mm.zap(enc.base, enc.base + enc.size)


class RedirectCommitData(Hostile):
    """Maps the second destination page of commit_data onto the first one."""

    def page_fault(self, addr: int, errcd: int) -> FaultResult | None:
        dest = self.marks.get("dest")
        if dest is None or addr & ~(P - 1) != dest + P or errcd & 0x1:
            return None
        record = self.enc.fd.record(dest)
        if record is None or record[0] < 0:
            return None
        self.enc.machine.mm.set_pte((dest + P) >> PAGE_SHIFT, record[0], 0x3)
        return FaultResult(FaultOutcome.FIXED)


def attacks() -> list[Attack]:
    deny = ("the OS may deny service through the page tables, never grant or substitute: "
            "the access faults until the enclave gives up (a crash)")
    return [
        Attack("pte.mprotect-none", FAMILY,
               "mprotects the enclave's heap to PROT_NONE behind its back",
               deny, "commit", at("written", MprotectNone)),
        Attack("pte.widen-all", FAMILY,
               "maps every enclave page RWX whatever was asked",
               "the EPCM's R/W/X still decide every access: a wider PTE grants nothing",
               "restrict", hooks(WidenEverything)),
        Attack("pte.swap", FAMILY, "swaps the PTEs of two committed heap pages",
               "the EPCM binds each EPC page to one linear address: the swapped access "
               "faults (SGX bit) and can never succeed, so the enclave stops",
               "commit", at("written", SwapPtes)),
        Attack("pte.zap-all", FAMILY, "drops every PTE of the enclave (a TLB/page-table "
               "flush)", "the kernel remaps existing pages on the next touch: nothing "
               "the enclave sees changes", "commit", at("written", ZapAll)),
        Attack("pte.redirect-commit-data", FAMILY,
               "maps the second destination page of a commit_data onto the first",
               "EACCEPTCOPY accepts only a fresh PENDING page bound to the destination "
               "address; the call fails and every page it copied is trimmed again, so no "
               "stale page outlives it", "commit_data", hooks(RedirectCommitData)),
    ]

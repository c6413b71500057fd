"""Books that never lie: the manager's regions and bitmaps against the hardware.

The manager keeps its own account of the enclave (regions, their prot and page
type, one commit bit per page); the EPCM is the truth the CPU enforces, and the
page tables are what the OS set up. `check_books` compares them and lists every
difference. What must hold, for every page of ELRANGE:

- a page committed in a region has exactly one valid, *accepted* EPC page of this
  enclave bound to its address (in the EPC or sealed out by EWB), of the region's
  page type (shadow-stack regions hold REG pages: the kernel only EAUGs REG), and
  for REG-like pages with exactly the region's R/W/X (a TCS page has none);
- no page outside the committed ones holds an accepted page the enclave could
  still reach (REG, shadow stack or TCS): that would be data the manager thinks
  gone, or a page it would EACCEPT a second time;
- every region that is not a bare reservation has a bitmap;
- a present PTE of a committed page names the EPC page bound to that address
  (the OS may unmap or restrict, which only denies service; pointing a PTE at
  another page is a lie the EPCM's address check turns into a fault).

Pending pages (EAUGed, never accepted) and accepted TRIM pages are not
differences: the EPCM refuses every access to them.

Cost: one C-speed scan of the EPCM flag bytes, then O(valid pages of the enclave
+ regions + committed pages); never O(size of the regions), so huge reservations
cost nothing. Call it between manager calls (it takes the machine lock for the
EPCM scan and the manager lock per root, not one lock over the whole check).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from sgx_emm.flags import PAGE_SHIFT, PROT_MASK
from sgx_emm.platform.epcm import F_MODIFIED, F_PENDING, F_VALID
from sgx_emm.platform.secinfo import (
    PT_NAMES,
    PT_REG,
    PT_SECS,
    PT_SS_FIRST,
    PT_SS_REST,
    PT_TCS,
    PT_TRIM,
    PT_VA,
)

if TYPE_CHECKING:
    from sgx_emm.emm import Region
    from sgx_emm.platform import EnclaveFd, Machine
    from sgx_emm.platform.cpu import EvictedPage


class _Books(Protocol):
    """The manager's read-only view the books need (the guarded `enc.emm` is one)."""

    def regions(self, root: str = ...) -> list[Region]: ...


class Enclave(Protocol):
    """What the books read of an enclave (`sgx_emm.enclave.Enclave`, which imports
    this module: naming it here would make an import cycle)."""

    @property
    def emm(self) -> _Books: ...

    machine: Machine
    fd: EnclaveFd

#: kinds of difference, from the manager's point of view
UNBACKED = "unbacked"        # committed in the books, no accepted page in the EPCM
TYPE = "type"                # committed, but the EPCM page type differs
PROT = "prot"                # committed, but the EPCM R/W/X differ from the region's
STALE = "stale"              # an accepted, reachable page the books do not commit
DOUBLE = "double"            # two accepted pages bound to one address
NO_BITMAP = "no-bitmap"      # a committing region without a commit bitmap
PTE = "pte"                  # a present PTE names an EPC page bound elsewhere

_VALID_TABLE = bytes(1 if b & F_VALID else 0 for b in range(256))
_RUNS = re.compile(b"\x01+")
_UNACCEPTED = F_PENDING | F_MODIFIED
_REACHABLE = frozenset((PT_REG, PT_TCS, PT_SS_FIRST, PT_SS_REST))


@dataclass(frozen=True, slots=True)
class Difference:
    """One page (or region) where the books and the hardware disagree."""

    addr: int
    kind: str
    books: str
    hardware: str

    def __str__(self) -> str:
        return f"{self.addr:#x} {self.kind}: books say {self.books}; hardware has {self.hardware}"


class BooksDisagree(AssertionError):
    """`Enclave.check(raise_on_difference=True)` found differences (in `.differences`)."""

    def __init__(self, differences: list[Difference]) -> None:
        shown = "; ".join(str(d) for d in differences[:5])
        more = f" (+{len(differences) - 5} more)" if len(differences) > 5 else ""
        super().__init__(f"{len(differences)} difference(s): {shown}{more}")
        self.differences = differences


@dataclass(frozen=True, slots=True)
class _HwPage:
    """An EPC page of the enclave bound to one address: resident (slot) or sealed out."""

    slot: int            # -1 when sealed out by EWB
    flags: int
    pt: int

    @property
    def accepted(self) -> bool:
        return not self.flags & _UNACCEPTED

    def describe(self) -> str:
        state = "accepted" if self.accepted else (
            "PENDING" if self.flags & F_PENDING else "MODIFIED")
        where = f"slot {self.slot}" if self.slot >= 0 else "sealed out"
        return (f"{PT_NAMES.get(self.pt, self.pt)} {state} rwx={self.flags & 0x7:#x} "
                f"({where})")


def _sealed_pages(fd: EnclaveFd) -> list[EvictedPage]:
    """The pages EWB sealed out of the EPC for this enclave (the driver's backing store)."""
    return fd.evicted_pages()


def _hardware_pages(enc: Enclave) -> dict[int, list[_HwPage]]:
    """Every EPC page of the enclave (not its SECS or VA pages), by bound address."""
    machine = enc.machine
    epc = machine.epc
    fd = enc.fd
    secs = fd.secs_slot
    out: dict[int, list[_HwPage]] = {}
    with machine.lock:
        flags, owner, pt, linaddr = epc.flags, epc.owner, epc.pt, epc.linaddr
        valid = bytes(flags).translate(_VALID_TABLE)
        for run in _RUNS.finditer(valid):
            for slot in range(run.start(), run.end()):
                if owner[slot] != secs or pt[slot] in (PT_SECS, PT_VA):
                    continue
                out.setdefault(linaddr[slot], []).append(_HwPage(slot, flags[slot], pt[slot]))
        for blob in _sealed_pages(fd):
            out.setdefault(blob.linaddr, []).append(_HwPage(-1, blob.flags, blob.pt))
    return out


def _region_pt(region: Region) -> int:
    return region.page_type >> 8


def check_books(enc: Enclave) -> list[Difference]:
    """Every difference between the manager's books and the hardware (see module doc)."""
    emm = enc.emm
    regions = sorted(emm.regions("user") + emm.regions("rts"), key=lambda r: r.start)
    hw = _hardware_pages(enc)
    mm = enc.machine.mm
    diffs: list[Difference] = []
    committed: set[int] = set()
    for region in regions:
        if not region.has_bitmap:
            diffs.append(Difference(region.start, NO_BITMAP,
                                    f"region {region.start:#x}+{region.size:#x} commits pages",
                                    "no commit bitmap to record them in"))
        region_pt = _region_pt(region)
        prot = region.prot
        for lo, hi in region.committed.page_runs():
            for index in range(lo, hi):
                addr = region.start + (index << PAGE_SHIFT)
                committed.add(addr)
                pages = hw.get(addr, ())
                accepted = [p for p in pages if p.accepted]
                if not accepted:
                    seen = ", ".join(p.describe() for p in pages) or "no EPC page"
                    diffs.append(Difference(addr, UNBACKED, "committed", seen))
                    continue
                page = accepted[0]
                if page.pt != region_pt and not (page.pt == PT_REG
                                                  and region_pt in (PT_SS_FIRST, PT_SS_REST)):
                    diffs.append(Difference(addr, TYPE, f"type {PT_NAMES.get(region_pt)}",
                                            page.describe()))
                elif page.pt != PT_TCS and page.flags & 0x7 != prot & PROT_MASK:
                    diffs.append(Difference(addr, PROT, f"prot {prot:#x}", page.describe()))
                if page.slot >= 0:
                    pte = mm.pte(addr >> PAGE_SHIFT)
                    if pte and pte >> 3 != page.slot:
                        diffs.append(Difference(addr, PTE, f"EPC slot {page.slot}",
                                                f"a PTE naming slot {pte >> 3}"))
    starts = [r.start for r in regions]
    for addr, pages in sorted(hw.items()):
        accepted = [p for p in pages if p.accepted and p.pt != PT_TRIM]
        if len(accepted) > 1:
            diffs.append(Difference(addr, DOUBLE, "at most one page",
                                    ", ".join(p.describe() for p in accepted)))
        if addr in committed:
            continue
        reachable = [p for p in accepted if p.pt in _REACHABLE]
        if reachable:
            i = bisect_right(starts, addr) - 1
            where = (f"region {regions[i].start:#x}+{regions[i].size:#x}"
                     if i >= 0 and addr < regions[i].end else "no region")
            diffs.append(Difference(addr, STALE, f"not committed ({where})",
                                    reachable[0].describe()))
    return diffs


__all__ = ["DOUBLE", "NO_BITMAP", "PROT", "PTE", "STALE", "TYPE", "UNBACKED",
           "BooksDisagree", "Difference", "check_books"]

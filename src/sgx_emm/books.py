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
    secinfo_pt,
)

if TYPE_CHECKING:
    from sgx_emm.platform import EnclaveFd, Machine


class _Books(Protocol):
    """The manager's read-only view the books need (`EnclaveMemoryManager.books`)."""

    def books(self) -> list[tuple[int, int, int, int, tuple[int, ...] | None]]: ...


class Enclave(Protocol):
    """What the books read of an enclave (`sgx_emm.enclave.Enclave`, which imports
    this module: naming it here would make an import cycle)."""

    @property
    def manager(self) -> _Books: ...

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
_NOT_ENCLAVE_PAGES = (PT_SECS, PT_VA)
_RESERVE = 0x01      # alloc flag of a bare reservation (no bitmap by design)


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


_Hw = tuple[int, int, int]     # (slot or -1 if sealed out, EPCM flag byte, page type)


def _describe(page: _Hw) -> str:
    slot, flags, pt = page
    state = "accepted" if not flags & _UNACCEPTED else (
        "PENDING" if flags & F_PENDING else "MODIFIED")
    where = f"slot {slot}" if slot >= 0 else "sealed out"
    return f"{PT_NAMES.get(pt, pt)} {state} rwx={flags & 0x7:#x} ({where})"


def _hardware_pages(enc: Enclave) -> tuple[dict[int, _Hw], dict[int, list[_Hw]]]:
    """Every EPC page of the enclave (not its SECS or VA pages), by bound address:
    the first page bound to each address, and the rare addresses holding more."""
    machine = enc.machine
    epc = machine.epc
    fd = enc.fd
    secs = fd.secs_slot
    first: dict[int, _Hw] = {}
    more: dict[int, list[_Hw]] = {}
    with machine.lock:
        flags, owner, pt, linaddr = epc.flags, epc.owner, epc.pt, epc.linaddr
        valid = bytes(flags).translate(_VALID_TABLE)
        pages: list[tuple[int, _Hw]] = [
            (linaddr[slot], (slot, flags[slot], pt[slot]))
            for run in _RUNS.finditer(valid) for slot in range(run.start(), run.end())
            if owner[slot] == secs and pt[slot] not in _NOT_ENCLAVE_PAGES]
        pages.extend((blob.linaddr, (-1, blob.flags, blob.pt))
                     for blob in fd.evicted_pages())
    for addr, page in pages:
        if addr in first:
            more.setdefault(addr, [first[addr]]).append(page)
        else:
            first[addr] = page
    return first, more


def check_books(enc: Enclave) -> list[Difference]:
    """Every difference between the manager's books and the hardware (see module doc)."""
    books = enc.manager.books()
    first, more = _hardware_pages(enc)
    pte = enc.machine.mm.pte
    diffs: list[Difference] = []
    committed: set[int] = set()
    for start, end, alloc_flags, si_flags, bounds in books:
        if bounds is None:
            if not alloc_flags & _RESERVE:
                diffs.append(Difference(start, NO_BITMAP,
                                        f"region {start:#x}+{end - start:#x} commits pages",
                                        "no commit bitmap to record them in"))
            continue
        region_pt = secinfo_pt(si_flags)
        prot = si_flags & PROT_MASK
        ok_pts = (PT_REG, region_pt) if region_pt in (PT_SS_FIRST, PT_SS_REST) else (
            region_pt,)
        for k in range(0, len(bounds), 2):
            for page_no in range(bounds[k], bounds[k + 1]):
                addr = page_no << PAGE_SHIFT
                committed.add(addr)
                page = first.get(addr)
                if addr in more:
                    accepted = [p for p in more[addr] if not p[1] & _UNACCEPTED]
                    page = accepted[0] if accepted else page
                if page is None or page[1] & _UNACCEPTED:
                    seen = ", ".join(_describe(p) for p in more.get(
                        addr, [page] if page else [])) or "no EPC page"
                    diffs.append(Difference(addr, UNBACKED, "committed", seen))
                    continue
                slot, flags, pt = page
                if pt not in ok_pts:
                    diffs.append(Difference(addr, TYPE,
                                            f"type {PT_NAMES.get(region_pt, region_pt)}",
                                            _describe(page)))
                elif pt != PT_TCS and flags & 0x7 != prot:
                    diffs.append(Difference(addr, PROT, f"prot {prot:#x}", _describe(page)))
                if slot >= 0:
                    entry = pte(page_no)
                    if entry and entry >> 3 != slot:
                        diffs.append(Difference(addr, PTE, f"EPC slot {slot}",
                                                f"a PTE naming slot {entry >> 3}"))
    starts = [b[0] for b in books]
    for addr, page in first.items():
        if addr in more:
            accepted = [p for p in more[addr] if not p[1] & _UNACCEPTED and p[2] != PT_TRIM]
            if len(accepted) > 1:
                diffs.append(Difference(addr, DOUBLE, "at most one page",
                                        ", ".join(_describe(p) for p in accepted)))
        else:
            accepted = [page] if not page[1] & _UNACCEPTED and page[2] != PT_TRIM else []
        if addr in committed:
            continue
        reachable = [p for p in accepted if p[2] in _REACHABLE]
        if reachable:
            i = bisect_right(starts, addr) - 1
            where = (f"region {books[i][0]:#x}+{books[i][1] - books[i][0]:#x}"
                     if i >= 0 and addr < books[i][1] else "no region")
            diffs.append(Difference(addr, STALE, f"not committed ({where})",
                                    _describe(reachable[0])))
    diffs.sort(key=lambda d: d.addr)
    return diffs


__all__ = ["DOUBLE", "NO_BITMAP", "PROT", "PTE", "STALE", "TYPE", "UNBACKED",
           "BooksDisagree", "Difference", "check_books"]

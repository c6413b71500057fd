"""The EPC and its EPCM, laid out for a million pages.

One EPC slot per 4 KiB page. The EPCM lives in parallel arrays indexed by slot,
not in an object per page: a flag byte (the SECINFO low byte: R W X PENDING
MODIFIED PR, plus VALID and BLOCKED), the page type, the owning SECS slot, the
bound linear address and the tracking epoch. Contents are a dict slot ->
bytearray filled on the first write, so a committed page that nobody wrote costs
no 4 KiB buffer; a missing entry reads as zeros. Pages are named by a physical
address (`EPC_BASE + slot * 4096`), the RCX operand of the ENCLS leaves.

Cost: 26 bytes per EPC page up front (flag byte, type byte, 4-byte owner, 8-byte
address, 8-byte epoch, 4-byte free-list entry); every operation is O(1).
Not thread safe by itself: the CPU serialises leaves with the machine lock.
"""

from __future__ import annotations

from array import array

from sgx_emm.flags import PAGE_SHIFT, PAGE_SIZE

#: EPCM flag byte: the SECINFO bits 0..5 keep their SECINFO positions.
F_R = 0x1
F_W = 0x2
F_X = 0x4
F_PENDING = 0x8
F_MODIFIED = 0x10
F_PR = 0x20
F_VALID = 0x40
F_BLOCKED = 0x80

#: Physical address of EPC slot 0 (any page-aligned value outside ELRANGEs works).
EPC_BASE = 0x8000_0000
NO_OWNER = -1
_ZERO_PAGE = bytes(PAGE_SIZE)


class Epc:
    """`npages` EPC pages with their EPCM entries and lazily allocated contents."""

    def __init__(self, npages: int) -> None:
        if npages < 1:
            raise ValueError("the EPC needs at least one page")
        self.npages = npages
        self.flags = bytearray(npages)
        self.pt = bytearray(npages)
        self.owner = array("i", [NO_OWNER]) * npages
        self.linaddr = array("Q", bytes(8 * npages))
        self.epoch = array("Q", bytes(8 * npages))
        self.contents: dict[int, bytearray] = {}
        # free slots, lowest handed out first (pop from the end of a reversed list)
        self._free = array("i", range(npages - 1, -1, -1))

    # --- allocation (the kernel's sgx_alloc_epc_page / sgx_free_epc_page) ---
    def alloc(self) -> int | None:
        """A free slot, or None when the EPC is exhausted."""
        return self._free.pop() if self._free else None

    def unalloc(self, slot: int) -> None:
        """Undo the `alloc` that just returned `slot` (its entry was not touched): the
        free list is as before, so the next `alloc` returns it again."""
        self._free.append(slot)

    def free(self, slot: int) -> None:
        """Return a slot whose EPCM entry is no longer VALID."""
        self.flags[slot] = 0
        self.owner[slot] = NO_OWNER
        self.contents.pop(slot, None)
        self._free.append(slot)

    @property
    def free_pages(self) -> int:
        return len(self._free)

    @property
    def used(self) -> int:
        return self.npages - len(self._free)

    # --- physical addresses ---
    @staticmethod
    def paddr(slot: int) -> int:
        return EPC_BASE + (slot << PAGE_SHIFT)

    def slot_of(self, paddr: int) -> int | None:
        """The slot a page-aligned physical address names, or None if outside the EPC."""
        off = paddr - EPC_BASE
        if off < 0 or off & (PAGE_SIZE - 1):
            return None
        slot = off >> PAGE_SHIFT
        return slot if slot < self.npages else None

    # --- contents ---
    def page_bytes(self, slot: int) -> bytes | bytearray:
        """The page's 4 KiB (a shared zero page if never written; do not mutate)."""
        return self.contents.get(slot, _ZERO_PAGE)

    def writable_page(self, slot: int) -> bytearray:
        page = self.contents.get(slot)
        if page is None:
            page = self.contents[slot] = bytearray(PAGE_SIZE)
        return page

    def install(self, slot: int, flags: int, pt: int, owner: int, linaddr: int,
                epoch: int = 0, contents: bytes | None = None) -> None:
        """Write a whole EPCM entry and the page contents (ECREATE, EADD, EAUG, ELDU):
        every field, so nothing of the slot's previous life survives."""
        self.flags[slot] = flags
        self.pt[slot] = pt
        self.owner[slot] = owner
        self.linaddr[slot] = linaddr
        self.epoch[slot] = epoch
        if contents is None:
            self.contents.pop(slot, None)
        else:
            self.set_page(slot, contents)

    def set_page(self, slot: int, data: bytes | None) -> None:
        """Fill the whole page; zeros (or None) leave it unallocated."""
        if data is None or data.count(0) == len(data):  # all zeros, checked in C
            self.contents.pop(slot, None)
        else:
            self.contents[slot] = bytearray(data)

    def describe(self, slot: int) -> dict[str, int | bool]:
        """The EPCM entry as named fields (tests, debugging, docs)."""
        f = self.flags[slot]
        return {
            "valid": bool(f & F_VALID), "r": bool(f & F_R), "w": bool(f & F_W),
            "x": bool(f & F_X), "pending": bool(f & F_PENDING),
            "modified": bool(f & F_MODIFIED), "pr": bool(f & F_PR),
            "blocked": bool(f & F_BLOCKED), "pt": self.pt[slot], "owner": self.owner[slot],
            "linaddr": self.linaddr[slot], "epoch": self.epoch[slot],
        }

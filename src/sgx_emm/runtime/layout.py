"""The memory layout of the simulated enclave image, Intel SDK style.

The SDK's signing tool writes a layout table (code, data, heap, then per thread:
guard, stack, TCS, SSA, TLS) that both the loader (which EADDs the static pages)
and the trusted runtime (which builds one EMA per entry at init: `mm_init_ema` for
static and guard entries, `mm_alloc(COMMIT_ON_DEMAND|FIXED)` for post-added ones)
read. Keeping one table here keeps those two sides in agreement, as in the SDK.
The image occupies the bottom of ELRANGE; the user range lies above it.

The sizes come from the enclave's configuration (`sgx_emm.services.config`, the
SDK's config.xml): the heap's committed part and its reserve up to the maximum,
each thread's committed stack under its on-demand part, and the optional
reserved-memory area. With no configuration the defaults give a small image that
still has one of each kind of entry.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from sgx_emm.flags import (
    PAGE_SIZE,
    PAGE_TYPE_REG,
    PAGE_TYPE_TCS,
    PROT_NONE,
    PROT_READ_EXEC,
    PROT_READ_WRITE,
    PROT_READ_WRITE_EXEC,
)

#: The manager's fixed metadata area (emalloc's `meta_reserve`) lives in .data.
META_AREA_SIZE = 0x10000
#: SSA frames per TCS: one for the interrupted code, one for the nested entry that
#: runs the exception dispatcher's first phase.
NSSA = 2


class EntryKind(enum.Enum):
    """How the loader and the runtime treat a layout entry."""

    STATIC = "static"    # EADDed before EINIT; runtime calls mm_init_ema
    DYNAMIC = "dynamic"  # post-added: mm_alloc(COMMIT_ON_DEMAND|FIXED|SYSTEM)
    GUARD = "guard"      # never added: mm_init_ema(RESERVE|SYSTEM, PROT_NONE)


@dataclass(frozen=True, slots=True)
class LayoutEntry:
    """One contiguous part of the image."""

    name: str
    offset: int
    size: int
    kind: EntryKind
    prot: int = PROT_NONE
    page_type: int = PAGE_TYPE_REG
    thread: int | None = None
    grows_down: bool = False

    @property
    def pages(self) -> int:
        return self.size // PAGE_SIZE


@dataclass(frozen=True, slots=True)
class ImageLayout:
    """Every entry of the image, in address order, and the named places in it."""

    entries: tuple[LayoutEntry, ...]
    image_size: int
    _index: dict[tuple[str, int | None], LayoutEntry] = field(
        init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        # the loader looks up each thread's entries once: a dict keeps that linear
        index: dict[tuple[str, int | None], LayoutEntry] = {}
        for entry in self.entries:
            index.setdefault((entry.name, entry.thread), entry)
        object.__setattr__(self, "_index", index)

    def find(self, name: str, thread: int | None = None) -> LayoutEntry:
        """The first entry called `name` (of `thread`, if given); O(1)."""
        try:
            return self._index[(name, thread)]
        except KeyError:
            raise KeyError((name, thread)) from None

    def tcs_offsets(self) -> list[int]:
        return [e.offset for e in self.entries if e.name == "tcs"]

    @property
    def meta_area_offset(self) -> int:
        return self.find("meta").offset


def build_layout(
    threads: int,
    *,
    code_pages: int = 4,
    data_pages: int = 1,
    heap_init_pages: int = 4,
    heap_max_pages: int = 64,
    stack_init_pages: int = 2,
    stack_max_pages: int = 8,
    reserved_init_pages: int = 0,
    reserved_max_pages: int = 0,
    reserved_executable: bool = False,
) -> ImageLayout:
    """Lay the image out from offset 0 upward; sizes in pages.

    Why this shape: it has one of each kind of EMA the SDK's init builds (RX code,
    RW data, a static heap part plus a post-added heap that grows up, per-thread
    guard pages, a stack whose dynamic part grows down, a TCS, SSA frames and TLS),
    so the rts root after init looks like a real SDK enclave's, only smaller.
    The reserved-memory area (the SDK's ReservedMem, a region the enclave manages
    itself) is added after the threads only when configured, so the default image
    keeps its addresses.
    """
    if threads < 1:
        raise ValueError("an enclave needs at least one thread (TCS)")
    if not 0 <= heap_init_pages <= heap_max_pages:
        raise ValueError(f"heap: {heap_init_pages} initial pages must lie within 0.."
                         f"{heap_max_pages} (the maximum)")
    if not 0 < stack_init_pages <= stack_max_pages:
        raise ValueError(f"stack: {stack_init_pages} initial pages must lie within 1.."
                         f"{stack_max_pages} (the maximum)")
    if not 0 <= reserved_init_pages <= reserved_max_pages:
        raise ValueError(f"reserved memory: {reserved_init_pages} initial pages must lie "
                         f"within 0..{reserved_max_pages} (the maximum)")
    entries: list[LayoutEntry] = []
    offset = 0

    def add(name: str, pages: int, kind: EntryKind, prot: int = PROT_NONE, *,
            page_type: int = PAGE_TYPE_REG, thread: int | None = None,
            grows_down: bool = False) -> None:
        nonlocal offset
        if pages <= 0:
            return
        entries.append(LayoutEntry(name, offset, pages * PAGE_SIZE, kind, prot, page_type,
                                   thread, grows_down))
        offset += pages * PAGE_SIZE

    add("code", code_pages, EntryKind.STATIC, PROT_READ_EXEC)
    add("data", data_pages, EntryKind.STATIC, PROT_READ_WRITE)
    add("meta", META_AREA_SIZE // PAGE_SIZE, EntryKind.STATIC, PROT_READ_WRITE)
    add("heap", heap_init_pages, EntryKind.STATIC, PROT_READ_WRITE)
    add("heap_dyn", heap_max_pages - heap_init_pages, EntryKind.DYNAMIC, PROT_READ_WRITE)
    for t in range(threads):
        add("guard", 1, EntryKind.GUARD, thread=t)
        add("stack_dyn", stack_max_pages - stack_init_pages, EntryKind.DYNAMIC,
            PROT_READ_WRITE, thread=t, grows_down=True)
        add("stack", stack_init_pages, EntryKind.STATIC, PROT_READ_WRITE, thread=t)
        add("guard", 1, EntryKind.GUARD, thread=t)
        add("tcs", 1, EntryKind.STATIC, PROT_NONE, page_type=PAGE_TYPE_TCS, thread=t)
        add("ssa", NSSA, EntryKind.STATIC, PROT_READ_WRITE, thread=t)
        add("tls", 1, EntryKind.STATIC, PROT_READ_WRITE, thread=t)
    if reserved_max_pages:
        rprot = PROT_READ_WRITE_EXEC if reserved_executable else PROT_READ_WRITE
        add("guard", 1, EntryKind.GUARD)
        add("reserved", reserved_init_pages, EntryKind.STATIC, rprot)
        add("reserved_dyn", reserved_max_pages - reserved_init_pages, EntryKind.DYNAMIC,
            rprot)
    add("guard", 1, EntryKind.GUARD)
    return ImageLayout(tuple(entries), offset)

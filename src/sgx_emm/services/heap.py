"""The trusted heap (`enc.heap`): malloc/free/realloc/calloc over the SDK's heap region.

The image's heap is the SDK's: HeapMinSize added at load, the rest up to
HeapMaxSize a COMMIT_ON_DEMAND|GROWSUP region of the runtime's root; the
trusted init commits up to HeapInitSize (`commit_initial_heap`). The heap grows
through the manager and shrinks by uncommitting, as the policy
(`GrowthPolicy`) says:

- "explicit" (the default): the break moves up in `heap_step` steps, each an
  `mm_commit` (EAUG through the driver's #PF path, EACCEPT) before the memory is
  handed out, as an sbrk over EDMM does;
- "fault": memory is handed out uncommitted and each page is committed by the #PF
  of its first touch (one EAUG + EACCEPT per page, through the manager's handler);
  with `heap_fault_pages` > 1 the trusted init gives the on-demand GROWSUP region
  a handler (`grows_up_batch`) that commits that many pages per fault, from the
  faulting page up, the GROWSUP twin of the stacks' batch.

When the free space at the top of the heap exceeds `heap_trim_threshold`, the
pages above the break plus one step of slack are uncommitted (`mm_uncommit`:
EMODT(TRIM), EACCEPT, REMOVE_PAGES); the first HeapMinSize bytes are never given
back.

The allocator is a size-class allocator in two levels:

- requests up to 2 KiB are rounded up to one of 14 size classes (16 ... 2048) and
  served from one-page runs of equal slots; each class keeps its free slots, and
  a run whose slots are all free goes back to the page level;
- larger requests take whole pages from the page level: best fit among the free
  page spans (by size, then address; neighbours coalesce on free), else the break
  moves up.

The allocator's books (block sizes, free lists) are kept by the runtime beside
the heap rather than in headers inside it, so a malloc writes nothing into the
enclave; the flows the manager sees are the same. Out of memory (HeapMaxSize
reached, or the EPC exhausted) is None from malloc/calloc/realloc, never a crash;
a wild or double free is a ValueError that changes nothing.
"""

from __future__ import annotations

import bisect
import errno
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sgx_emm.emm.rt import FaultHandler, PfInfo
from sgx_emm.errors import EmmError
from sgx_emm.flags import EXCEPTION_CONTINUE_EXECUTION, EXCEPTION_CONTINUE_SEARCH, PAGE_SIZE
from sgx_emm.runtime.layout import ImageLayout
from sgx_emm.services.config import EnclaveConfig
from sgx_emm.services.entry import current

if TYPE_CHECKING:
    from sgx_emm.services.host import Host

#: The small-request size classes, in bytes; larger requests take whole pages.
SIZE_CLASSES = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
MAX_SMALL = SIZE_CLASSES[-1]


@dataclass(frozen=True, slots=True)
class HeapStats:
    """A snapshot of the heap (`enc.heap.stats()`), in bytes unless named otherwise.

    committed: heap pages committed now; in_use: bytes of live blocks (as rounded
    by the allocator); requested: bytes the live blocks were asked for; peak: the
    largest `in_use` seen; brk: bytes from the heap's start to its break;
    capacity: HeapMaxSize; grows / trims: manager commits and uncommits made.
    """

    committed: int
    in_use: int
    requested: int
    peak: int
    brk: int
    capacity: int
    blocks: int
    mallocs: int
    frees: int
    grows: int
    trims: int


def heap_bounds(layout: ImageLayout) -> tuple[int, int, int]:
    """(start offset, offset where the load-time part ends, end offset) of the heap."""
    names = [e for e in layout.entries if e.name in ("heap", "heap_dyn")]
    if not names:
        return 0, 0, 0
    start = names[0].offset
    static_end = next((e.offset + e.size for e in names if e.name == "heap"), start)
    return start, static_end, names[-1].offset + names[-1].size


def grows_up_batch(emm: Any, end: int, pages: int) -> FaultHandler:
    """A fault handler for the heap's GROWSUP region ending at `end` that commits
    `pages` pages at once, from the faulting page up, clipped at `end`, through the
    runtime root's `mm_commit` (which skips pages already committed). A heap that
    is touched upward then takes one fault per batch instead of one per page. If
    the commit fails the fault is passed on, so the enclave sees it unhandled."""
    def commit_batch(pfinfo: PfInfo, private: Any) -> int:
        page = pfinfo.maddr & ~(PAGE_SIZE - 1)
        last = min(end, page + pages * PAGE_SIZE)
        try:
            emm.mm_commit(page, last - page)
        except EmmError:
            return int(EXCEPTION_CONTINUE_SEARCH)
        return int(EXCEPTION_CONTINUE_EXECUTION)
    return commit_batch


def heap_fault_handler(emm: Any, config: EnclaveConfig, end: int) -> FaultHandler | None:
    """The handler the trusted init gives the heap's on-demand region: a batch
    commit when the policy asks for one, else None (the manager's own handler, one
    page per fault, exactly as without the policy)."""
    policy = config.policy
    if policy.heap_commit != "fault" or policy.heap_fault_pages <= 1:
        return None
    return grows_up_batch(emm, end, policy.heap_fault_pages)


def commit_initial_heap(enc: Host) -> None:
    """The trusted init's commit of the heap from HeapMinSize up to HeapInitSize."""
    cfg = enc.config
    start, static_end, _end = heap_bounds(enc.layout)
    extra = cfg.heap_init_size - cfg.heap_min_size
    if extra > 0:
        with enc.enter():
            enc.emm.mm_commit(enc.base + static_end, extra)


class Heap:
    """Size-class allocator over the heap region; see the module doc."""

    def __init__(self, enc: Host, config: EnclaveConfig) -> None:
        self._enc = enc
        policy = config.policy
        self._explicit = policy.heap_commit == "explicit"
        self._step = policy.heap_step
        self._trim_threshold = policy.heap_trim_threshold
        # fault mode with a batch: a fault may commit this far past the page it hit
        self._fault_slack = ((policy.heap_fault_pages - 1) * PAGE_SIZE
                             if not self._explicit else 0)
        start, static_end, end = heap_bounds(enc.layout)
        self.start = enc.base + start
        self.end = enc.base + end
        #: bytes below this never go back (the load-time part, HeapMinSize)
        self._floor = enc.base + static_end
        self._lock = threading.RLock()
        self._brk = self.start
        self._committed_end = enc.base + static_end + (config.heap_init_size
                                                       - config.heap_min_size)
        self._high_water = self._committed_end      # fault mode: what may be committed
        # page level: free spans start -> pages, end -> start, pages -> starts
        self._span: dict[int, int] = {}
        self._span_end: dict[int, int] = {}
        self._by_pages: dict[int, dict[int, None]] = {}
        self._sizes: list[int] = []                 # sorted keys of _by_pages
        # small level: class -> free slots; run page -> (class, free slots in it)
        self._free_slots: dict[int, dict[int, None]] = {c: {} for c in SIZE_CLASSES}
        self._run_free: dict[int, int] = {}
        self._run_class: dict[int, int] = {}
        # live blocks: addr -> (bytes the block holds, bytes asked for)
        self._blocks: dict[int, tuple[int, int]] = {}
        self._in_use = self._requested = self._peak = 0
        self._mallocs = self._frees = self._grows = self._trims = 0

    # ------------------------------------------------------------ public API
    def malloc(self, size: int) -> int | None:
        """A block of at least `size` bytes (malloc(0) gives a minimal block); None
        when the heap is out of memory."""
        _check_size(size, "size")
        current(self._enc, "heap.malloc")
        with self._lock:
            return self._malloc(size)

    def calloc(self, count: int, size: int) -> int | None:
        """`count * size` zeroed bytes; None when out of memory or when the product
        overflows 64 bits (as C's calloc)."""
        _check_size(count, "count")
        _check_size(size, "size")
        ctx = current(self._enc, "heap.calloc")
        total = count * size
        if total >= 1 << 64:
            return None
        with self._lock:
            addr = self._malloc(total)
        if addr is not None and total:
            ctx.write(addr, bytes(total))
        return addr

    def realloc(self, addr: int | None, size: int) -> int | None:
        """Resize a block, moving it (and its bytes) if it must; realloc(None, n) is
        malloc(n), realloc(p, 0) frees p and returns None. Out of memory: None, and
        the old block is left as it was."""
        _check_size(size, "size")
        ctx = current(self._enc, "heap.realloc")
        if addr is None or addr == 0:
            with self._lock:
                return self._malloc(size)
        with self._lock:
            held, _asked = self._block(addr, "realloc")
            if size == 0:
                self._free(addr)
                return None
            if size <= held and (held <= MAX_SMALL or size > MAX_SMALL):
                old = self._blocks[addr]
                self._requested += size - old[1]
                self._blocks[addr] = (held, size)
                return addr
            new = self._malloc(size)
            if new is None:
                return None
        data = ctx.read(addr, min(held, size))
        ctx.write(new, data)
        with self._lock:
            self._free(addr)
        return new

    def free(self, addr: int | None) -> None:
        """Give a block back; free(None) and free(0) do nothing. ValueError for an
        address that is no live block (double or wild free), with nothing changed."""
        if addr is None or addr == 0:
            return
        current(self._enc, "heap.free")
        with self._lock:
            self._block(addr, "free")
            self._free(addr)

    def usable_size(self, addr: int) -> int:
        """Bytes the block at `addr` really holds (malloc_usable_size)."""
        with self._lock:
            return self._block(addr, "usable_size")[0]

    def stats(self) -> HeapStats:
        """Committed, in use, peak and the counters; see HeapStats."""
        with self._lock:
            committed = (self._committed_end - self.start if self._explicit
                         else self._committed_pages() * PAGE_SIZE)
            return HeapStats(committed=committed, in_use=self._in_use,
                             requested=self._requested, peak=self._peak,
                             brk=self._brk - self.start, capacity=self.end - self.start,
                             blocks=len(self._blocks), mallocs=self._mallocs,
                             frees=self._frees, grows=self._grows, trims=self._trims)

    statistics = stats

    # ------------------------------------------------------------ blocks
    def _block(self, addr: int, what: str) -> tuple[int, int]:
        if isinstance(addr, bool) or not isinstance(addr, int):
            raise TypeError(f"{what}: expected an address (int), got {type(addr).__name__}")
        block = self._blocks.get(addr)
        if block is None:
            raise ValueError(f"{what}({addr:#x}): not a live block of this heap (freed "
                             "already, or never returned by malloc)")
        return block

    def _malloc(self, size: int) -> int | None:
        want = max(size, 1)
        if want <= MAX_SMALL:
            cls = SIZE_CLASSES[bisect.bisect_left(SIZE_CLASSES, want)]
            addr = self._small(cls)
            held = cls
        else:
            pages = -(-want // PAGE_SIZE)
            addr = self._pages(pages)
            held = pages * PAGE_SIZE
        if addr is None:
            return None
        self._blocks[addr] = (held, size)
        self._in_use += held
        self._requested += size
        self._peak = max(self._peak, self._in_use)
        self._mallocs += 1
        return addr

    def _free(self, addr: int) -> None:
        held, asked = self._blocks.pop(addr)
        self._in_use -= held
        self._requested -= asked
        self._frees += 1
        if held <= MAX_SMALL:
            run = addr & ~(PAGE_SIZE - 1)
            self._free_slots[held][addr] = None
            left = self._run_free[run] + 1
            if left == PAGE_SIZE // held:          # the whole run is free again
                for slot in range(run, run + left * held, held):
                    del self._free_slots[held][slot]
                del self._run_free[run], self._run_class[run]
                self._release_pages(run, 1)
            else:
                self._run_free[run] = left
        else:
            self._release_pages(addr, held // PAGE_SIZE)

    def _small(self, cls: int) -> int | None:
        slots = self._free_slots[cls]
        if slots:
            addr, _ = slots.popitem()
            self._run_free[addr & ~(PAGE_SIZE - 1)] -= 1
            return addr
        run = self._pages(1)
        if run is None:
            return None
        count = PAGE_SIZE // cls
        # hand out the lowest slot first: later pops take the next ones in order
        for slot in range(run + (count - 1) * cls, run, -cls):
            slots[slot] = None
        self._run_free[run] = count - 1
        self._run_class[run] = cls
        return run

    # ------------------------------------------------------------ page level
    def _pages(self, pages: int) -> int | None:
        i = bisect.bisect_left(self._sizes, pages)
        if i < len(self._sizes):
            have = self._sizes[i]
            starts = self._by_pages[have]
            start = min(starts)             # lowest address among the best fits
            self._unlink(start, have)
            if have > pages:
                self._link(start + pages * PAGE_SIZE, have - pages)
            return start
        return self._extend(pages)

    def _extend(self, pages: int) -> int | None:
        """Move the break up by `pages`, committing first in explicit mode."""
        start = self._brk
        new_brk = start + pages * PAGE_SIZE
        if new_brk > self.end:
            return None
        if self._explicit and new_brk > self._committed_end:
            want = max(new_brk - self._committed_end, self._step)
            want = -(-want // self._step) * self._step
            want = min(want, self.end - self._committed_end)
            try:
                self._enc.emm.mm_commit(self._committed_end, want)
            except EmmError as e:
                if e.errno != errno.ENOMEM:
                    raise
                return None
            self._committed_end += want
            self._grows += 1
        self._brk = new_brk
        self._high_water = max(self._high_water, new_brk)
        return start

    def _release_pages(self, start: int, pages: int) -> None:
        end = start + pages * PAGE_SIZE
        before = self._span_end.get(start)
        if before is not None:                      # coalesce with the span below
            below = self._span[before]
            self._unlink(before, below)
            start, pages = before, pages + below
        after = self._span.get(end)
        if after is not None:                       # and with the span above
            self._unlink(end, after)
            pages += after
            end += after * PAGE_SIZE
        if end == self._brk:                        # the top of the heap: lower the break
            self._brk = start
            self._maybe_trim()
        else:
            self._link(start, pages)

    def _link(self, start: int, pages: int) -> None:
        self._span[start] = pages
        self._span_end[start + pages * PAGE_SIZE] = start
        starts = self._by_pages.get(pages)
        if starts is None:
            starts = self._by_pages[pages] = {}
            bisect.insort(self._sizes, pages)
        starts[start] = None

    def _unlink(self, start: int, pages: int) -> None:
        del self._span[start]
        del self._span_end[start + pages * PAGE_SIZE]
        starts = self._by_pages[pages]
        del starts[start]
        if not starts:
            del self._by_pages[pages]
            self._sizes.pop(bisect.bisect_left(self._sizes, pages))

    def _maybe_trim(self) -> None:
        """Uncommit the free top of the heap once it exceeds the trim threshold."""
        if not self._trim_threshold:
            return
        if self._explicit:
            top = self._committed_end
        else:
            # a batch commit may have run past the highest page handed out
            top = min(self.end, -(-self._high_water // PAGE_SIZE) * PAGE_SIZE
                      + self._fault_slack) if self._fault_slack else self._high_water
        keep = max(self._floor, -(-self._brk // PAGE_SIZE) * PAGE_SIZE + self._step)
        if top - keep <= self._trim_threshold or keep >= top:
            return
        self._enc.emm.mm_uncommit(keep, top - keep)
        self._trims += 1
        if self._explicit:
            self._committed_end = keep
        self._high_water = keep

    def _committed_pages(self) -> int:
        n = 0
        for region in self._enc.emm.regions("rts"):
            end = region.start + region.size
            if end <= self.start or region.start >= self.end:
                continue
            for page in range(max(region.start, self.start), min(end, self.end), PAGE_SIZE):
                n += bool(region.committed[(page - region.start) // PAGE_SIZE])
        return n


def _check_size(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what}: expected an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{what} {value}: expected a non-negative number of bytes")

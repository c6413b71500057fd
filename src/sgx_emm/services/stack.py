"""Thread stacks: StackMinSize committed under StackMaxSize of on-demand space.

Every thread's stack is laid out as the SDK lays it: a guard page, then the
on-demand part (StackMaxSize - StackMinSize, COMMIT_ON_DEMAND|GROWSDOWN), then
the StackMinSize committed when the thread is made; the stack grows down from
the top. A write below the committed part faults, and the manager's #PF handler
commits the page (EACCEPT after the kernel's EAUG), which is the SDK's stack
expansion. A touch of the guard page is a stack overflow: as the SDK's trts
checks before it dispatches an exception (a thread without stack cannot run a
handler), the dispatcher asks `stack_overflow_cause` first and the enclave
crashes with that cause (the manager's handler would otherwise abort: the guard
is a reserved region, which must never fault).

`t.stack` (a `StackView`) shows an entered thread's stack: `top`, `limit`, `max`,
`committed`, and `touch(depth)`, which uses the stack down to `depth` bytes below
the top the way a function's stack probe does, one write per page, from the top
down. With `GrowthPolicy.stack_fault_pages` > 1 the probe commits that many pages
at once when it reaches an uncommitted page (threads made by `add_thread` also get
that batch on every fault of their stack: `threads.grows_down_batch`), the batch
commit on GROWSDOWN faults that the reference leaves as a TODO.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sgx_emm.flags import PAGE_SIZE
from sgx_emm.runtime.dispatcher import VECTOR_PF, ExceptionRecord

if TYPE_CHECKING:
    from sgx_emm.services.host import Entered, Host
    from sgx_emm.services.threads import ThreadMemory


class StackView:
    """The stack of one entered thread (`t.stack`)."""

    def __init__(self, ctx: Entered) -> None:
        self._ctx = ctx
        enc = ctx.enclave
        memory = enc.thread_contexts.memory(ctx.tcs)
        if memory is None:
            raise ValueError(f"TCS {ctx.tcs:#x} has no stack this runtime knows of (a TCS "
                             "made by hand rather than by add_thread)")
        self._memory: ThreadMemory = memory

    @property
    def top(self) -> int:
        """The address the stack grows down from (one past its highest byte)."""
        return self._memory.stack_top

    @property
    def limit(self) -> int:
        """The lowest address the stack may reach; the guard page lies below it."""
        return self._memory.stack_limit

    @property
    def max(self) -> int:
        """StackMaxSize: how far below `top` the stack may grow, in bytes."""
        return self._memory.stack_max

    @property
    def guard(self) -> int:
        return self._memory.guard

    @property
    def committed(self) -> int:
        """Bytes of the stack committed now (StackMinSize and whatever faults added)."""
        return sum(n for _start, n in self._committed_runs()) * PAGE_SIZE

    def _committed_runs(self) -> list[tuple[int, int]]:
        """(first page address, pages) of each committed run inside the stack."""
        enc = self._ctx.enclave
        root = "user" if self._memory.dynamic else "rts"
        lo, hi = self.limit, self.top
        runs: list[tuple[int, int]] = []
        for region in enc.emm.regions(root):
            end = region.start + region.size
            if end <= lo or region.start >= hi:
                continue
            first = max(region.start, lo)
            last = min(end, hi)
            for page in range(first, last, PAGE_SIZE):
                if region.committed[(page - region.start) // PAGE_SIZE]:
                    if runs and runs[-1][0] + runs[-1][1] * PAGE_SIZE == page:
                        runs[-1] = (runs[-1][0], runs[-1][1] + 1)
                    else:
                        runs.append((page, 1))
        return runs

    def touch(self, depth: int) -> int:
        """Use the stack down to `depth` bytes below `top` (one write per page, top
        down) and return the lowest address written. A depth past `max` runs into
        the guard page: EnclaveCrashed, cause "stack overflow"."""
        if isinstance(depth, bool) or not isinstance(depth, int):
            raise TypeError(f"depth: expected an int, got {type(depth).__name__}")
        if depth <= 0:
            raise ValueError(f"depth {depth}: expected a positive number of bytes")
        lowest = self.top - depth
        batch = self._ctx.enclave.config.policy.stack_fault_pages
        committed: set[int] = set()
        if batch > 1:
            for start, pages in self._committed_runs():
                committed.update(range(start, start + pages * PAGE_SIZE, PAGE_SIZE))
        page = (self.top - 1) & ~(PAGE_SIZE - 1)
        while True:
            addr = max(lowest, page)
            if batch > 1 and page >= self.limit and page not in committed:
                self._commit_batch(page, batch, committed)
            self._ctx.write(addr, b"\0")
            if addr == lowest:
                return lowest
            page -= PAGE_SIZE

    def _commit_batch(self, page: int, batch: int, committed: set[int]) -> None:
        """Commit up to `batch` uncommitted pages from `page` down, within the stack."""
        low = max(self.limit, page - (batch - 1) * PAGE_SIZE)
        while low in committed:
            low += PAGE_SIZE
        emm = self._ctx.enclave.emm
        commit = emm.commit if self._memory.dynamic else emm.mm_commit
        commit(low, page + PAGE_SIZE - low)
        committed.update(range(low, page + PAGE_SIZE, PAGE_SIZE))


def stack_overflow_cause(enc: Host, record: ExceptionRecord) -> str | None:
    """"stack overflow ..." when an unhandled #PF hit a thread's stack guard page."""
    if record.vector != VECTOR_PF:
        return None
    page = record.maddr & ~(PAGE_SIZE - 1)
    memory = enc.thread_contexts.by_guard(page)
    if memory is None:
        return None
    return (f"stack overflow: the thread of TCS {memory.tcs:#x} touched the guard "
            f"page {page:#x} below its {memory.stack_max:#x}-byte stack (StackMaxSize)")

"""What a replay produced: per-line results, the final layout, the report."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sgx_emm import flags as F
from sgx_emm.errors import errno_name
from sgx_emm.replay.interfaces import EnclaveLike


@dataclass(slots=True)
class CallResult:
    """What one line did. `error` is set when the line did not run."""

    line: int
    op: str | None
    ret: int | str | None = None  # 0, an errno name, ABORT, CRASH, CONTINUE_*
    addr: int | None = None  # the address an alloc returned (what `$N` names)
    target: int | None = None  # the resolved address the call acted on
    thread: int = 0
    data: bytes | None = None  # bytes a read / fetch returned
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    error: str | None = None
    detail: str | None = None  # message of an abort / crash / internal error
    reason: str | None = None  # why a call failed: EmmError.reason, or a crash's cause
    code: int | None = None  # the numeric C result behind an error name in `ret`
    note: str | None = None  # the line's "note", shown with it
    expect: str | None = None
    bad_input: bool = False  # the error is the input's fault (--strict stops on it)
    internal: bool = False  # the simulator raised something unexpected

    @property
    def as_expected(self) -> bool | None:
        """Whether `ret` is what the line's "expect" asked for (None: no expect)."""
        if self.expect is None:
            return None
        if self.error is not None:
            return False
        if str(self.ret) == self.expect:
            return True
        # an SGX code the reference passes off as an errno matches either name
        return self.code is not None and self.expect in (errno_name(self.code),
                                                         str(self.code))


@dataclass(frozen=True, slots=True)
class RegionInfo:
    """A region of the final layout; `runs` is the commit bitmap run-length coded."""

    start: int
    size: int
    alloc_flags: int
    si_flags: int
    runs: tuple[tuple[bool, int], ...]
    is_meta: bool = False
    has_handler: bool = False

    @property
    def pages(self) -> int:
        return self.size // F.PAGE_SIZE

    @property
    def committed_pages(self) -> int:
        return sum(n for committed, n in self.runs if committed)


@dataclass(slots=True)
class Report:
    """The outcome of a replay: per-call results (if kept), final layout, counts."""

    enclave: EnclaveLike
    results: list[CallResult]
    calls: int = 0
    failed: int = 0  # calls that ran and returned an error, abort or crash
    errors: int = 0  # lines that did not run
    internal_errors: int = 0
    unexpected: int = 0  # lines whose result differs from their "expect"
    stopped: CallResult | None = None  # --strict: the bad line that stopped the run
    dead: CallResult | None = None  # the call that aborted or crashed the enclave

    def layout(self) -> dict[str, list[RegionInfo]]:
        return snapshot_layout(self.enclave)

    def counts(self) -> dict[str, dict[str, int]]:
        return self.enclave.trace.by_category()


def committed_runs(committed: object, pages: int) -> tuple[tuple[bool, int], ...]:
    """Run-length code a region's commit view: ((True, 3), (False, 5)) for 3c5u.

    Uses the view's own `runs()` when it offers one; else a view that is all or
    nothing committed (its `count()` says) costs O(1) pages; else it iterates.
    """
    if committed is None:
        return ((False, pages),) if pages else ()
    runs_method = getattr(committed, "runs", None)
    if callable(runs_method):
        return tuple((bool(c), int(n)) for c, n in runs_method())
    count = getattr(committed, "count", None)
    if callable(count) and pages:  # all or nothing committed: no need to walk the pages
        ones = int(count(True))
        if ones in (0, pages):
            return ((ones == pages, pages),)
    out: list[tuple[bool, int]] = []
    for bit in committed:  # type: ignore[attr-defined]
        b = bool(bit)
        if out and out[-1][0] == b:
            out[-1] = (b, out[-1][1] + 1)
        else:
            out.append((b, 1))
    return tuple(out)


def committed_per_cell(runs: Iterable[tuple[bool, int]], pages: int,
                       cells: int) -> list[tuple[int, int]]:
    """(committed pages, pages) of each of `cells` equal columns of a region, for
    drawing its commit bitmap at any width; cell i covers pages
    [i*pages//cells, (i+1)*pages//cells). Walks the runs and the cells together:
    O(runs + cells), whatever the region's size."""
    filled = [0] * cells
    page = 0
    for committed, n in runs:
        start, end = page, page + n
        page = end
        if not committed:
            continue
        cell = start * cells // pages
        while cell < cells and cell * pages // cells < end:
            lo, hi = cell * pages // cells, (cell + 1) * pages // cells
            filled[cell] += max(0, min(hi, end) - max(lo, start))
            cell += 1
    return [(got, (i + 1) * pages // cells - i * pages // cells)
            for i, got in enumerate(filled)]


def snapshot_layout(enclave: EnclaveLike) -> dict[str, list[RegionInfo]]:
    """The regions of both roots, as plain values."""
    layout: dict[str, list[RegionInfo]] = {}
    for root in ("user", "rts"):
        regions = []
        for r in enclave.emm.regions(root):
            pages = r.size // F.PAGE_SIZE
            regions.append(RegionInfo(
                int(r.start), int(r.size), int(r.alloc_flags), int(r.si_flags),
                committed_runs(r.committed, pages), bool(getattr(r, "is_meta", False)),
                bool(getattr(r, "has_handler", False))))
        layout[root] = regions
    return layout

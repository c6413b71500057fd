"""Model-based test: random public-API call sequences on a real simulated enclave.

A hypothesis `RuleBasedStateMachine` drives alloc (every flag combination,
addresses in and out of the user range, FIXED, alignments), dealloc, commit,
uncommit, commit_data, modify_permissions, modify_type and enclave reads/writes
(including the ones that fault and commit on demand), with good and bad
arguments, against a tiny model of the user root: one record per page (region
id, alloc flags, prot | type, committed, the EPCM prot the page must have, its
first byte). The model follows spec/emm.md's check order to predict each
result (address or errno). Where placement is not modelled (no address asked,
or an address the manager falls back from) the returned address is checked
instead: aligned, inside the user range, free before the call.

After every step: both roots sorted and disjoint; the EPCM agrees with every
bitmap (enclave_state.check_invariants); every modelled page has its modelled
flags, commit bit and EPCM prot; the real user root holds no page the model
does not; the rts root never changes.
"""

from __future__ import annotations

import errno
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, replace

from enclave_state import accepted_pages, check_invariants
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sgx_emm import EmmError, Enclave
from sgx_emm.books import PROT as PROT_DIFFERENCE
from sgx_emm.emm import Region
from sgx_emm.enclave import ThreadContext
from sgx_emm.flags import PAGE_SIZE
from sgx_emm.platform import TcsImage

PAGE = PAGE_SIZE
U64 = (1 << 64) - 1

RESERVE, COMMIT_NOW, COMMIT_ON_DEMAND = 0x01, 0x02, 0x04
GROWSDOWN, GROWSUP, FIXED, SYSTEM = 0x10, 0x20, 0x40, 0x80
TCS, REG, TRIM, SS_FIRST, SS_REST = 0x100, 0x200, 0x400, 0x500, 0x600
R, W, X = 1, 2, 4
RW = R | W
MODES = (RESERVE, COMMIT_NOW, COMMIT_ON_DEMAND)

SGX_PAGE_ATTRIBUTES_MISMATCH = 19  # an EACCEPT result the manager returns as the errno

WINDOW_OFFSET = 0x400000      # model-chosen addresses live this far into the user range
WINDOW_PAGES = 24
SOURCE_PAGES = 4              # the commit_data source region (COMMIT_NOW, filled)


@dataclass(frozen=True, slots=True)
class Page:
    """What the model knows of one page of the user root."""

    rid: int            # which alloc created it (splits keep it)
    aflags: int         # alloc flags (low byte), as Region.alloc_flags
    si: int             # prot | page type, as Region.si_flags
    committed: bool
    eprot: int          # RWX the EPCM must hold while committed
    byte: int = 0       # first byte of the page while committed
    #: uncommitted from PROT_NONE: the region says READ but the mapping stayed
    #: PROT_NONE, so a fault here can never be served (see test_enclave_errors)
    stale_none: bool = False
    #: a permission change failed after its ocall: the mapping has the new prot,
    #: the region the old one, so faults here (an access, or commit_data's
    #: EACCEPTCOPY writing through a read-only mapping) take paths the model does
    #: not follow; the machine keeps such pages out of those calls
    diverged: bool = False

    @property
    def prot(self) -> int:
        return self.si & 0x7

    @property
    def ptype(self) -> int:
        return self.si & 0xFF00

    @property
    def reserve(self) -> bool:
        return bool(self.aflags & RESERVE)


class Refusal(Exception):
    """The model's prediction that a call fails with `code`.

    `partial`: the call fails after changing part of the state (an ocall refused
    half-way); the model keeps what it changed before raising.
    """

    def __init__(self, code: int, *, partial: bool = False) -> None:
        super().__init__(errno.errorcode.get(code, str(code)))
        self.code = code
        self.partial = partial


def page_align_range(addr: int, size: int) -> int:
    """The shared range check (a deviation): unaligned, empty, wrapping → EINVAL."""
    if addr < 0 or size <= 0 or addr % PAGE or size % PAGE or addr + size > U64:
        raise Refusal(errno.EINVAL)
    return addr + size


def check_commit(pg: Page) -> None:
    if not pg.si & W or not pg.si & REG or pg.reserve:  # REG as a bit test, as in C
        raise Refusal(errno.EACCES)


def check_uncommit(pg: Page) -> None:
    if pg.reserve:
        raise Refusal(errno.EACCES)


def check_modify_permissions(pg: Page) -> None:
    if not pg.si & REG or pg.reserve:
        raise Refusal(errno.EACCES)
    if not pg.committed:
        raise Refusal(errno.EINVAL)


def check_commit_data(pg: Page) -> None:
    check_commit(pg)
    if not pg.aflags & COMMIT_ON_DEMAND:
        raise Refusal(errno.EINVAL)
    if pg.committed:
        raise Refusal(errno.EACCES)


class Model:
    """The user root as pages, plus the manager's metadata ranges (read, not modelled)."""

    def __init__(self, enc: Enclave) -> None:
        self.base, self.end = enc.base, enc.base + enc.size
        self.user_base, self.user_end = enc.user_base, enc.user_end
        self.pages: dict[int, Page] = {}
        self.meta: list[tuple[int, int]] = []
        self.starts: set[int] = set()  # where the manager's user regions start
        self.next_rid = 1

    # ----------------------------------------------------------- occupancy
    def set_meta(self, regions: list[Region]) -> None:
        self.meta = sorted((r.start, r.end) for r in regions if r.is_meta)
        self.starts = {r.start for r in regions}

    def in_meta(self, addr: int) -> bool:
        i = bisect_right(self.meta, (addr, U64)) - 1
        return i >= 0 and self.meta[i][0] <= addr < self.meta[i][1]

    def runs(self, start: int, end: int) -> list[tuple[int, int, bool]]:
        """Occupied runs clipped to [start, end): (lo, hi, is_meta), address order."""
        spans = [(a, b, True) for a, b in self.meta if a < end and b > start]
        spans += [(p, p + PAGE, False) for p in self.pages if start <= p < end]
        spans.sort()
        out: list[tuple[int, int, bool]] = []
        for a, b, meta in spans:
            a, b = max(a, start), min(b, end)
            if out and out[-1][1] == a and out[-1][2] == meta:
                out[-1] = (out[-1][0], b, meta)
            else:
                out.append((a, b, meta))
        return out

    def occupied(self, start: int, end: int) -> bool:
        return bool(self.runs(start, end))

    def within_enclave(self, addr: int, size: int) -> bool:
        return self.base <= addr and addr + size <= self.end

    def covered(self, start: int, end: int, *, holes: bool,
                check: Callable[[Page], None] | None = None) -> list[int]:
        """The shared checks of range calls, region by region in address order.

        EINVAL: nothing there, or the range starts in free space. Then for each
        region: with `holes`, free space before it is EINVAL; a metadata region
        is EACCES; then the call's own `check`. With `holes`, free space after
        the last region is EINVAL once all passed. Returns the modelled pages.
        """
        runs = self.runs(start, end)
        if not runs or runs[0][0] > start:
            raise Refusal(errno.EINVAL)
        prev_end = runs[0][0]
        for lo, hi, meta in runs:
            if holes and lo != prev_end:
                raise Refusal(errno.EINVAL)
            if meta:
                raise Refusal(errno.EACCES)
            if check is not None:
                for p in range(lo, hi, PAGE):
                    check(self.pages[p])
            prev_end = hi
        if holes and prev_end < end:
            raise Refusal(errno.EINVAL)
        return sorted(p for p in self.pages if start <= p < end)

    # --------------------------------------------------------------- calls
    def alloc(self, addr: int | None, size: int, flags: int) -> int | None:
        """Predict alloc: an address, None for "somewhere free", or raise Refusal."""
        aflags = flags & 0xFF
        if flags & SYSTEM:
            raise Refusal(errno.EINVAL)
        if aflags & (RESERVE | COMMIT_NOW | COMMIT_ON_DEMAND) not in MODES:
            raise Refusal(errno.EINVAL)
        if flags & 0xFF00 not in (0, REG, SS_FIRST, SS_REST):
            raise Refusal(errno.EINVAL)
        if size <= 0 or size % PAGE:
            raise Refusal(errno.EINVAL)
        shift = (flags >> 24) & 0xFF or 12
        if shift < 12 or shift > 63:
            raise Refusal(errno.EINVAL)
        start = addr or 0
        if start % (1 << shift):
            raise Refusal(errno.EINVAL)
        if start and not self.within_enclave(start, size):
            raise Refusal(errno.EACCES)
        if not start:
            return None
        end = start + size
        runs = self.runs(start, end)
        if runs:
            reusable = (all(not meta for _, _, meta in runs)
                        and all(b == a for (_, b, _), (a, _, _) in zip(runs, runs[1:],
                                                                          strict=False))
                        and all(self.pages[p].reserve for p in self.pages
                                if start <= p < end)
                        and self.user_base <= start and end <= self.user_end)
            if reusable:
                return start
            if aflags & FIXED:
                raise Refusal(errno.EEXIST)
            return None
        if self.user_base <= start and end <= self.user_end:
            return start
        if aflags & FIXED:
            raise Refusal(errno.EPERM)
        return None

    def place(self, start: int, size: int, flags: int) -> None:
        aflags = flags & 0xFF
        reserve = bool(aflags & RESERVE)
        si = 0 if reserve else RW | (flags & 0xFF00 or REG)
        now = bool(aflags & COMMIT_NOW)
        rid, self.next_rid = self.next_rid, self.next_rid + 1
        for p in range(start, start + size, PAGE):
            self.pages[p] = Page(rid, aflags, si, now, RW if now else 0)

    def dealloc(self, addr: int, size: int) -> None:
        end = page_align_range(addr, size)
        for p in self.covered(addr, end, holes=False):
            del self.pages[p]

    def commit(self, addr: int, size: int) -> None:
        end = page_align_range(addr, size)
        pages = self.covered(addr, end, holes=True, check=check_commit)
        for p in pages:
            if not self.pages[p].committed:  # EACCEPT RW, whatever the region's prot
                self.pages[p] = replace(self.pages[p], committed=True, eprot=RW, byte=0)

    def uncommit(self, addr: int, size: int) -> None:
        end = page_align_range(addr, size)
        self.trim(self.covered(addr, end, holes=True, check=check_uncommit))

    def trim(self, pages: list[int]) -> None:
        """Uncommit `pages` as the manager's trim does (PROT_NONE regions become READ)."""
        for p in pages:
            pg = self.pages[p]
            si = pg.si
            stale = pg.stale_none
            if pg.prot == 0 and pg.ptype != TCS:
                si |= R  # trimming needs a readable mapping: the region stays READ
                stale = True
            self.pages[p] = replace(pg, si=si, committed=False, eprot=0, byte=0,
                                    stale_none=stale)

    def modify_permissions(self, addr: int, size: int, prot: int) -> None:
        end = page_align_range(addr, size)
        if prot & ~7 or (prot & X and not prot & R):
            raise Refusal(errno.EINVAL)
        pages = self.covered(addr, end, holes=True, check=check_modify_permissions)
        self.change_prot(pages, prot)

    def change_prot(self, pages: list[int], prot: int) -> None:
        """Region by region in address order; the first refusal stops it.

        The untrusted runtime refuses W without R (the driver's EINVAL) and any
        prot change of a non-REG (shadow-stack) page: EFAULT, earlier regions
        keep their new prot. Otherwise, per region (the manager's own regions:
        a split keeps the alloc's id, so `starts` tells them apart): the ocall's
        EMODPR leaves every page `eprot & prot`; then page by page EMODPE adds
        `prot` if it adds bits to the region's old prot, and EACCEPT (skipped for
        W|X) must find exactly `prot` — a page committed RW in an RWX region and
        then restricted to RX holds only R, so EACCEPT fails with the SGX code 19.
        After either failure (deviation 24) EMODPE extends every page of the
        region's range to its old prot, plus `prot` when this change extended
        pages itself, and the region records that union.
        """
        groups: list[list[int]] = []
        for p in pages:
            if not groups or p in self.starts or p != groups[-1][-1] + PAGE:
                groups.append([p])
            else:
                groups[-1].append(p)
        for group in groups:
            first = self.pages[group[0]]
            if first.prot == prot:
                continue
            if prot == W or first.ptype in (SS_FIRST, SS_REST):
                self.reextend(group, first.prot)
                raise Refusal(errno.EFAULT, partial=True)
            extends = bool(prot & ~first.prot)
            checked = (prot & (W | X)) != (W | X)
            for p in group:  # the ocall: EMODPR on the whole region's range
                self.pages[p] = replace(self.pages[p], eprot=self.pages[p].eprot & prot)
            for p in group:
                eprot = self.pages[p].eprot | (prot if extends else 0)
                self.pages[p] = replace(self.pages[p], eprot=eprot)
                if checked and eprot != prot:
                    for q in group:
                        self.pages[q] = replace(self.pages[q], diverged=True)
                    self.reextend(group, first.prot | (prot if extends else 0))
                    raise Refusal(SGX_PAGE_ATTRIBUTES_MISMATCH, partial=True)
            for p in group:
                self.pages[p] = replace(self.pages[p], si=(self.pages[p].si & ~7) | prot,
                                        diverged=False)

    def reextend(self, group: list[int], union: int) -> None:
        """Deviation 24: the pages get `union` back with EMODPE (nothing for PROT_NONE);
        a union other than the region's prot is recorded."""
        for q in group:
            pg = self.pages[q]
            self.pages[q] = replace(pg, eprot=pg.eprot | union,
                                    si=(pg.si & ~7) | (union if union != pg.prot else pg.prot))

    def modify_type(self, addr: int, size: int, page_type: int) -> None:
        if page_type != TCS:
            raise Refusal(errno.EPERM)
        if size != PAGE:
            raise Refusal(errno.EINVAL)
        end = page_align_range(addr, size)
        (p,) = self.covered(addr, end, holes=False)
        pg = self.pages[p]
        if not pg.committed:
            raise Refusal(errno.EACCES)
        if pg.ptype == TCS:
            return
        if pg.prot != RW or pg.ptype != REG:
            raise Refusal(errno.EACCES)
        self.pages[p] = replace(pg, si=TCS, eprot=0)

    def commit_data(self, addr: int, size: int, data: int, prot: int) -> None:
        end = page_align_range(addr, size)
        if data < 0 or data % PAGE or prot & ~7:
            raise Refusal(errno.EINVAL)
        if prot & X and not prot & R:
            raise Refusal(errno.EINVAL)
        if not self.within_enclave(data, size):
            raise Refusal(errno.EINVAL)
        pages = self.covered(addr, end, holes=True, check=check_commit_data)
        for i, p in enumerate(pages):
            src = self.pages[data + i * PAGE]
            self.pages[p] = replace(self.pages[p], committed=True, eprot=prot, byte=src.byte)
        # then modify_permissions without its checks (EACCEPTCOPY already set the EPCM)
        eprots = {p: self.pages[p].eprot for p in pages}
        try:
            self.change_prot(pages, prot)
        except Refusal:
            # Deviation: a failed commit_data trims the pages it copied again
            self.trim(pages)
            raise
        for p in pages:
            self.pages[p] = replace(self.pages[p], eprot=eprots[p])

    # ------------------------------------------------------------ accesses
    def access_ok(self, p: int, write: bool) -> bool:
        """Accesses that end well: committed and allowed, or on-demand and allowed."""
        pg = self.pages[p]
        need = W if write else R
        if pg.ptype == TCS or pg.reserve or pg.stale_none or pg.diverged:
            return False
        if pg.committed:
            return bool(pg.eprot & need) and bool(pg.prot & need)
        return bool(pg.aflags & COMMIT_ON_DEMAND) and bool(pg.prot & need)

    def touch(self, p: int) -> None:
        pg = self.pages[p]
        if not pg.committed:  # the #PF handler commits it with the region's prot
            self.pages[p] = replace(pg, committed=True, eprot=pg.prot, byte=0)


# -------------------------------------------------------------- strategies

PAGE_TYPES = st.sampled_from([0, 0, REG, SS_FIRST, SS_REST, TCS, TRIM, 0x300])
MODE_BITS = st.sampled_from([RESERVE, COMMIT_NOW, COMMIT_ON_DEMAND, COMMIT_ON_DEMAND,
                             0, RESERVE | COMMIT_NOW, COMMIT_NOW | COMMIT_ON_DEMAND])
EXTRA_BITS = st.sets(st.sampled_from([GROWSDOWN, GROWSUP, FIXED, SYSTEM]), max_size=2)
ALIGNS = st.sampled_from([0, 0, 0, 12 << 24, 13 << 24, 14 << 24, 11 << 24, 64 << 24])


@st.composite
def any_alloc_flags(draw: st.DrawFn) -> int:
    """Every combination, valid or not."""
    mode = draw(MODE_BITS)
    ptype = draw(PAGE_TYPES)
    if mode == COMMIT_NOW and ptype in (SS_FIRST, SS_REST):
        ptype = 0  # EACCEPT of a shadow-stack PENDING page #GPs: test_enclave_errors
    extra = 0
    for bit in draw(EXTRA_BITS):
        if bit != SYSTEM or draw(st.integers(0, 3)) == 0:
            extra |= bit
    return mode | ptype | extra | draw(ALIGNS)


@st.composite
def good_alloc_flags(draw: st.DrawFn) -> int:
    """Mostly-valid flags, so that regions exist for the other calls to work on."""
    mode = draw(st.sampled_from([RESERVE, COMMIT_NOW, COMMIT_ON_DEMAND, COMMIT_ON_DEMAND]))
    types = [0, 0, REG] + ([SS_FIRST, SS_REST] if mode != COMMIT_NOW else [])
    ptype = draw(st.sampled_from(types))
    extra = draw(st.sampled_from([0, 0, 0, FIXED, GROWSDOWN, GROWSUP, FIXED | GROWSDOWN]))
    return mode | ptype | extra | draw(st.sampled_from([0, 0, 0, 0, 12 << 24, 14 << 24]))


SIZES = st.sampled_from([PAGE, PAGE, PAGE, 2 * PAGE, 3 * PAGE, 4 * PAGE, 0, 0x800,
                         16 * PAGE])
PROTS = st.sampled_from([0, R, RW, R | X, RW | X, W, X, 8])
DATA_PROTS = st.sampled_from([0, R, RW, R | X, RW | X, X, 8])


class EnclaveMachine(RuleBasedStateMachine):
    """The real enclave and the model side by side."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = Enclave.create(size=1 << 30, epc_pages=8192, threads=2)
        self.ctx = self.enc.enter()
        self.t: ThreadContext = self.ctx.__enter__()
        self.emm = self.enc.emm
        self.model = Model(self.enc)
        self.model.set_meta(self.emm.regions())
        self.rts = self.emm.regions("rts")
        self.window = self.enc.user_base + WINDOW_OFFSET
        # the commit_data source: four committed pages with known first bytes
        self.source = self.emm.alloc(None, SOURCE_PAGES * PAGE, COMMIT_NOW)
        self.model.place(self.source, SOURCE_PAGES * PAGE, COMMIT_NOW)
        for i in range(SOURCE_PAGES):
            p = self.source + i * PAGE
            self.t.write(p, bytes([0x10 + i]))
            self.model.pages[p] = replace(self.model.pages[p], byte=0x10 + i)
        # a few regions to start from, one of each commit mode, in the window
        for offset, pages, flags in ((0, 4, COMMIT_ON_DEMAND), (6, 2, COMMIT_NOW),
                                     (10, 4, RESERVE), (14, 3, COMMIT_ON_DEMAND)):
            at = self.window + offset * PAGE
            assert self.emm.alloc(at, pages * PAGE, flags | FIXED) == at
            self.model.place(at, pages * PAGE, flags | FIXED)
        self.model.set_meta(self.emm.regions())

    def teardown(self) -> None:
        self.ctx.__exit__(None, None, None)

    # ---------------------------------------------------------- addresses
    def targets(self) -> list[int]:
        """Starts of modelled regions (never the source) and window pages."""
        starts = {p for p, pg in self.model.pages.items()
                  if p - PAGE not in self.model.pages
                  or self.model.pages[p - PAGE].rid != pg.rid}
        starts.discard(self.source)
        return sorted(starts)

    def address(self, data: st.DataObject) -> int:
        enc = self.enc
        choice = data.draw(st.integers(0, 19))
        starts = self.targets()
        if choice <= 12 and starts:
            return data.draw(st.sampled_from(starts)) + data.draw(
                st.sampled_from([0, 0, PAGE]))
        if choice <= 17:
            return self.window + data.draw(st.integers(0, WINDOW_PAGES - 1)) * PAGE
        return data.draw(st.sampled_from([
            enc.base + 0x1000,               # inside the enclave, in the rts range
            enc.base + enc.size,             # just past ELRANGE
            enc.user_end - PAGE,             # the last user page
            self.window + 0x10,              # unaligned
            enc.user_base,                   # the first metadata reserve
        ]))

    def span(self, data: st.DataObject, sizes: st.SearchStrategy[int] = SIZES,
             kind: int | None = None) -> tuple[int, int]:
        """(addr, size): mostly a modelled region (kind 0), or a run of its committed
        (1) or uncommitted (2) pages, so that calls get past their checks; else
        (3) anything."""
        if kind is None:
            kind = data.draw(st.integers(0, 3))
        pages = self.model.pages
        if kind < 3:
            if kind == 0:
                heads = self.targets()
            else:
                want = kind == 1
                heads = sorted(p for p, pg in pages.items() if p != self.source
                               and pg.rid != pages[self.source].rid
                               and pg.committed == want and not pg.reserve)
            if heads:
                start = data.draw(st.sampled_from(heads))
                first = pages[start]
                end = start + PAGE
                limit = start + data.draw(st.integers(1, 4)) * PAGE if kind else U64
                while end < limit and end in pages and pages[end].rid == first.rid and (
                        kind == 0 or pages[end].committed == first.committed):
                    end += PAGE
                return start, end - start
        return self.address(data), data.draw(sizes)

    # --------------------------------------------------------- the oracle
    def call(self, predict: object, act: object) -> None:
        """Run the model's prediction and the real call; results must agree."""
        assert callable(predict) and callable(act)
        before = dict(self.model.pages)
        try:
            predict()
            expected: int | None = None
        except Refusal as refusal:
            expected = refusal.code
            if not refusal.partial:
                self.model.pages = before
        try:
            act()
            got: int | None = None
        except EmmError as exc:
            got = exc.errno
        assert got == expected, (f"manager: {errno.errorcode.get(got or 0, got)}, "
                                 f"model: {errno.errorcode.get(expected or 0, expected)}")
        self.model.set_meta(self.emm.regions())

    # -------------------------------------------------------------- rules
    @rule(data=st.data(), size=SIZES, flags=any_alloc_flags())
    def alloc_any(self, data: st.DataObject, size: int, flags: int) -> None:
        self.alloc(data, size, flags)

    @rule(data=st.data(), size=st.sampled_from([PAGE, 2 * PAGE, 3 * PAGE, 4 * PAGE]),
          flags=good_alloc_flags())
    def alloc_good(self, data: st.DataObject, size: int, flags: int) -> None:
        self.alloc(data, size, flags)

    @rule(data=st.data(), size=st.sampled_from([PAGE, 2 * PAGE, 4 * PAGE]),
          flags=good_alloc_flags())
    def alloc_more(self, data: st.DataObject, size: int, flags: int) -> None:
        self.alloc(data, size, flags)

    def alloc(self, data: st.DataObject, size: int, flags: int) -> None:
        addr: int | None = None if data.draw(st.booleans()) else self.address(data)
        if size == 16 * PAGE:
            size = self.enc.user_end - self.enc.user_base + PAGE  # no room anywhere: ENOMEM
        model = self.model
        before_pages = dict(model.pages)
        try:
            predicted = model.alloc(addr, size, flags)
            expected: int | None = None
        except Refusal as refusal:
            expected, predicted = refusal.code, None
        if expected is None and predicted is None and size > self.enc.user_end - (
                self.enc.user_base):
            expected = errno.ENOMEM
        try:
            got_addr = self.emm.alloc(addr, size, flags)
            got: int | None = None
        except EmmError as exc:
            got, got_addr = exc.errno, 0
        assert got == expected, (f"alloc({addr}, {size:#x}, {flags:#x}): manager "
                                 f"{errno.errorcode.get(got or 0, got)}, model "
                                 f"{errno.errorcode.get(expected or 0, expected)}")
        if got is None:
            if predicted is not None:
                assert got_addr == predicted
                for p in [p for p in model.pages if predicted <= p < predicted + size]:
                    del model.pages[p]
            else:
                align = 1 << (((flags >> 24) & 0xFF) or 12)
                assert got_addr % align == 0
                assert self.enc.user_base <= got_addr and got_addr + size <= self.enc.user_end
                assert not model.occupied(got_addr, got_addr + size), "placed on used pages"
            model.place(got_addr, size, flags)
        else:
            model.pages = before_pages
        model.set_meta(self.emm.regions())

    @rule(data=st.data())
    def dealloc(self, data: st.DataObject) -> None:
        addr, size = self.span(data)
        self.call(lambda: self.model.dealloc(addr, size), lambda: self.emm.dealloc(addr, size))

    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        addr, size = self.span(data)
        self.call(lambda: self.model.commit(addr, size), lambda: self.emm.commit(addr, size))

    @rule(data=st.data())
    def uncommit(self, data: st.DataObject) -> None:
        addr, size = self.span(data)
        self.call(lambda: self.model.uncommit(addr, size),
                  lambda: self.emm.uncommit(addr, size))

    @rule(data=st.data(), prot=PROTS)
    def modify_permissions(self, data: st.DataObject, prot: int) -> None:
        addr, size = self.span(data)
        self.call(lambda: self.model.modify_permissions(addr, size, prot),
                  lambda: self.emm.modify_permissions(addr, size, prot))

    @rule(data=st.data(), prot=st.sampled_from([0, R, RW, R | X, RW | X]))
    def modify_committed_permissions(self, data: st.DataObject, prot: int) -> None:
        """Restrict or extend a committed run, then maybe trim part of it."""
        addr, size = self.span(data, kind=1)
        self.call(lambda: self.model.modify_permissions(addr, size, prot),
                  lambda: self.emm.modify_permissions(addr, size, prot))
        if data.draw(st.booleans()):
            self.call(lambda: self.model.uncommit(addr, PAGE),
                      lambda: self.emm.uncommit(addr, PAGE))

    @rule(data=st.data(), size=st.sampled_from([PAGE, PAGE, 2 * PAGE, 0]),
          page_type=st.sampled_from([TCS, TCS, REG, TRIM]))
    def modify_type(self, data: st.DataObject, size: int, page_type: int) -> None:
        addr = self.address(data)
        probe = Model.__new__(Model)
        probe.__dict__.update(self.model.__dict__, pages=dict(self.model.pages))
        try:
            probe.modify_type(addr, size, page_type)
            becomes_tcs = self.model.pages[addr].ptype == REG
        except Refusal:
            becomes_tcs = False
        if becomes_tcs:  # EACCEPT(TCS) checks the contents: write a valid TCS first
            self.t.write(addr, TcsImage(ossa=0, nssa=1).to_bytes())
            self.model.pages[addr] = replace(self.model.pages[addr], byte=0)
        self.call(lambda: self.model.modify_type(addr, size, page_type),
                  lambda: self.emm.modify_type(addr, size, page_type))

    @rule(data=st.data(), prot=DATA_PROTS,
          source=st.sampled_from(["source", "source", "source", "unaligned", "outside"]))
    def commit_data(self, data: st.DataObject, prot: int, source: str) -> None:
        addr, size = self.span(data, st.sampled_from([PAGE, 2 * PAGE, 4 * PAGE]))
        if size > SOURCE_PAGES * PAGE:
            size = SOURCE_PAGES * PAGE
        pages = size // PAGE
        src = {"source": self.source, "unaligned": self.source + 8,
               "outside": self.enc.base + self.enc.size}[source]
        targets = (self.model.pages.get(addr + i * PAGE) for i in range(pages))
        if any(pg is not None and pg.diverged for pg in targets):
            return  # see Page.diverged
        self.call(lambda: self.model.commit_data(addr, size, src, prot),
                  lambda: self.emm.commit_data(addr, size, src, prot))
        if source == "source":
            for i in range(pages):  # the copied bytes are visible where readable
                p = addr + i * PAGE
                pg = self.model.pages.get(p)
                if pg is not None and pg.committed and pg.eprot & R and pg.prot & R:
                    assert self.t.read(p, 1) == bytes([pg.byte])

    @precondition(lambda self: any(self.model.access_ok(p, False) for p in self.model.pages))
    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        ok = sorted(p for p in self.model.pages if self.model.access_ok(p, False))
        p = data.draw(st.sampled_from(ok))
        expect = self.model.pages[p].byte if self.model.pages[p].committed else 0
        assert self.t.read(p, 1) == bytes([expect])
        self.model.touch(p)

    @precondition(lambda self: any(self.model.access_ok(p, True) for p in self.model.pages))
    @rule(data=st.data(), value=st.integers(1, 255))
    def write(self, data: st.DataObject, value: int) -> None:
        ok = sorted(p for p in self.model.pages if self.model.access_ok(p, True))
        p = data.draw(st.sampled_from(ok))
        self.t.write(p, bytes([value]))
        self.model.touch(p)
        self.model.pages[p] = replace(self.model.pages[p], byte=value)

    # ---------------------------------------------------------- invariants
    @invariant()
    def books_agree_with_the_hardware(self) -> None:
        model = self.model
        exempt = frozenset(p for p, pg in model.pages.items()
                           if pg.committed and pg.eprot != pg.prot)
        check_invariants(self.enc, prot_exempt=exempt)
        differences = [d for d in self.enc.check()
                       if not (d.kind == PROT_DIFFERENCE and d.addr in exempt)]
        assert differences == [], differences
        assert self.emm.regions("rts") == self.rts, "the public API changed the rts root"
        regions = [r for r in self.emm.regions() if not r.is_meta]
        starts = [r.start for r in regions]
        accepted = accepted_pages(self.enc)
        for p, pg in model.pages.items():
            i = bisect_right(starts, p) - 1
            assert i >= 0 and p < regions[i].end, f"modelled page {p:#x} is in no region"
            region = regions[i]
            assert (region.alloc_flags, region.si_flags) == (pg.aflags, pg.si), (
                f"page {p:#x}: {region} vs model {pg}")
            assert region.committed[(p - region.start) // PAGE] == pg.committed, (p, pg)
            if pg.committed:
                hw = accepted[p]
                assert (hw.rwx if pg.ptype != TCS else 0) == pg.eprot, (hw, pg)
        assert sum(r.size for r in regions) == len(model.pages) * PAGE, (
            "the user root holds pages the model does not")


EnclaveMachine.TestCase.settings = settings(
    max_examples=50, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestEnclaveMachine = EnclaveMachine.TestCase

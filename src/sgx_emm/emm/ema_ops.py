"""Per-region operations: metadata life cycle, commit, trim, permissions, TCS.

Follows the EMM specification (public API and internal metadata allocator)
and, for everything the spec leaves open, the reference's ema.c / bit_array.c:
the order of ocalls and leaves, where regions split, and the *order of
metadata allocations and frees* (`ema_t` = 72 bytes, `bit_array` = 24 bytes,
bit data = ceil(pages / 8) bytes), because those decide where later regions
land. Every write the C code makes into freshly allocated metadata is reported
with `touch`, so that pages of a metadata reserve get committed at the moment
the reference's #PF handler would commit them.

These functions do no argument or range checking: the manager has done it.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any, Protocol

from sgx_emm.emm.bitmap import CommitBitmap
from sgx_emm.emm.emalloc import BITMAP_STRUCT_SIZE, REGION_RECORD_SIZE
from sgx_emm.emm.regions import Ema, RegionList
from sgx_emm.emm.rt import (
    FaultHandler,
    OcallDiagnostics,
    Primitives,
    RuntimeAbstraction,
    page_loop,
)
from sgx_emm.emm.values import (
    MODIFIED,
    PAGE_TYPE_REG,
    PAGE_TYPE_TCS,
    PAGE_TYPE_TRIM,
    PENDING,
    PR,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ_WRITE,
    PROT_WRITE,
    RESERVE,
)
from sgx_emm.errors import EmmError, EnclaveAbort, sgx_result_name
from sgx_emm.flags import (
    PAGE_SHIFT,
    PAGE_SIZE,
    PAGE_TYPE_MASK,
    PROT_MASK,
    secinfo_text,
)

#: C sizeof of the reference's metadata objects (x86-64): defined once, by the
#: allocator model, whose `bump_region` takes both with a region's bit data.
SIZEOF_EMA = REGION_RECORD_SIZE
SIZEOF_BIT_ARRAY = BITMAP_STRUCT_SIZE
#: Offset of `bit_array.data`, written after the data block is allocated.
_BIT_ARRAY_DATA_OFFSET = 16
#: One byte of bit data covers 8 pages: bitmap_bytes(size >> PAGE_SHIFT) is
#: (size + _BITMAP_BYTE_PAGES_LESS_ONE) >> _BITMAP_BYTE_SHIFT for a whole number of pages.
_BITMAP_BYTE_SHIFT = PAGE_SHIFT + 3
_BITMAP_BYTE_PAGES_LESS_ONE = 7 * PAGE_SIZE

_REG_RW_PENDING = int(PAGE_TYPE_REG | PROT_READ_WRITE | PENDING)
_TRIM_MODIFIED = int(PAGE_TYPE_TRIM | MODIFIED)
#: SECINFO flags without the permission bits (a constant: `~` is an interpreted op).
_NOT_PROT = ~PROT_MASK
_TCS_MODIFIED = int(PAGE_TYPE_TCS | MODIFIED)
_WX = int(PROT_WRITE | PROT_EXEC)


def _permission_steps(prot: int, new_prot: int) -> tuple[int, bool, bool]:
    """How ema_modify_permissions changes `prot` to `new_prot` page by page:
    (the SECINFO of its leaves, EMODPE first (it adds permissions), EACCEPT
    after (it takes some away; RWX needs none))."""
    return (new_prot | PAGE_TYPE_REG | PR, (new_prot | prot) != prot,
            (new_prot & _WX) != _WX)


#: `_permission_steps` for every pair of R/W/X masks, by [prot][new_prot]: a
#: permission change runs the same few pairs over and over, and these bit tests
#: are never specialized by the interpreter.
_PERMISSION_STEPS = [[_permission_steps(p, n) for n in range(8)] for p in range(8)]


def bitmap_bytes(pages: int) -> int:
    """Bytes of bit data the reference allocates for `pages` pages."""
    return (pages + 7) >> 3


class MetaAllocatorLike(Protocol):
    """The part of `emalloc.MetaAllocator` the manager uses."""

    def init(self, initial_size: int = ...) -> None: ...

    def malloc(self, size: int) -> int | None: ...

    def free(self, payload: int) -> None: ...

    def bump_region(self, data_size: int, touched_lo: int,
                    touched_hi: int) -> tuple[int, int, int] | None: ...

    def free_region(self, data: int | None, struct: int | None,
                    record: int | None) -> None: ...

    def in_meta_area(self, payload: int) -> bool: ...

    @property
    def meta_payloads(self) -> range:
        """Payload addresses in the static meta area (`in_meta_area` as a range)."""
        ...

    @property
    def adding_reserve(self) -> bool: ...


class EmaOps:
    """The reference's ema.c operations on one region, bound to a runtime."""

    def __init__(self, runtime: RuntimeAbstraction, primitives: Primitives,
                 meta: MetaAllocatorLike, touch: Callable[[int, int], None]) -> None:
        self.rt = runtime
        self.prims = primitives
        #: EACCEPT over a range of pages (the runtime's batch when it has one)
        self.accept_pages = page_loop(primitives)
        self.meta = meta
        self.touch = touch
        #: A committed run [touched_lo, touched_hi) of a metadata region, kept by
        #: `touch`: pages of a metadata region are never uncommitted (public calls
        #: on them are refused), so a write inside it needs no touch. Checked here
        #: before calling `touch`, because region records are written on every alloc.
        self.touched_lo = 0
        self.touched_hi = 0
        #: the page whose EACCEPT made the last `do_commit` fail (for the error's reason)
        self.failed_page = 0

    # ---- metadata life cycle (ema_new, bit_array_new, ema_split, ema_destroy) ----

    def new(self, root: RegionList, start: int, end: int, alloc_flags: int, si_flags: int,
            handler: FaultHandler | None, private: Any) -> Ema | None:
        """ema_new: claim the range in the list first, then allocate the record.

        A reserve the allocator adds meanwhile therefore lands after this range.
        A region that will get a bitmap (every one but a RESERVE) usually gets
        its record, bitmap struct and bit data in one allocator call, here: they
        come from committed memory at the reserve's bump pointer, where
        `new_bitmap`'s mallocs would have put them, and need no touch (nor an
        is_meta test: reserves never hold the meta area). `new_bitmap` then
        finds them taken; a failed alloc ocall frees them with the record, which
        leaves the allocator as freeing the record alone did. (Only an exception
        raised out of the ocall, which leaves the region without a bitmap in any
        case, now leaves the two blocks taken too.)
        """
        ema = Ema(start, end, alloc_flags, si_flags, handler, private)
        root.insert(ema)
        if not alloc_flags & RESERVE:
            # bitmap_bytes(pages) without a call: one byte for one page (a small-int
            # comparison), else with one shift (a generic BINARY_OP, ~200
            # instructions) instead of two
            size = end - start
            blocks = self.meta.bump_region(
                1 if size == PAGE_SIZE else
                (size + _BITMAP_BYTE_PAGES_LESS_ONE) >> _BITMAP_BYTE_SHIFT,
                self.touched_lo, self.touched_hi)
            if blocks is not None:
                ema.payload, ema.map_struct, ema.map_data = blocks
                return ema
        payload = self.meta.malloc(SIZEOF_EMA)
        if payload is None:
            root.remove(ema)
            return None
        ema.payload = payload
        if self.touched_lo <= payload and payload + SIZEOF_EMA <= self.touched_hi:
            # written memory of a reserve, which is never in the meta area: is_meta
            # stays False, and the write needs no touch (the common case)
            return ema
        ema.is_meta = payload in self.meta.meta_payloads  # in_meta_area, without a call
        self.touch(payload, SIZEOF_EMA)
        return ema

    def new_bitmap(self, ema: Ema, full: bool) -> bool:
        """bit_array_new_set / _reset for the whole region; False = ENOMEM."""
        start, end = ema.start, ema.end
        if ema.map_struct is None:  # not taken with the record (see `new`): rare
            pair = self._malloc_bitmap(bitmap_bytes((end - start) >> PAGE_SHIFT))
            if pair is None:
                return False
            ema.map_struct, ema.map_data = pair
        ema.bitmap = CommitBitmap((start, end) if full and end > start else ())
        return True

    def _malloc_bitmap(self, nbytes: int) -> tuple[int, int] | None:
        """The `bit_array` and its data, each written as the reference writes it."""
        meta = self.meta
        struct = meta.malloc(SIZEOF_BIT_ARRAY)
        if struct is None:
            return None
        if not (self.touched_lo <= struct
                and struct + _BIT_ARRAY_DATA_OFFSET <= self.touched_hi):
            self.touch(struct, _BIT_ARRAY_DATA_OFFSET)
        data = meta.malloc(nbytes)
        if data is None:
            meta.free(struct)
            return None
        lo, hi = self.touched_lo, self.touched_hi
        if not (lo <= struct and struct + SIZEOF_BIT_ARRAY <= hi
                and lo <= data and data + nbytes <= hi):  # both writes need no touch
            self.touch(struct + _BIT_ARRAY_DATA_OFFSET,
                       SIZEOF_BIT_ARRAY - _BIT_ARRAY_DATA_OFFSET)
            self.touch(data, nbytes)
        return struct, data

    def destroy(self, root: RegionList, ema: Ema) -> None:
        """ema_destroy: unlink, then free bit data, bit_array, record (that order)."""
        root.remove(ema)
        self.meta.free_region(ema.map_data, ema.map_struct, ema.payload)

    def split(self, root: RegionList, ema: Ema, addr: int, new_lower: bool) -> Ema:
        """ema_split at `addr` (strictly inside `ema`); returns the new record.

        With `new_lower` the new record takes the pages below `addr`, else those
        above. The bitmap split keeps the old `bit_array` for the lower half
        with freshly allocated data, and gives the upper half a new one.
        Raises EmmError(ENOMEM) with nothing changed.
        """
        meta = self.meta
        new_payload = meta.malloc(SIZEOF_EMA)
        if new_payload is None:
            raise EmmError(errno.ENOMEM, _split_nomem(ema, addr, "region record"))
        upper_map: tuple[int, int] | None = None
        old_data = ema.map_data
        if ema.bitmap is not None:
            pos = (addr - ema.start) >> PAGE_SHIFT
            low_bytes = bitmap_bytes(pos)
            high_bytes = bitmap_bytes(ema.pages - pos)
            low_data = meta.malloc(low_bytes)
            if low_data is None:
                meta.free(new_payload)
                raise EmmError(errno.ENOMEM, _split_nomem(ema, addr, "lower commit bitmap"))
            self.touch(low_data, low_bytes)
            high_struct = meta.malloc(SIZEOF_BIT_ARRAY)
            if high_struct is None:
                meta.free(low_data)
                meta.free(new_payload)
                raise EmmError(errno.ENOMEM, _split_nomem(ema, addr, "upper bitmap record"))
            self.touch(high_struct, _BIT_ARRAY_DATA_OFFSET)
            high_data = meta.malloc(high_bytes)
            if high_data is None:
                meta.free(high_struct)
                meta.free(low_data)
                meta.free(new_payload)
                raise EmmError(errno.ENOMEM, _split_nomem(ema, addr, "upper commit bitmap"))
            self.touch(high_struct + _BIT_ARRAY_DATA_OFFSET,
                       SIZEOF_BIT_ARRAY - _BIT_ARRAY_DATA_OFFSET)
            self.touch(high_data, high_bytes)
            if old_data is not None:
                meta.free(old_data)
            ema.map_data = low_data
            upper_map = (high_struct, high_data)
        new = ema.clone_attrs(0, 0)
        new.payload = new_payload
        new.is_meta = meta.in_meta_area(new_payload)
        self.touch(new_payload, SIZEOF_EMA)
        upper_bits = ema.bitmap.split(addr) if ema.bitmap is not None else None
        root.split(ema, addr, new, new_lower)
        lower, upper = (new, ema) if new_lower else (ema, new)
        if new_lower and ema.bitmap is not None:
            # the old bit_array (with the new low data) goes with the lower half
            lower.bitmap, lower.map_struct, lower.map_data = (
                ema.bitmap, ema.map_struct, ema.map_data)
        if upper_map is not None:
            upper.bitmap = upper_bits
            upper.map_struct, upper.map_data = upper_map
        return new

    def split_range(self, root: RegionList, ema: Ema, start: int, end: int) -> Ema:
        """ema_split_ex: the record covering exactly [start, end) of `ema`."""
        node = ema
        if start > node.start:
            node = self.split(root, node, start, False)
        if end < node.end:
            node = self.split(root, node, end, True)
        return node

    # ---- leaves ----

    def accept_or_abort(self, secinfo: int, addr: int) -> None:
        rc = self.prims.eaccept(secinfo, addr)
        if rc:
            raise _accept_abort(rc, secinfo, addr)

    def commit_pages(self, start: int, size: int, si_flags: int, grow_up: bool) -> None:
        """do_commit for COMMIT_NOW: high->low when `grow_up`, else low->high; abort on failure.

        Anything raised part-way (an abort, a custom handler unwinding, no TCS for
        a leaf) carries the accepted pages as `accepted = (lo, hi)` byte
        addresses, so the caller can record them.
        """
        secinfo = si_flags | PENDING
        end = start + size
        pages = range(end - PAGE_SIZE, start - 1, -PAGE_SIZE) if grow_up else range(
            start, end, PAGE_SIZE)
        done = [0]
        try:
            rc = self.accept_pages(secinfo, pages, done)
            if rc:
                raise _accept_abort(rc, secinfo, pages[done[0]])
        except BaseException as exc:
            page = pages.start + done[0] * pages.step     # the page that failed or raised
            exc.accepted = (page + PAGE_SIZE, end) if grow_up else (start, page)  # type: ignore[attr-defined]
            raise

    def do_commit(self, ema: Ema, start: int, end: int) -> int:
        """ema_do_commit: EACCEPT each uncommitted page of the clipped range.

        Returns 0 or the first failing EACCEPT's code (pages accepted before it
        stay marked).
        """
        bm = ema.bitmap
        assert bm is not None
        s, e = ema.start, ema.end
        lo = start if start > s else s
        hi = end if end < e else e
        if hi - lo == PAGE_SIZE:  # one page (most calls): its one EACCEPT, no hole list
            return 0 if bm.test(lo) else self.commit_page(bm, lo, hi)
        holes = bm.holes_list(lo, hi)
        if not holes:
            return 0
        accept_pages = self.accept_pages
        done = [0]
        for s, e in holes:
            rc = accept_pages(_REG_RW_PENDING, range(s, e, PAGE_SIZE), done)
            if rc:
                failed = s + done[0] * PAGE_SIZE
                bm.set_range(s, failed)
                self.failed_page = failed
                return rc
            bm.set_range(s, e)
        return 0

    def commit_page(self, bm: CommitBitmap, addr: int, end: int) -> int:
        """do_commit of the uncommitted page [addr, end): EACCEPT it, then mark it (0 or
        the code).

        The caller passes the page's end, rather than this adding a page to `addr`,
        so that a page that is a whole region is marked with the region's own
        start and end ints: the bitmap then points at objects every call on the
        region touches anyway, not at a fresh int that would be one more cache
        miss each time the bitmap is read.
        """
        rc = self.prims.eaccept(_REG_RW_PENDING, addr)
        if rc:
            self.failed_page = addr
            return rc
        bm.set_range(addr, end)
        return 0

    def uncommit_real(self, ema: Ema, start: int, end: int, prot: int,
                      notify_prot: int | None = None) -> None:
        """ema_do_uncommit_real: trim each maximal committed run of [start, end).

        `ema` is a committing region (every caller has already refused or
        skipped reservations, which have no bitmap), so the reference's
        reservation test is not made again here. The range need not be clipped
        to the region: its bitmap holds only its own pages. `notify_prot`
        (default `prot`) is the prot the trim-notify ocall carries; the
        untrusted side gives the range that protection afterwards.
        Raises EmmError(EFAULT) on an ocall failure, aborts on an EACCEPT failure.
        """
        bm = ema.bitmap
        assert bm is not None
        runs = bm.runs_list(start, end)
        if not runs:
            return
        notify = (prot if notify_prot is None else notify_prot) | PAGE_TYPE_TRIM
        page_type = ema.si_flags & PAGE_TYPE_MASK
        modify = self.rt.modify_ocall
        done = [0]
        for addr, e in runs:
            length = e - addr
            if modify(addr, length, prot | page_type, prot | PAGE_TYPE_TRIM):
                raise EmmError(errno.EFAULT, ocall_problem(
                    self.rt, _modify_what(addr, length, prot | page_type,
                                          prot | PAGE_TYPE_TRIM)))
            # a one-page run (most trims) is one EACCEPT, as in do_commit
            rc = (self.prims.eaccept(_TRIM_MODIFIED, addr) if length == PAGE_SIZE else
                  self.accept_pages(_TRIM_MODIFIED, range(addr, e, PAGE_SIZE), done))
            if rc:
                raise _accept_abort(rc, _TRIM_MODIFIED, addr + done[0] * PAGE_SIZE)
            bm.clear_range(addr, e)
            if modify(addr, length, notify, notify):
                raise EmmError(errno.EFAULT, ocall_problem(
                    self.rt, _modify_what(addr, length, notify, notify)))

    def modify_permissions(self, root: RegionList, ema: Ema, start: int, end: int,
                           new_prot: int) -> Ema:
        """ema_modify_permissions on the part of `ema` inside [start, end).

        Returns the record that now covers that part. Raises EmmError(EFAULT)
        on an ocall failure, an EmmError whose errno is the SGX code when an
        EACCEPT fails (the reference returns that code), EmmError(ENOMEM) if a split fails.
        After a failed ocall or EACCEPT the pages are first extended back so that
        the EPCM holds what the books say (`_reextend`, deviation 24).
        """
        prot = ema.si_flags & PROT_MASK
        if prot == new_prot:
            return ema
        page_type = ema.si_flags & PAGE_TYPE_MASK
        s, e = ema.start, ema.end
        lo, hi = (start if start > s else s), (end if end < e else e)
        modify = self.rt.modify_ocall
        if modify(lo, hi - lo, prot | page_type, new_prot | page_type):
            problem = ocall_problem(
                self.rt, _modify_what(lo, hi - lo, prot | page_type, new_prot | page_type))
            self._reextend(root, ema, lo, hi, prot, prot)
            raise EmmError(errno.EFAULT, problem)
        secinfo, extends, accept = _PERMISSION_STEPS[prot][new_prot]
        prims = self.prims  # leaves called as methods: no bound method made (one page, mostly)
        for page in ((lo,) if hi - lo == PAGE_SIZE else range(lo, hi, PAGE_SIZE)):
            if extends:
                prims.emodpe(secinfo, page)
            if accept:
                rc = prims.eaccept(secinfo, page)
                if rc:
                    error = EmmError.from_leaf(rc, "EACCEPT", page,
                                               f"secinfo {secinfo_text(secinfo)}")
                    self._reextend(root, ema, lo, hi, prot,
                                   prot | new_prot if extends else prot)
                    raise error
        node = self.split_range(root, ema, lo, hi) if lo > s or hi < e else ema
        node.si_flags = (node.si_flags & _NOT_PROT) | new_prot
        if new_prot == PROT_NONE and modify(lo, hi - lo, page_type | PROT_NONE,
                                            page_type | PROT_NONE):
            raise EmmError(errno.EFAULT, ocall_problem(
                self.rt, _modify_what(lo, hi - lo, page_type | PROT_NONE,
                                      page_type | PROT_NONE)))
        return node

    def _reextend(self, root: RegionList, ema: Ema, lo: int, hi: int, prot: int,
                  union: int) -> None:
        """Deviation 24: after a failed permission change, EPCM and books agree again.

        The OS was asked to change [lo, hi) and then something failed: its ocall
        reported failure, or an EACCEPT did. A restriction it made anyway (a
        runtime that lies about failing, an ETRACK withheld so the EACCEPT says
        SGX_NOT_TRACKED) would leave pages more restricted in the EPCM than the
        region says, and the next legal access would kill the enclave. EMODPE
        needs no help from the OS and only ever adds permissions, so each page
        is extended to `union`: the old prot, or the old prot plus the new one
        once this call has extended pages itself. Every page then holds exactly
        `union` whatever the OS did, and when that differs from the old prot
        the range is recorded with it. The reference returns the error and
        leaves the pages as they fell. Errors of the repair itself are the
        caller's error's business: a page the OS destroyed faults here as it
        would on the next access.
        """
        if union:  # PROT_NONE pages have nothing to extend back to
            secinfo = union | PAGE_TYPE_REG | PR
            emodpe = self.prims.emodpe
            for page in range(lo, hi, PAGE_SIZE):
                emodpe(secinfo, page)
        if union != prot:
            try:
                node = self.split_range(root, ema, lo, hi)
            except EmmError:
                return  # no metadata for the split: the books keep the old prot
            node.si_flags = (node.si_flags & _NOT_PROT) | union

    def match_region_prot(self, ema: Ema, page: int) -> None:
        """After a fault commit: give the page the region's prot (a deviation).

        The page was EACCEPTed RW; the reference leaves it so even when the
        region says otherwise. We change it the way modify_permissions would,
        for this page only, and abort on any failure (we are in the #PF path).
        """
        prot = ema.si_flags & PROT_MASK
        if prot == PROT_READ_WRITE:
            return
        page_type = ema.si_flags & PAGE_TYPE_MASK
        if self.rt.modify_ocall(page, PAGE_SIZE, PROT_READ_WRITE | page_type, prot | page_type):
            raise EnclaveAbort(f"modify_ocall for a fault commit at {page:#x} failed",
                               cause=ocall_problem(self.rt, _modify_what(
                                   page, PAGE_SIZE, PROT_READ_WRITE | page_type,
                                   prot | page_type)) + " while committing a faulting page")
        secinfo = prot | PAGE_TYPE_REG | PR
        if prot & ~PROT_READ_WRITE:
            self.prims.emodpe(secinfo, page)
        if (prot & _WX) != _WX:
            self.accept_or_abort(secinfo, page)

    def change_to_tcs(self, root: RegionList, ema: Ema, addr: int) -> None:
        """ema_change_to_tcs for the page at `addr`."""
        prot = ema.si_flags & PROT_MASK
        page_type = ema.si_flags & PAGE_TYPE_MASK
        if not ema.committed(addr):
            raise EmmError(errno.EACCES, f"page {addr:#x} is not committed")
        if page_type == PAGE_TYPE_TCS:
            return
        if prot != PROT_READ_WRITE or page_type != PAGE_TYPE_REG:
            raise EmmError(errno.EACCES, f"page {addr:#x} is "
                           f"{secinfo_text(ema.si_flags).split(' ')[0]}, not REG|RW (only a "
                           "REG|RW page can become a TCS)")
        if self.rt.modify_ocall(addr, PAGE_SIZE, prot | page_type, prot | PAGE_TYPE_TCS):
            raise EmmError(errno.EFAULT, ocall_problem(
                self.rt, _modify_what(addr, PAGE_SIZE, prot | page_type,
                                      prot | PAGE_TYPE_TCS)))
        self.accept_or_abort(_TCS_MODIFIED, addr)
        node = self.split_range(root, ema, addr, addr + PAGE_SIZE)
        node.si_flags = (node.si_flags & ~PAGE_TYPE_MASK & ~PROT_MASK) | PAGE_TYPE_TCS

    def commit_data(self, ema: Ema, start: int, end: int, data: int, prot: int) -> None:
        """ema_do_commit_data: EACCEPTCOPY each page, then mark them (EFAULT on failure).

        Deviation: on a failure the pages already copied are marked too (the
        reference leaves them accepted but unrecorded), so the caller can roll
        them back and the books never hide an accepted page.
        """
        secinfo = prot | PAGE_TYPE_REG
        eacceptcopy = self.prims.eacceptcopy
        bm = ema.bitmap
        assert bm is not None
        src = data
        for page in range(start, end, PAGE_SIZE):
            rc = eacceptcopy(secinfo, page, src)
            if rc:
                bm.set_range(start, page)
                raise EmmError(errno.EFAULT, f"EACCEPTCOPY of {src:#x} to {page:#x} "
                               f"(secinfo {secinfo_text(secinfo)}) failed with "
                               f"{sgx_result_name(rc)} ({rc})")
            src += PAGE_SIZE
        bm.set_range(start, end)


def ocall_problem(rt: object, what: str) -> str:
    """Why an ocall failed: what was asked, and what the untrusted side reported.

    The trusted side only learns "failed" (EFAULT); a runtime that offers
    `last_ocall_failure()` (see `OcallDiagnostics`) adds the untrusted side's
    own explanation, for people: the manager never acts on it.
    """
    detail = rt.last_ocall_failure() if isinstance(rt, OcallDiagnostics) else None
    return f"{what} failed" + (f": {detail}" if detail else
                               " (the untrusted runtime returned an error)")


def _modify_what(addr: int, length: int, flags_from: int, flags_to: int) -> str:
    return (f"modify_ocall {addr:#x}-{addr + length:#x} from "
            f"{secinfo_text(flags_from).split(' ')[0]} to {secinfo_text(flags_to).split(' ')[0]}")


def _split_nomem(ema: Ema, addr: int, what: str) -> str:
    return (f"no metadata memory for the {what} needed to split region "
            f"{ema.start:#x}-{ema.end:#x} at {addr:#x}")


def _accept_abort(rc: int, secinfo: int, addr: int) -> EnclaveAbort:
    """EACCEPT failed where the manager relies on it: the enclave cannot go on."""
    cause = (f"{sgx_result_name(rc)} ({rc}) from EACCEPT at {addr:#x} with secinfo "
             f"{secinfo_text(secinfo)}: the OS did not make the change the manager asked for")
    return EnclaveAbort(f"EACCEPT {secinfo:#x} at {addr:#x} failed", cause=cause)


"""Whole-enclave state for the end-to-end manager tests: snapshot and invariants.

A `snapshot` freezes everything a manager call may change (the regions of both
roots with their commit bitmaps, every EPCM entry of the enclave, the driver's
per-page records, the VMAs and the counts of leaves / ocalls / ioctls), so a
test of a rejected call can compare before and after. `check_invariants` states
what must hold between any two calls (spec/emm.md "State", platform.md A): roots
sorted and disjoint and each in its half of ELRANGE; a page is committed in its
region exactly when the EPCM holds one valid, accepted page of this enclave bound
to that address, of the region's page type and (REG) with the region's prot.

Cost: O(EPC pages + regions), never O(pages of the regions), so huge reserves
cost nothing.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from sgx_emm import Enclave
from sgx_emm.emm import Region
from sgx_emm.flags import PAGE_SIZE
from sgx_emm.platform import EnclaveFd
from sgx_emm.platform.epcm import F_MODIFIED, F_PENDING, F_VALID
from sgx_emm.platform.secinfo import (
    PT_REG,
    PT_SECS,
    PT_SS_FIRST,
    PT_SS_REST,
    PT_TCS,
    PT_TRIM,
    PT_VA,
)
from sgx_emm.trace import IOCTL, LEAF, OCALL, SYSCALL

#: EPCM flag bits that say "the enclave has not accepted this page (yet)".
UNACCEPTED = F_PENDING | F_MODIFIED


@dataclass(frozen=True, slots=True)
class EpcmPage:
    """One valid EPC page of the enclave: where it is bound and what the EPCM says."""

    linaddr: int
    slot: int
    flags: int          # the EPCM flag byte (R W X PENDING MODIFIED PR VALID BLOCKED)
    pt: int

    @property
    def accepted(self) -> bool:
        return not self.flags & UNACCEPTED

    @property
    def rwx(self) -> int:
        return self.flags & 0x7


@dataclass(frozen=True, slots=True)
class EnclaveState:
    """Everything observable that a manager call could change."""

    user: tuple[Region, ...]
    rts: tuple[Region, ...]
    epcm: tuple[EpcmPage, ...]
    records: tuple[tuple[int, int, int], ...]
    vmas: tuple[tuple[int, int, int], ...]
    work: tuple[tuple[str, str, int], ...]


def enclave_fd(enc: Enclave) -> EnclaveFd:
    """The driver's enclave object (its per-page records)."""
    return enc.fd


def epcm_pages(enc: Enclave) -> list[EpcmPage]:
    """Every VALID EPC page owned by this enclave (except its SECS), by address."""
    machine = enc.machine
    epc = machine.epc
    secs = enclave_fd(enc).secs_slot
    out: list[EpcmPage] = []
    with machine.lock:
        flags, owner, pt, linaddr = epc.flags, epc.owner, epc.pt, epc.linaddr
        for slot in range(epc.npages):
            f = flags[slot]
            if f & F_VALID and owner[slot] == secs and pt[slot] != PT_SECS:
                out.append(EpcmPage(linaddr[slot], slot, f, pt[slot]))
    out.sort(key=lambda p: (p.linaddr, p.slot))
    return out


def epcm_at(enc: Enclave, addr: int) -> list[EpcmPage]:
    """The valid EPC pages of this enclave bound to the page holding `addr`."""
    page = addr & ~(PAGE_SIZE - 1)
    return [p for p in epcm_pages(enc) if p.linaddr == page]


def accepted_at(enc: Enclave, addr: int) -> EpcmPage | None:
    """The one accepted page bound to `addr`'s page, or None."""
    found = [p for p in epcm_at(enc, addr) if p.accepted]
    assert len(found) <= 1, f"page {addr:#x} accepted twice: {found}"
    return found[0] if found else None


def snapshot(enc: Enclave) -> EnclaveState:
    emm = enc.emm
    fd = enclave_fd(enc)
    counts = enc.trace.by_category()
    work = tuple((cat, name, n) for cat in (LEAF, OCALL, IOCTL, SYSCALL)
                 for name, n in sorted(counts.get(cat, {}).items()))
    return EnclaveState(
        tuple(emm.regions("user")), tuple(emm.regions("rts")), tuple(epcm_pages(enc)),
        tuple(fd.records_in(enc.base, enc.base + enc.size)),
        tuple((v.start, v.end, v.prot) for v in enc.machine.mm.all_vmas()),
        work)


def _check_root(regions: list[Region], name: str) -> None:
    for r in regions:
        assert r.size > 0 and r.start % PAGE_SIZE == 0 and r.size % PAGE_SIZE == 0, (name, r)
        assert len(r.committed) == r.size // PAGE_SIZE, (name, r)
    for a, b in zip(regions, regions[1:], strict=False):
        assert a.end <= b.start, f"{name} root not sorted/disjoint: {a} / {b}"


def _page_type(region: Region) -> int:
    return region.page_type >> 8


def accepted_pages(enc: Enclave) -> dict[int, EpcmPage]:
    """Accepted pages of the enclave by address (asserts none is accepted twice)."""
    out: dict[int, EpcmPage] = {}
    for p in epcm_pages(enc):
        if p.accepted:
            assert p.linaddr not in out, f"page {p.linaddr:#x} accepted twice"
            out[p.linaddr] = p
    return out


def check_invariants(enc: Enclave, *, prot_exempt: frozenset[int] = frozenset()) -> None:
    """Assert the manager's books agree with the hardware (see the module doc).

    `prot_exempt`: pages whose EPCM prot may differ from their region's (the
    caller checks them against its own expectation).
    """
    emm = enc.emm
    user, rts = emm.regions("user"), emm.regions("rts")
    _check_root(user, "user")
    _check_root(rts, "rts")
    for r in user:
        assert enc.user_base <= r.start and r.end <= enc.user_end, f"user region {r} outside"
    for r in rts:
        assert r.end <= enc.user_base or r.start >= enc.user_end, f"rts region {r} in user range"
        assert enc.base <= r.start and r.end <= enc.base + enc.size, r
    regions = sorted(user + rts, key=lambda r: r.start)
    starts = [r.start for r in regions]

    pages = epcm_pages(enc)
    accepted: dict[int, EpcmPage] = {}
    for p in pages:
        assert p.pt != PT_VA, p
        # an accepted trim is removed in the same call (modify_ocall TRIM -> TRIM)
        assert p.pt != PT_TRIM or not p.accepted, f"accepted TRIM page left behind: {p}"
        if not p.accepted:
            continue
        assert p.linaddr not in accepted, f"page {p.linaddr:#x} accepted twice"
        accepted[p.linaddr] = p
        i = bisect_right(starts, p.linaddr) - 1
        assert i >= 0 and p.linaddr < regions[i].end, (
            f"accepted page {p.linaddr:#x} lies in no region")
        region = regions[i]
        index = (p.linaddr - region.start) // PAGE_SIZE
        assert region.committed[index], (
            f"page {p.linaddr:#x} accepted but not committed in {region}")
        region_pt = _page_type(region)
        # shadow-stack regions commit through REG EACCEPTs (the kernel only EAUGs REG)
        assert p.pt == region_pt or (p.pt == PT_REG and region_pt in (PT_SS_FIRST,
                                                                      PT_SS_REST)), (
            f"{p} type differs from {region}")
        if p.pt == PT_TCS:
            assert p.rwx == 0, p
        elif p.linaddr not in prot_exempt:
            assert p.rwx == region.prot, f"{p} prot differs from {region}"
    committed = sum(r.committed.count() for r in regions)
    assert committed == len(accepted), (
        f"{committed} pages committed in the regions, {len(accepted)} accepted in the EPCM")
    fd = enclave_fd(enc)
    for addr, p in accepted.items():
        record = fd.record(addr)
        assert record is not None and record[0] == p.slot, (
            f"driver record of {addr:#x} is {record}, EPCM slot {p.slot}")


def user_regions(enc: Enclave) -> list[Region]:
    """The user root without the manager's metadata regions."""
    return [r for r in enc.emm.regions("user") if not r.is_meta]

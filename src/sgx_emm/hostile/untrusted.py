"""Attacks by the untrusted runtime: the code that serves the manager's two ocalls.

The manager asks the outside world for two things: map a range so the kernel can
EAUG into it (`alloc_ocall`), and change permissions or types or remove trimmed
pages (`modify_ocall`, which the Intel SDK's runtime turns into the EDMM ioctls
and mprotect). Each attack here is a subclass of the honest `UntrustedRuntime`
swapped in with `Enclave.use_untrusted_runtime`: it skips, weakens, misdirects or
lies about that work. The manager trusts none of it: every change it asked for is
confirmed by its own EACCEPT, whose result comes from the EPCM.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from sgx_emm.flags import PAGE_SIZE, PROT_READ, PROT_READ_WRITE
from sgx_emm.hostile.base import Attack, Installer, Marks, Switch
from sgx_emm.platform import MAP_FIXED, MAP_SHARED
from sgx_emm.runtime.urts import UntrustedRuntime

if TYPE_CHECKING:
    from sgx_emm.enclave import Enclave

FAMILY = "untrusted runtime"


def _swap(cls: type[UntrustedRuntime]) -> Installer:
    def install(enc: Enclave, marks: Marks) -> Switch:
        hostile = cls(enc.machine.kernel, enc.fd)
        old = enc.use_untrusted_runtime(hostile)

        def off() -> None:
            enc.use_untrusted_runtime(old)
        return Switch(off)
    return install


class SkipsMmap(UntrustedRuntime):
    """alloc_ocall: reports success without mapping anything."""

    def alloc_ocall(self, addr: int, length: int, page_type: int, alloc_flags: int) -> int:
        return 0


class RefusesMmap(UntrustedRuntime):
    """alloc_ocall: refuses every request."""

    def alloc_ocall(self, addr: int, length: int, page_type: int, alloc_flags: int) -> int:
        return errno.ENOMEM


class MapsReadOnly(UntrustedRuntime):
    """alloc_ocall: maps the range, but read-only."""

    def alloc_ocall(self, addr: int, length: int, page_type: int, alloc_flags: int) -> int:
        self.kernel.mmap(addr, length, PROT_READ, MAP_SHARED | MAP_FIXED, self.fd)
        return 0


class SkipsRestrict(UntrustedRuntime):
    """modify_ocall: says it restricted permissions (EMODPR) but did not."""

    def restrict_permissions(self, addr: int, length: int, prot: int) -> None:
        return None


class RestrictsTheNeighbour(UntrustedRuntime):
    """modify_ocall: restricts the page after the one asked for instead."""

    def restrict_permissions(self, addr: int, length: int, prot: int) -> None:
        super().restrict_permissions(addr + length, PAGE_SIZE, prot)


class SkipsTrim(UntrustedRuntime):
    """modify_ocall: says it changed pages to TRIM (EMODT) but did not."""

    def modify_types(self, addr: int, length: int, page_type: int) -> None:
        if page_type == 4:
            return None
        super().modify_types(addr, length, page_type)


class SkipsTcs(UntrustedRuntime):
    """modify_ocall: says it changed a page to TCS (EMODT) but did not."""

    def modify_types(self, addr: int, length: int, page_type: int) -> None:
        if page_type == 1:
            return None
        super().modify_types(addr, length, page_type)


class SkipsRemove(UntrustedRuntime):
    """Never removes trimmed pages, hoping to hand the old contents back later."""

    def remove_pages(self, addr: int, length: int) -> None:
        return None


class LiesAboutFailure(UntrustedRuntime):
    """modify_ocall: does the work, then reports that it failed."""

    def modify_ocall(self, addr: int, length: int, flags_from: int, flags_to: int) -> int:
        super().modify_ocall(addr, length, flags_from, flags_to)
        return errno.EFAULT


class MapsWritableAnyway(UntrustedRuntime):
    """modify_ocall: restricts in the EPCM but leaves the mapping read-write."""

    def modify_ocall(self, addr: int, length: int, flags_from: int, flags_to: int) -> int:
        prot_to, type_to = flags_to & 0x7, (flags_to >> 8) & 0xFF
        if type_to == 2 and prot_to and (flags_from >> 8) & 0xFF == 2:
            self.restrict_permissions(addr, length, prot_to)
            self.kernel.mprotect(addr, length, PROT_READ_WRITE)
            return 0
        return super().modify_ocall(addr, length, flags_from, flags_to)


def attacks() -> list[Attack]:
    g_accept = ("the manager EACCEPTs every page it asked for; the EPCM must match "
                "exactly, so a skipped or different change fails there")
    return [
        Attack("urts.skip-mmap", FAMILY, "alloc_ocall says it mapped the range but did not",
               "the manager's EACCEPT needs the kernel to EAUG the page first; nothing "
               "mapped means the EACCEPT faults and the enclave stops",
               "commit", _swap(SkipsMmap)),
        Attack("urts.refuse-mmap", FAMILY, "alloc_ocall refuses every range",
               "a failed ocall is EFAULT and the region is removed: nothing half-made",
               "commit", _swap(RefusesMmap)),
        Attack("urts.map-read-only", FAMILY, "alloc_ocall maps the range read-only",
               "the OS may deny service through page tables, never grant access the EPCM "
               "refuses; a write that can never succeed ends the enclave",
               "commit", _swap(MapsReadOnly)),
        Attack("urts.skip-restrict", FAMILY, "modify_ocall skips the EMODPR it was asked for",
               g_accept, "restrict", _swap(SkipsRestrict)),
        Attack("urts.restrict-neighbour", FAMILY,
               "modify_ocall restricts the next page instead of the one asked",
               g_accept, "restrict", _swap(RestrictsTheNeighbour)),
        Attack("urts.skip-trim", FAMILY, "modify_ocall skips EMODT(TRIM) when freeing pages",
               "EACCEPT(TRIM|MODIFIED) fails on a page that is still REG: the manager "
               "aborts rather than believe the page is gone", "trim", _swap(SkipsTrim)),
        Attack("urts.skip-tcs", FAMILY, "modify_ocall skips EMODT(TCS)",
               "EACCEPT(TCS|MODIFIED) fails on a REG page: the manager aborts",
               "tcs", _swap(SkipsTcs)),
        Attack("urts.skip-remove", FAMILY,
               "never EREMOVEs trimmed pages, hoping to hand old contents back",
               "an accepted TRIM page is inaccessible and can never be accepted as REG "
               "again; the next commit there fails its EACCEPT and the manager aborts",
               "trim", _swap(SkipsRemove)),
        Attack("urts.lie-failure", FAMILY, "modify_ocall does the work, then reports failure",
               "a failed ocall is EFAULT; the manager extends the pages back with EMODPE, so "
               "a restriction the OS made anyway does not outlive the failure",
               "restrict", _swap(LiesAboutFailure)),
        Attack("urts.keep-mapping-writable", FAMILY,
               "restricts pages in the EPCM but leaves their mapping read-write",
               "page tables only ever narrow what the EPCM allows: a read-write PTE over an "
               "EPCM read-only page grants nothing", "restrict", _swap(MapsWritableAnyway)),
    ]

"""Attacks by the kernel's SGX driver and its page-fault handler.

Each attack is a `KernelHooks` subclass installed as `machine.kernel.hooks`: the
platform's documented hook points (EAUG, the EDMM ioctls and the EMODPR / EMODT
leaves they issue, ETRACK, the #PF handler), plus the ENCLS leaves any kernel may
issue on its own (EAUG, EREMOVE). The manager never takes the kernel's word: an
ioctl's success is confirmed page by page by EACCEPT, and a fault is served only
after the EPCM says the page is usable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sgx_emm.flags import PAGE_SIZE
from sgx_emm.hostile.base import Attack, Installer, Marks, Switch
from sgx_emm.platform.epcm import Epc
from sgx_emm.platform.hooks import Encl, KernelHooks
from sgx_emm.platform.secinfo import PT_REG, secinfo_flags
from sgx_emm.platform.uapi import FaultOutcome, FaultResult

if TYPE_CHECKING:
    from collections.abc import Callable

    from sgx_emm.enclave import Enclave

FAMILY = "driver"
P = PAGE_SIZE


class Hostile(KernelHooks):
    """Linux's behaviour plus a handle on the enclave and the victim's marks."""

    def __init__(self, enc: Enclave, marks: Marks) -> None:
        self.enc = enc
        self.marks = marks

    def arm(self) -> None:
        """Called once when installed (attacks that act at once do it here)."""


def hooks(cls: type[Hostile]) -> Installer:
    """An installer that puts `cls` in the kernel's hook slot (and takes it out)."""
    def install(enc: Enclave, marks: Marks) -> Switch:
        h = cls(enc, marks)
        kernel = enc.machine.kernel
        kernel.hooks = h
        h.arm()

        def off() -> None:
            kernel.hooks = None
        leaked: Callable[[], str | None] = getattr(h, "leaked", lambda: None)
        return Switch(off, leaked)
    return install


class RefuseEaug(Hostile):
    def eaug(self, encl: Encl, addr: int) -> str | None:
        return "the attacker refuses to EAUG"


class EaugTwins(Hostile):
    """EAUG a second, unrecorded page at the next address whenever it EAUGs one."""

    def eaug(self, encl: Encl, addr: int) -> str | None:
        _eaug_raw(self.enc, addr + P)
        return None


class EaugOutsideMmap(Hostile):
    """EAUG pages nobody asked for: outside every mapping, across ELRANGE."""

    def arm(self) -> None:
        enc = self.enc
        for addr in (enc.user_end - P, enc.user_base + (enc.user_end - enc.user_base) // 2,
                     enc.base + enc.size // 4, enc.user_base + 0x8000 * P):
            _eaug_raw(enc, addr)


def _eaug_raw(enc: Enclave, addr: int) -> None:
    """The ENCLS leaf itself, as any kernel may issue it: no record, no mapping."""
    machine = enc.machine
    slot = machine.epc.alloc()
    if slot is None or enc.fd.secs_slot is None:
        return
    try:
        machine.cpu.eaug(addr, Epc.paddr(enc.fd.secs_slot), Epc.paddr(slot))
    except Exception:
        machine.epc.unalloc(slot)


class SkipEmodpr(Hostile):
    def page_leaf(self, encl: Encl, leaf: str, addr: int) -> bool:
        return leaf != "EMODPR"


class WeakenEmodpr(Hostile):
    """Issues its own EMODPR that keeps R|W instead of the one asked for."""

    def page_leaf(self, encl: Encl, leaf: str, addr: int) -> bool:
        record = encl.record(addr)
        if leaf != "EMODPR" or record is None or record[0] < 0:
            return True
        self.enc.machine.cpu.emodpr(secinfo_flags(0x3, PT_REG), Epc.paddr(record[0]))
        return False


class SkipEmodtTrim(Hostile):
    def page_leaf(self, encl: Encl, leaf: str, addr: int) -> bool:
        return leaf != "EMODT"


class SkipEmodtTcs(Hostile):
    def ioctl(self, encl: Encl, name: str, params: object) -> bool:
        return not (name == "MODIFY_TYPES" and getattr(params, "page_type", 0) == 1)


class WithholdEtrack(Hostile):
    def etrack(self, encl: Encl) -> bool:
        return False


class IoctlLies(Hostile):
    """Reports every EDMM ioctl done without doing any of it."""

    def ioctl(self, encl: Encl, name: str, params: object) -> bool:
        return name not in ("RESTRICT_PERMISSIONS", "MODIFY_TYPES", "REMOVE_PAGES")


class EremoveBehindBack(Hostile):
    """While the enclave is out for an ocall, EREMOVE a page it has committed."""

    done = False

    def map_prot(self, syscall: str, addr: int, length: int, prot: int) -> int:
        heap = self.marks.get("heap")
        record = self.enc.fd.record(heap) if heap is not None else None
        if not self.done and heap is not None and record is not None and record[0] >= 0:
            self.done = True
            machine = self.enc.machine
            machine.mm.zap(heap, heap + P)
            machine.cpu.eremove(Epc.paddr(record[0]))
        return prot


class SpuriousFault(Hostile):
    """Reports the first fault of each heap page to the enclave instead of fixing it."""

    def __init__(self, enc: Enclave, marks: Marks) -> None:
        super().__init__(enc, marks)
        self.seen: set[int] = set()

    def page_fault(self, addr: int, errcd: int) -> FaultResult | None:
        page = addr & ~(P - 1)
        heap = self.marks.get("heap")
        if errcd & 0x1 or page in self.seen or heap is None or not heap <= page < heap + 4 * P:
            return None
        self.seen.add(page)
        return FaultResult(FaultOutcome.REPORT, "a spurious fault the attacker reports")


class FakeFixed(Hostile):
    """Says every fault on the victim's heap is fixed, and fixes nothing."""

    def page_fault(self, addr: int, errcd: int) -> FaultResult | None:
        heap = self.marks.get("heap")
        if heap is not None and heap <= addr < heap + 4 * P:
            return FaultResult(FaultOutcome.FIXED)
        return None


def attacks() -> list[Attack]:
    accept = ("every change the driver reports is confirmed by the enclave's EACCEPT, "
              "which the EPCM answers; a skipped or weakened leaf fails it")
    return [
        Attack("driver.refuse-eaug", FAMILY, "refuses to EAUG pages on first touch",
               "denial of service only: the EACCEPT can never succeed, the enclave stops "
               "(SIGBUS reaches it as a crash)", "commit", hooks(RefuseEaug)),
        Attack("driver.eaug-twins", FAMILY,
               "EAUGs an extra, unrecorded page next to every page it EAUGs",
               "EAUG only makes PENDING pages; the enclave accepts only pages of its own "
               "regions, each once, so a surplus page is never used", "commit",
               hooks(EaugTwins)),
        Attack("driver.eaug-outside-mmap", FAMILY,
               "EAUGs pages across ELRANGE outside anything the enclave mapped",
               "a PENDING page is inaccessible until the enclave EACCEPTs it, and the "
               "manager accepts only inside its regions", "commit", hooks(EaugOutsideMmap)),
        Attack("driver.skip-emodpr", FAMILY, "skips the EMODPR of RESTRICT_PERMISSIONS",
               accept, "restrict", hooks(SkipEmodpr)),
        Attack("driver.weaken-emodpr", FAMILY,
               "restricts to R|W when asked for R (keeps write access)", accept,
               "restrict", hooks(WeakenEmodpr)),
        Attack("driver.skip-emodt", FAMILY, "skips the EMODT of MODIFY_TYPES(TRIM)",
               "EACCEPT(TRIM|MODIFIED) fails on a REG page: the manager aborts rather "
               "than believe the page is gone", "trim", hooks(SkipEmodtTrim)),
        Attack("driver.skip-emodt-tcs", FAMILY, "skips MODIFY_TYPES(TCS)",
               "EACCEPT(TCS|MODIFIED) fails on a REG page: the manager aborts", "tcs",
               hooks(SkipEmodtTcs)),
        Attack("driver.withhold-etrack", FAMILY,
               "skips the ETRACK (and IPIs) after EMODPR",
               "EACCEPT of a restricted page reports SGX_NOT_TRACKED until tracking is "
               "complete: stale TLB entries can never outlive the restriction", "restrict",
               hooks(WithholdEtrack)),
        Attack("driver.ioctl-lies", FAMILY,
               "reports every EDMM ioctl as done and does none of it", accept, "restrict",
               hooks(IoctlLies)),
        Attack("driver.eremove-behind-back", FAMILY,
               "EREMOVEs a committed page while the enclave is out for an ocall",
               "the OS can destroy pages (denial of service) but not replace them: the "
               "fresh page the kernel maps is PENDING, the access can never succeed and "
               "the enclave stops", "commit", hooks(EremoveBehindBack)),
        Attack("driver.spurious-fault", FAMILY,
               "reports a fault it would fix (an exception the enclave did not earn)",
               "the manager's handler serves only what the EPCM confirms: it commits the "
               "page with EACCEPT or retries, so a spurious fault changes nothing",
               "commit", hooks(SpuriousFault)),
        Attack("driver.fake-fixed", FAMILY,
               "says every fault on the heap is fixed and fixes nothing",
               "denial of service only: the access is re-executed and faults again; the "
               "endless loop ends the enclave", "commit", hooks(FakeFixed)),
    ]

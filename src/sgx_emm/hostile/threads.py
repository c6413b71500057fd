"""Attacks through scheduling: interrupts, reordered and delayed work across threads.

The OS decides when each thread runs and may interrupt an enclave thread at any
instruction (an AEX), hold back the IPIs that complete a tracking cycle, or run
one thread's request after another's. SGX makes interrupts transparent (the
context is saved in the SSA and restored by ERESUME), and EACCEPT refuses a
restricted page until every thread that could hold a stale translation has left
the enclave once (SGX_NOT_TRACKED).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sgx_emm.hostile.base import Attack, Marks
from sgx_emm.hostile.driver import Hostile, hooks
from sgx_emm.hostile.pagetables import at
from sgx_emm.platform.epcm import Epc
from sgx_emm.platform.hooks import Encl
from sgx_emm.platform.uapi import FaultResult, ModifyTypes, RestrictPermissions

if TYPE_CHECKING:
    from sgx_emm.enclave import Enclave

FAMILY = "threads"


class WithholdIpis(Hostile):
    """ETRACK, but no IPIs: threads inside keep running past the restriction."""

    def etrack(self, encl: Encl) -> bool:
        secs = self.enc.fd.secs_slot
        assert secs is not None
        self.enc.machine.cpu.etrack(Epc.paddr(secs))
        return False


class ReorderIoctls(Hostile):
    """Holds each EDMM request back, reports it done, and runs it at the next fault."""

    def __init__(self, enc: Enclave, marks: Marks) -> None:
        super().__init__(enc, marks)
        self.pending: RestrictPermissions | ModifyTypes | None = None

    def ioctl(self, encl: Encl, name: str, params: object) -> bool:
        if not isinstance(params, RestrictPermissions | ModifyTypes):
            return True
        self.flush()
        self.pending = params
        return False

    def flush(self) -> None:
        """Run the request held back, now (outside any ioctl in flight)."""
        late, self.pending = self.pending, None
        if late is None:
            return
        fd = self.enc.fd
        kernel = self.enc.machine.kernel
        kernel.hooks = None        # the late request itself runs as Linux runs it
        try:
            if isinstance(late, RestrictPermissions):
                fd.restrict_permissions(RestrictPermissions(late.offset, late.length,
                                                            late.permissions))
            else:
                fd.modify_types(ModifyTypes(late.offset, late.length, late.page_type))
        except OSError:
            pass
        finally:
            kernel.hooks = self

    def page_fault(self, addr: int, errcd: int) -> FaultResult | None:
        self.flush()
        return None


class SpuriousAex(Hostile):
    """Interrupts every enclave thread (AEX + ERESUME) at every fault and checkpoint."""

    def strike(self) -> None:
        secs = self.enc.fd.secs_slot
        assert secs is not None
        self.enc.machine.cpu.ipi(Epc.paddr(secs))

    def page_fault(self, addr: int, errcd: int) -> FaultResult | None:
        self.strike()
        return None


def attacks() -> list[Attack]:
    return [
        Attack("threads.withhold-ipi", FAMILY,
               "issues ETRACK but never the IPIs, while a second thread stays inside",
               "EACCEPT reports SGX_NOT_TRACKED while a thread that entered before the "
               "ETRACK is still inside: the restriction cannot be confirmed early",
               "two_threads", hooks(WithholdIpis)),
        Attack("threads.reorder-ioctls", FAMILY,
               "holds each EDMM request back, reports it done, runs it at the next fault",
               "the enclave's EACCEPT checks the EPCM as it is now, not as the OS says "
               "it will be", "restrict", hooks(ReorderIoctls)),
        Attack("threads.spurious-aex", FAMILY,
               "interrupts the enclave's threads at every fault and at will",
               "an AEX saves the context in the SSA and ERESUME restores it: interrupts "
               "are invisible to enclave code", "two_threads", at("written", SpuriousAex)),
    ]

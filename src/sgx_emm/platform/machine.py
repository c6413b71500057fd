"""One simulated SGX2 machine: CPU + EPC + one process's address space + the Linux
driver + the vDSO, all reporting to one `Trace`.

Loading an enclave, as the Intel SDK loader and the kernel selftests do::

    m = Machine(epc_pages=4096)
    fd = m.open_enclave()
    fd.create(SecsImage(base, size, ssa_frame_size=1, miscselect=MISC_EXINFO))
    fd.add_pages(offset, data, secinfo_flags(PROT_R | PROT_W, PT_REG))
    fd.add_pages(tcs_offset, TcsImage(ossa=..., nssa=2).to_bytes(), PT_TCS << 8)
    fd.init()
    m.mmap(base + offset, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd)

Then `m.vdso.inline(Run(tcs))` or `m.vdso.enter(EENTER, Run(tcs), program)`.
"""

from __future__ import annotations

import errno
import os
import threading

from sgx_emm.flags import PAGE_SHIFT
from sgx_emm.platform.cpu import Cpu
from sgx_emm.platform.epcm import Epc
from sgx_emm.platform.kernel import EnclaveFd, FaultOutcome, Kernel
from sgx_emm.platform.mmu import AddressSpace
from sgx_emm.platform.secinfo import PF_P, PF_U, PF_W
from sgx_emm.platform.vdso import Vdso
from sgx_emm.trace import Trace

DEFAULT_EPC_PAGES = 1 << 15   # 128 MiB


class Machine:
    """Wires the layers; every public piece is an attribute."""

    def __init__(self, epc_pages: int = DEFAULT_EPC_PAGES, *, sgx2: bool = True,
                 eaug_race_sigbus: bool = False, reclaim: bool = False,
                 trace: Trace | None = None) -> None:
        self.lock = threading.RLock()
        self.trace = trace if trace is not None else Trace()
        self.epc = Epc(epc_pages)
        self.mm = AddressSpace()
        self.cpu = Cpu(self.epc, self.mm, self.trace, self.lock, sgx2=sgx2)
        self.kernel = Kernel(self.cpu, self.epc, self.mm, self.trace, self.lock, sgx2=sgx2,
                             eaug_race_sigbus=eaug_race_sigbus, reclaim=reclaim)
        self.vdso = Vdso(self.cpu, self.kernel)
        # the machine built both halves itself, on one lock: the commit fast path,
        # which composes CPU and kernel steps, may run (thread.py)
        self.kernel.fast_path_capable = True

    # --- the process's view: open/mmap/mprotect/munmap ---
    def open_enclave(self) -> EnclaveFd:
        """open("/dev/sgx_enclave"). Returns: a new enclave fd."""
        return self.kernel.open_enclave()

    def mmap(self, addr: int, length: int, prot: int, flags: int, fd: EnclaveFd,
             offset: int = 0) -> int:
        return self.kernel.mmap(addr, length, prot, flags, fd, offset)

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        self.kernel.mprotect(addr, length, prot)

    def munmap(self, addr: int, length: int) -> None:
        self.kernel.munmap(addr, length)

    # --- host accesses to enclave memory (abort-page semantics) ---
    def host_read(self, addr: int, n: int) -> bytes:
        """Read from outside the enclave: mapped EPC pages read as 0xFF. The access
        faults like any user access (an unbacked page in an enclave VMA is EAUGed);
        an address nothing maps raises OSError(EFAULT)."""
        self._host_touch(addr, n, write=False)
        return b"\xff" * n

    def host_write(self, addr: int, data: bytes) -> None:
        """Write from outside the enclave: dropped (abort page), after the same faults."""
        self._host_touch(addr, len(data), write=True)

    def _host_touch(self, addr: int, n: int, *, write: bool) -> None:
        if addr < 0 or n < 0:
            raise ValueError("bad range")
        if not n:
            return
        first, last = addr >> PAGE_SHIFT, (addr + n - 1) >> PAGE_SHIFT
        for page in range(first, last + 1):
            at = max(addr, page << PAGE_SHIFT)
            for _ in range(4):
                pte = self.mm.pte(page)
                if pte and (not write or pte & PF_W):
                    break
                errcd = PF_U | (PF_W if write else 0) | (PF_P if pte else 0)
                result = self.kernel.fault(at, errcd)
                if result.outcome is not FaultOutcome.FIXED:
                    exc = OSError(errno.EFAULT, f"host access {at:#x}: {result.reason} "
                                                f"({os.strerror(errno.EFAULT)})")
                    exc.reason = result.reason  # type: ignore[attr-defined]
                    raise exc
            else:  # pragma: no cover - the kernel keeps "fixing" without progress
                raise OSError(errno.EFAULT, f"host access {at:#x}")

"""Where a hostile OS may depart from Linux: the kernel's documented hook points.

An SGX enclave must not trust the OS, so the model lets an attack library make
the OS misbehave at the points a real kernel controls, without patching the
model's privates. Subclass `KernelHooks`, override what the attack changes (every
default is what Linux does), and install it::

    class RefuseEaug(KernelHooks):
        def eaug(self, encl, addr):
            return "the attacker refuses EAUG"

    machine.kernel.hooks = RefuseEaug()

Installing hooks turns the commit fast path off (each fault then takes the
general AEX -> kernel -> ERESUME walk, where every hook is consulted); setting
`machine.kernel.hooks = None` restores Linux.

The hook points, in the order a request meets them:

- `map_prot` - mmap and mprotect: the protection the kernel applies.
- `ioctl` - every enclave ioctl, after its checks and before its worker.
- `page_leaf` - each EMODPR / EMODT an EDMM ioctl issues.
- `etrack` - the ETRACK + IPIs after an EDMM ioctl's leaves.
- `page_fault` - every user #PF, before Linux's handling (spurious or
  withheld fixes).
- `eaug` - the one EAUG path (first-touch faults and the commit fast path).
- `eldu` - the page the reclaimer loads back (ELDU) after an eviction.

The driver also offers `EnclaveFd.evict(addr)` and `EnclaveFd.load(addr)` as
public seams for paging a page out and in at a time the attacker chooses.
"""

from __future__ import annotations

from typing import Protocol

from sgx_emm.platform.state import EvictedPage
from sgx_emm.platform.uapi import FaultResult


class Encl(Protocol):
    """What a hook sees of the enclave the driver acts on (an `EnclaveFd`)."""

    base: int
    size: int
    initialized: bool

    def record(self, addr: int) -> tuple[int, int, int] | None: ...

    def evict(self, addr: int) -> bool: ...

    def load(self, addr: int) -> bool: ...


class KernelHooks:
    """Linux's behaviour at every hook point; override to misbehave."""

    def map_prot(self, syscall: str, addr: int, length: int, prot: int) -> int:
        """mmap / mprotect (`syscall` names which) after their checks: the
        protection the kernel applies to [addr, addr + length).

        Returns: the PROT_* bits to apply (default: `prot`, as asked)."""
        return prot

    def ioctl(self, encl: Encl, name: str, params: object) -> bool:
        """An enclave ioctl (`name` as "ADD_PAGES", "MODIFY_TYPES", ...) whose checks
        passed, before its worker runs.

        Returns: True to do the work; False to skip it and report success (the
        parameter struct's `count` says the whole range was done): a lying OS."""
        return True

    def page_leaf(self, encl: Encl, leaf: str, addr: int) -> bool:
        """One EMODPR or EMODT (`leaf`) an EDMM ioctl is about to issue for the page
        at `addr`.

        Returns: True to issue it; False to skip it while the ioctl carries on as
        if it succeeded."""
        return True

    def etrack(self, encl: Encl) -> bool:
        """The ETRACK and IPIs that complete an EDMM ioctl's changes.

        Returns: True to track; False to skip (the enclave's EACCEPT then reports
        SGX_NOT_TRACKED)."""
        return True

    def page_fault(self, addr: int, errcd: int) -> FaultResult | None:
        """A user-mode #PF at `addr`, before Linux handles it.

        Returns: None to handle it as Linux does; a `FaultResult` to answer
        instead: FIXED without fixing anything (the fault comes back: a livelock
        the platform bounds), REPORT or SIGBUS (with a reason) to withhold a fix
        Linux would make, so the enclave sees an exception it did not earn."""
        return None

    def eaug(self, encl: Encl, addr: int) -> str | None:
        """Before the EAUG of the page at `addr` (every path that EAUGs comes here).

        Returns: None to EAUG; a reason to refuse (the fault then ends in SIGBUS
        with that reason)."""
        return None

    def eldu(self, encl: Encl, addr: int, page: EvictedPage) -> EvictedPage:
        """The evicted page the kernel is about to load back with ELDU.

        Returns: the page to load (default: `page`; an attack may hand back an
        older copy it kept)."""
        return page

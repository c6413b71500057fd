"""The SGX2 CPU: ENCLS and ENCLU leaves and enclave-mode accesses, put together.

The leaves live by concern: encls.py (what the kernel executes: ECREATE ... ETRACK),
sealing.py (EPC paging: EPA, EBLOCK, EWB, ELDU, sealed with a MAC and versions),
enclu.py (what enclave code executes: EACCEPT, EACCEPTCOPY, EMODPE),
entry.py (EENTER, ERESUME, EEXIT, AEX), access.py (reads, writes, fetches), on
the shared operand checks of processor.py and the state records of state.py.
`Cpu` is all of them on one EPC and one address space.

Model choices (docs/platform-model.md): ENCLS #PF error codes are P|SGX (0x8001);
a leaf's own EPCM #PF is P|U|SGX plus W for write operands (0x8005 / 0x8007);
fetches outside ELRANGE are #GP; the per-TCS CSSA lives in the CPU's `TcsControl`
once the TCS was first entered.

Locking: every leaf and access runs under the machine lock and releases it
before raising, so fault handling never runs with the lock held.
"""

from __future__ import annotations

from sgx_emm.platform.access import MemoryAccess
from sgx_emm.platform.enclu import EncluLeaves, eaccept_not_present
from sgx_emm.platform.entry import EntryLeaves
from sgx_emm.platform.processor import FETCH, NOT_PRESENT, READ, RIP_INTERRUPTED, WRITE, Rip
from sgx_emm.platform.sealing import SealingLeaves
from sgx_emm.platform.state import EnclaveControl, EntryState, EvictedPage, TcsControl


class Cpu(SealingLeaves, EncluLeaves, EntryLeaves, MemoryAccess):
    """ENCLS/ENCLU leaves over one EPC and one address space."""


__all__ = ["FETCH", "NOT_PRESENT", "READ", "RIP_INTERRUPTED", "WRITE", "Cpu",
           "EnclaveControl", "EntryState", "EvictedPage", "Rip", "TcsControl",
           "eaccept_not_present"]

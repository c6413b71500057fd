"""The hostile OS, first class: a library of attacks on the enclave's memory flows.

One module per family of attacker: `untrusted` (the runtime serving the ocalls),
`driver` (the kernel's SGX driver and fault handler), `pagetables` (mappings
behind the enclave's back), `paging` (EPC eviction and reload), `threads`
(scheduling and interrupts) and `channel` (what an OS learns by watching page
faults). Every attack says what SGX and the manager guarantee against it, and
switches on through a supported seam (kernel hooks, the swappable untrusted
runtime, syscalls and ENCLS leaves any kernel may issue), never by patching the
model. `run_all()` runs them against the bundled victims (victims.py); a row
judged SILENT is a bug.
"""

from __future__ import annotations

from sgx_emm.hostile.base import Attack, Corrupted, Marks, Outcome, Result, Switch, judge
from sgx_emm.hostile.registry import ATTACKS, attack
from sgx_emm.hostile.suite import counts, run_all, run_attack, table_json

__all__ = ["ATTACKS", "Attack", "Corrupted", "Marks", "Outcome", "Result", "Switch",
           "attack", "counts", "judge", "run_all", "run_attack", "table_json"]

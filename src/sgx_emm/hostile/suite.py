"""Run the attack library against the bundled victims and tabulate the outcomes.

`run_attack(attack)` builds a fresh small enclave (plus the options the attack
asks for), switches the attack on, runs its victim and judges the result
(base.py). `run_all()` does it for every attack; `table_text` / `table_json`
print the table `sgx-emm attacks` shows.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from sgx_emm.enclave import Enclave
from sgx_emm.hostile.base import Attack, Marks, Outcome, Result, judge
from sgx_emm.hostile.registry import ATTACKS
from sgx_emm.hostile.victims import VICTIMS

#: the enclave every attack starts from (attacks may add options)
ENCLAVE_DEFAULTS: dict[str, Any] = {"size": 1 << 30, "epc_pages": 4096, "threads": 3}


def run_attack(attack: Attack) -> Result:
    """Run one attack against a fresh enclave running its victim."""
    options = dict(ENCLAVE_DEFAULTS)
    options.update(attack.enclave)
    enc = Enclave.create(**options)
    marks = Marks()
    victim = VICTIMS[attack.victim]

    def run() -> None:
        with enc.enter() as t:
            victim(enc, t, marks)

    switch = attack.install(enc, marks)
    return judge(attack, run, enc, switch)


def all_attacks() -> list[Attack]:
    """Every attack of the library, family by family."""
    return list(ATTACKS.values())


def run_all(attacks: Iterable[Attack] | None = None) -> list[Result]:
    return [run_attack(a) for a in (all_attacks() if attacks is None else attacks)]


def counts(results: Iterable[Result]) -> dict[str, int]:
    """How many rows per outcome, in the table's order."""
    c = Counter(r.outcome for r in results)
    return {o.value: c.get(o, 0) for o in Outcome}


def table_json(results: list[Result]) -> str:
    return json.dumps({"attacks": [r.as_json() for r in results],
                       "counts": counts(results)}, indent=1)


def table_rows(results: list[Result]) -> list[tuple[str, str, str, str]]:
    """(attack, guarantee, outcome, detail) per result, for a text table."""
    return [(r.attack, r.guarantee, r.outcome.value, r.detail) for r in results]

"""Every attack of the library by name, family by family (the table's order)."""

from __future__ import annotations

from sgx_emm.hostile import channel, driver, pagetables, paging, threads, untrusted
from sgx_emm.hostile.base import Attack

ATTACKS: dict[str, Attack] = {
    a.name: a
    for family in (untrusted, driver, pagetables, threads, paging, channel)
    for a in family.attacks()
}


def attack(name: str) -> Attack:
    """The attack called `name` (KeyError with the known names otherwise)."""
    try:
        return ATTACKS[name]
    except KeyError:
        raise KeyError(f"no attack {name!r}; known: {', '.join(sorted(ATTACKS))}") from None

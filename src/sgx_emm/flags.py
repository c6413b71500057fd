"""Constants of the EMM API, with the C integer values of `sgx_mm.h`.

Names are the C names without the `SGX_EMA_` / `SGX_MM_` prefix. They are
`IntFlag` members, so they OR and compare like the C integers; `str()` of a
member or a combination reads like the C expression (`str(COMMIT_NOW | FIXED)`
is ``'COMMIT_NOW|FIXED'``), while `repr()` also shows the value and `int()`,
`%d`, `:#x` and JSON give the number. The `*_text` functions decode a raw
integer for people: `secinfo_text(0x20b)` is ``'REG|RW|PENDING (0x20b)'``.
"""

from __future__ import annotations

import enum


class _CFlag(enum.IntFlag):
    """An IntFlag whose `str()` is the C expression: member names joined by `|`.

    Bits no member names are appended in hex, so nothing is hidden.
    """

    def __str__(self) -> str:
        value = int(self)
        known = 0
        for member in type(self):
            known |= int(member)
        names = type(self)(value & known).name if value & known else None
        rest = value & ~known
        if names is None:
            zero = type(self)._value2member_map_.get(0)
            if not rest and zero is not None and zero.name is not None:
                return zero.name
            return f"{value:#x}"
        return f"{names}|{rest:#x}" if rest else names



PAGE_SIZE = 0x1000
PAGE_SHIFT = 12


class AllocFlags(_CFlag):
    """Low byte of an alloc request: commit mode, order hint, placement."""

    RESERVE = 0x01
    COMMIT_NOW = 0x02
    COMMIT_ON_DEMAND = 0x04
    GROWSDOWN = 0x10
    GROWSUP = 0x20
    FIXED = 0x40
    SYSTEM = 0x80


class PageType(_CFlag):
    """SGX page type shifted into bits 15:8, as the EMM API carries it."""

    PAGE_TYPE_TCS = 0x100
    PAGE_TYPE_REG = 0x200
    PAGE_TYPE_TRIM = 0x400
    PAGE_TYPE_SS_FIRST = 0x500
    PAGE_TYPE_SS_REST = 0x600


class Prot(_CFlag):
    """Page permissions (the SECINFO R/W/X bits)."""

    PROT_NONE = 0x0
    PROT_READ = 0x1
    PROT_WRITE = 0x2
    PROT_EXEC = 0x4
    PROT_READ_WRITE = 0x3
    PROT_READ_EXEC = 0x5
    PROT_READ_WRITE_EXEC = 0x7


class SecinfoState(_CFlag):
    """SECINFO state bits passed to EACCEPT."""

    PENDING = 0x08
    MODIFIED = 0x10
    PR = 0x20


RESERVE = AllocFlags.RESERVE
COMMIT_NOW = AllocFlags.COMMIT_NOW
COMMIT_ON_DEMAND = AllocFlags.COMMIT_ON_DEMAND
GROWSDOWN = AllocFlags.GROWSDOWN
GROWSUP = AllocFlags.GROWSUP
FIXED = AllocFlags.FIXED
SYSTEM = AllocFlags.SYSTEM

PAGE_TYPE_TCS = PageType.PAGE_TYPE_TCS
PAGE_TYPE_REG = PageType.PAGE_TYPE_REG
PAGE_TYPE_TRIM = PageType.PAGE_TYPE_TRIM
PAGE_TYPE_SS_FIRST = PageType.PAGE_TYPE_SS_FIRST
PAGE_TYPE_SS_REST = PageType.PAGE_TYPE_SS_REST

PROT_NONE = Prot.PROT_NONE
PROT_READ = Prot.PROT_READ
PROT_WRITE = Prot.PROT_WRITE
PROT_EXEC = Prot.PROT_EXEC
PROT_READ_WRITE = Prot.PROT_READ_WRITE
PROT_READ_EXEC = Prot.PROT_READ_EXEC
PROT_READ_WRITE_EXEC = Prot.PROT_READ_WRITE_EXEC

PENDING = SecinfoState.PENDING
MODIFIED = SecinfoState.MODIFIED
PR = SecinfoState.PR

ALLOC_FLAGS_MASK = 0xFF
PAGE_TYPE_MASK = 0xFF00
ALIGNMENT_MASK = 0xFF000000
ALIGNMENT_SHIFT = 24
PROT_MASK = 0x7

EXCEPTION_CONTINUE_SEARCH = 0
EXCEPTION_CONTINUE_EXECUTION = -1


def aligned(n: int) -> int:
    """The ALIGNED(n) flag: alignment 2**n, carried in bits 31:24 of the flags."""
    return (n & 0xFF) << ALIGNMENT_SHIFT


_PROT_LETTERS = (("R", 0x1), ("W", 0x2), ("X", 0x4))
#: SGX page types (SECINFO.FLAGS bits 15:8) by their short names.
PAGE_TYPE_SHORT = {0x1: "TCS", 0x2: "REG", 0x3: "VA", 0x4: "TRIM", 0x5: "SS_FIRST",
                   0x6: "SS_REST"}
_STATE_BITS = (("PENDING", 0x08), ("MODIFIED", 0x10), ("PR", 0x20))


def prot_letters(prot: int) -> str:
    """`RW` for PROT_READ|PROT_WRITE, `NONE` for 0: the R/W/X bits of any flags word."""
    letters = "".join(c for c, bit in _PROT_LETTERS if prot & bit)
    return letters or "NONE"


def prot_text(prot: int) -> str:
    """A prot value for people: `RW (0x3)`."""
    return f"{prot_letters(prot)} ({prot:#x})"


def secinfo_text(flags: int) -> str:
    """SECINFO.FLAGS (or the manager's `prot | type << 8` words) for people.

    `secinfo_text(0x20b)` is ``'REG|RW|PENDING (0x20b)'``: page type, permissions,
    state bits, then any other bit in hex, then the raw value.
    """
    parts = []
    page_type = (flags >> 8) & 0xFF
    if page_type:
        parts.append(PAGE_TYPE_SHORT.get(page_type, f"type{page_type:#x}"))
    parts.append(prot_letters(flags))
    parts.extend(name for name, bit in _STATE_BITS if flags & bit)
    rest = flags & ~0xFF3F
    if rest:
        parts.append(f"{rest:#x}")
    return f"{'|'.join(parts)} ({flags:#x})"


def alloc_flags_text(flags: int) -> str:
    """An alloc flags word for people: ``'COMMIT_NOW|FIXED|ALIGNED(16) (0x10000042)'``.

    Decodes the commit mode and placement bits, the page type and the alignment.
    """
    value = int(flags)
    parts = [name for name, member in AllocFlags.__members__.items()
             if value & int(member)]
    page_type = value & PAGE_TYPE_MASK
    if page_type:
        parts.append("PAGE_TYPE_" + PAGE_TYPE_SHORT.get(page_type >> 8, f"{page_type:#x}"))
    align = (value & ALIGNMENT_MASK) >> ALIGNMENT_SHIFT
    if align:
        parts.append(f"ALIGNED({align})")
    rest = value & ~(ALLOC_FLAGS_MASK | PAGE_TYPE_MASK | ALIGNMENT_MASK)
    if rest:
        parts.append(f"{rest:#x}")
    return f"{'|'.join(parts) or '0'} ({value:#x})"


#: Every name a flag string (replay files, CLI) may use, mapped to its value.
FLAG_NAMES: dict[str, int] = {
    name: int(value)
    for name, value in {
        "RESERVE": RESERVE,
        "COMMIT_NOW": COMMIT_NOW,
        "COMMIT_ON_DEMAND": COMMIT_ON_DEMAND,
        "GROWSDOWN": GROWSDOWN,
        "GROWSUP": GROWSUP,
        "FIXED": FIXED,
        "SYSTEM": SYSTEM,
        "PAGE_TYPE_TCS": PAGE_TYPE_TCS,
        "PAGE_TYPE_REG": PAGE_TYPE_REG,
        "PAGE_TYPE_TRIM": PAGE_TYPE_TRIM,
        "PAGE_TYPE_SS_FIRST": PAGE_TYPE_SS_FIRST,
        "PAGE_TYPE_SS_REST": PAGE_TYPE_SS_REST,
        "PROT_NONE": PROT_NONE,
        "PROT_READ": PROT_READ,
        "PROT_WRITE": PROT_WRITE,
        "PROT_EXEC": PROT_EXEC,
        "PROT_READ_WRITE": PROT_READ_WRITE,
        "PROT_READ_EXEC": PROT_READ_EXEC,
        "PROT_READ_WRITE_EXEC": PROT_READ_WRITE_EXEC,
        "PENDING": PENDING,
        "MODIFIED": MODIFIED,
        "PR": PR,
    }.items()
}

__all__ = [
    "ALIGNMENT_MASK",
    "ALIGNMENT_SHIFT",
    "ALLOC_FLAGS_MASK",
    "COMMIT_NOW",
    "COMMIT_ON_DEMAND",
    "EXCEPTION_CONTINUE_EXECUTION",
    "EXCEPTION_CONTINUE_SEARCH",
    "FIXED",
    "FLAG_NAMES",
    "GROWSDOWN",
    "GROWSUP",
    "MODIFIED",
    "PAGE_SIZE",
    "PAGE_TYPE_MASK",
    "PAGE_TYPE_REG",
    "PAGE_TYPE_SS_FIRST",
    "PAGE_TYPE_SS_REST",
    "PAGE_TYPE_TCS",
    "PAGE_TYPE_TRIM",
    "PENDING",
    "PR",
    "PROT_EXEC",
    "PROT_MASK",
    "PROT_NONE",
    "PROT_READ",
    "PROT_READ_EXEC",
    "PROT_READ_WRITE",
    "PROT_READ_WRITE_EXEC",
    "PROT_WRITE",
    "RESERVE",
    "SYSTEM",
    "AllocFlags",
    "PageType",
    "Prot",
    "SecinfoState",
    "aligned",
    "alloc_flags_text",
    "prot_letters",
    "prot_text",
    "secinfo_text",
]

"""Constants of the EMM API, with the C integer values of `sgx_mm.h`.

Names follow spec/python-api.md: the C names without the `SGX_EMA_` / `SGX_MM_`
prefix. They are `IntFlag` members so that they OR and compare like the C
integers, and so that `str()` of a combination reads like the C expression.
"""

from __future__ import annotations

import enum

PAGE_SIZE = 0x1000
PAGE_SHIFT = 12


class AllocFlags(enum.IntFlag):
    """Low byte of an alloc request: commit mode, order hint, placement."""

    RESERVE = 0x01
    COMMIT_NOW = 0x02
    COMMIT_ON_DEMAND = 0x04
    GROWSDOWN = 0x10
    GROWSUP = 0x20
    FIXED = 0x40
    SYSTEM = 0x80


class PageType(enum.IntFlag):
    """SGX page type shifted into bits 15:8, as the EMM API carries it."""

    PAGE_TYPE_TCS = 0x100
    PAGE_TYPE_REG = 0x200
    PAGE_TYPE_TRIM = 0x400
    PAGE_TYPE_SS_FIRST = 0x500
    PAGE_TYPE_SS_REST = 0x600


class Prot(enum.IntFlag):
    """Page permissions (the SECINFO R/W/X bits)."""

    PROT_NONE = 0x0
    PROT_READ = 0x1
    PROT_WRITE = 0x2
    PROT_EXEC = 0x4
    PROT_READ_WRITE = 0x3
    PROT_READ_EXEC = 0x5
    PROT_READ_WRITE_EXEC = 0x7


class SecinfoState(enum.IntFlag):
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
]

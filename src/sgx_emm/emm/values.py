"""The flag values the manager computes with, as plain ints.

`sgx_emm.flags` exposes `IntFlag` members for users (they OR and print like the
C expressions); inside the manager's hot paths IntFlag arithmetic is several
times slower than int arithmetic and leaks enum reprs into results, so the
manager's modules take their values from here instead.
"""

from __future__ import annotations

from sgx_emm import flags as _f

RESERVE = int(_f.RESERVE)
COMMIT_NOW = int(_f.COMMIT_NOW)
COMMIT_ON_DEMAND = int(_f.COMMIT_ON_DEMAND)
GROWSDOWN = int(_f.GROWSDOWN)
FIXED = int(_f.FIXED)
SYSTEM = int(_f.SYSTEM)

PAGE_TYPE_REG = int(_f.PAGE_TYPE_REG)
PAGE_TYPE_TCS = int(_f.PAGE_TYPE_TCS)
PAGE_TYPE_TRIM = int(_f.PAGE_TYPE_TRIM)
PAGE_TYPE_SS_FIRST = int(_f.PAGE_TYPE_SS_FIRST)
PAGE_TYPE_SS_REST = int(_f.PAGE_TYPE_SS_REST)

PROT_NONE = int(_f.PROT_NONE)
PROT_READ = int(_f.PROT_READ)
PROT_WRITE = int(_f.PROT_WRITE)
PROT_EXEC = int(_f.PROT_EXEC)
PROT_READ_WRITE = int(_f.PROT_READ_WRITE)

PENDING = int(_f.PENDING)
MODIFIED = int(_f.MODIFIED)
PR = int(_f.PR)

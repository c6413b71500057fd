"""Why an enclave crashed, in one sentence, from what the simulated platform knows.

An `EnclaveCrashed` carries the exception as the enclave saw it (vector, error
code, address). Its `cause` is written here. When the CPU model says which
architectural check raised the fault (`reason`) or why the kernel did not fix it
(`os_reason`), those come first; otherwise the fault is decoded: the vector, the
page-fault error code bit by bit, the address relative to the enclave, and the
state of the page (its EPCM entry and its page-table entry), with the most
likely reason those give. Endless fault loops and runaway nesting get their own
sentences: the fault, what each handler returned, and why nothing changed.

Diagnosis only reads; it never raises (a broken probe just says less).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sgx_emm.flags import (
    EXCEPTION_CONTINUE_EXECUTION,
    EXCEPTION_CONTINUE_SEARCH,
    PAGE_SHIFT,
    PAGE_TYPE_SHORT,
)

VECTOR_NAMES = {0: "#DE", 1: "#DB", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM",
                13: "#GP", 14: "#PF", 16: "#MF", 17: "#AC", 19: "#XM", 21: "#CP"}
_PF = 14
_GP = 13
_UD = 6

PFEC_P, PFEC_W, PFEC_U, PFEC_RSVD, PFEC_I, PFEC_PK, PFEC_SS = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40
PFEC_SGX = 0x8000


class PlatformView(Protocol):
    """What diagnosis reads of an enclave (an `Enclave` is one)."""

    base: int
    size: int
    user_base: int
    user_end: int
    fd: Any
    machine: Any


def vector_name(vector: int) -> str:
    return VECTOR_NAMES.get(vector, f"vector {vector}")


def pfec_text(errcd: int) -> str:
    """The page-fault error code in words: `write to a present page, refused by the
    EPCM (PFEC 0x8007: P W U SGX)`."""
    access = ("instruction fetch" if errcd & PFEC_I else "shadow-stack access"
              if errcd & PFEC_SS else "write" if errcd & PFEC_W else "read")
    page = "a present page" if errcd & PFEC_P else "a page the page tables do not map"
    by = (", refused by the EPCM" if errcd & PFEC_SGX else
          ", refused by the page tables" if errcd & PFEC_P else "")
    bits = [name for name, bit in (("P", PFEC_P), ("W", PFEC_W), ("U", PFEC_U),
                                   ("RSVD", PFEC_RSVD), ("I", PFEC_I), ("PK", PFEC_PK),
                                   ("SS", PFEC_SS), ("SGX", PFEC_SGX)) if errcd & bit]
    return f"{access} of {page}{by} (PFEC {errcd:#x}: {' '.join(bits) or 'none'})"


def fault_text(vector: int, errcd: int) -> str:
    """`#PF (write of a present page, ...)`, `#GP(0)`, `#UD`."""
    if vector == _PF:
        return f"#PF ({pfec_text(errcd)})"
    if vector == _GP:
        return f"#GP({errcd:#x})" if errcd else "#GP(0)"
    return vector_name(vector)


def where(view: PlatformView, addr: int) -> str:
    """An address with its place: `0x7f0800021000 (u+0x21000)`, `(b+0x5000)` for the
    image and runtime part of the enclave, `(outside the enclave)` otherwise."""
    if view.user_base <= addr < view.user_end:
        return f"{addr:#x} (u+{addr - view.user_base:#x})"
    if view.base <= addr < view.base + view.size:
        return f"{addr:#x} (b+{addr - view.base:#x})"
    return f"{addr:#x} (outside the enclave)"


def _letters(bits: int) -> str:
    return "".join(c if bits & b else "-" for c, b in (("R", 1), ("W", 2), ("X", 4)))


def page_facts(view: PlatformView, addr: int) -> dict[str, Any]:
    """What the platform holds for the page at `addr`: EPCM entry (None: no EPC page)
    and the PTE's permission bits (0: not mapped). Empty when it cannot be read."""
    facts: dict[str, Any] = {}
    try:
        record = view.fd.record(addr)
        if record is None:
            facts["epcm"] = None
        else:
            facts["epcm"] = dict(view.machine.epc.describe(record[0]))
            facts["kernel_type"] = record[1]
        facts["pte"] = int(view.machine.mm.pte(addr >> PAGE_SHIFT)) & 0x7
    except Exception:  # a platform that does not look like ours: say less
        return {}
    return facts


def page_state(facts: dict[str, Any]) -> str:
    """`EPCM REG R-- PENDING, PTE R--`, or what is missing."""
    if not facts:
        return "page state unknown"
    epcm = facts.get("epcm")
    if epcm is None:
        epcm_text = "no EPC page"
    elif not epcm.get("valid", True):
        epcm_text = "EPCM entry not valid"
    else:
        bits = (1 if epcm.get("r") else 0) | (2 if epcm.get("w") else 0) | (
            4 if epcm.get("x") else 0)
        state = [s.upper() for s in ("pending", "modified", "pr", "blocked") if epcm.get(s)]
        epcm_text = " ".join([f"EPCM {PAGE_TYPE_SHORT.get(int(epcm.get('pt', 0)), 'SECS')}",
                              _letters(bits), *state])
    pte = facts.get("pte", 0)
    return f"{epcm_text}, {'PTE ' + _letters(pte) if pte else 'no PTE'}"


def likely_reason(vector: int, errcd: int, facts: dict[str, Any]) -> str:
    """The most likely reason the page's state gives for a #PF (empty if none)."""
    if vector != _PF or not facts:
        return ""
    epcm = facts.get("epcm")
    pte = facts.get("pte", 0)
    write, fetch = bool(errcd & PFEC_W), bool(errcd & PFEC_I)
    if errcd & PFEC_SGX and epcm is not None:
        if epcm.get("pending"):
            return "the page is PENDING: EAUGed by the OS but never EACCEPTed"
        if epcm.get("modified"):
            return "the page is MODIFIED: a type change was never EACCEPTed"
        if epcm.get("pr"):
            return "a permission restriction is pending (PR): never EACCEPTed"
        pt = int(epcm.get("pt", 0))
        if pt != 2:
            return f"the page is a {PAGE_TYPE_SHORT.get(pt, 'SECS')} page, not REG"
        if write and not epcm.get("w"):
            return "the EPCM does not allow writes to the page"
        if fetch and not epcm.get("x"):
            return "the EPCM does not allow execution of the page"
        if not epcm.get("r"):
            return "the EPCM does not allow reads of the page"
        return ""
    if not errcd & PFEC_P:
        if epcm is None:
            return "no EPC page backs it: the OS never EAUGed it, or removed it"
        return "the OS has not mapped the page"
    if write and not pte & 0x2:
        return "the page tables map the page read-only"
    if fetch and not pte & 0x4:
        return "the page tables map the page without execute"
    return ""


def fault_cause(view: PlatformView, vector: int, errcd: int, addr: int,
                reason: str = "", os_reason: str = "") -> str:
    """One sentence for a fault nobody handled."""
    head = f"{fault_text(vector, errcd)} at {where(view, addr)}"
    parts = [head]
    if reason:
        parts.append(reason)
    if os_reason:
        parts.append(f"the kernel: {os_reason}")
    facts = page_facts(view, addr) if vector == _PF or not reason else {}
    if not reason:
        guess = likely_reason(vector, errcd, facts)
        if guess:
            parts.append(guess)
    if facts:
        parts.append(f"page: {page_state(facts)}")
    return "; ".join(parts)


def result_name(result: object) -> str:
    if result == EXCEPTION_CONTINUE_EXECUTION:
        return "CONTINUE_EXECUTION"
    if result == EXCEPTION_CONTINUE_SEARCH:
        return "CONTINUE_SEARCH"
    return repr(result)


def outcome_text(outcome: Sequence[tuple[str, object]]) -> str:
    """`the manager's #PF handler returned CONTINUE_SEARCH, on_fault returned ...`."""
    if not outcome:
        return "no in-enclave handler ran"
    return ", ".join(f"{name} returned {result_name(r)}" for name, r in outcome)


#: How the platform's livelock note introduces the kernel's last answer.
_LAST_ANSWER = "last kernel answer: "


def livelock_cause(view: PlatformView, vector: int, errcd: int, addr: int, repeats: int,
                   outcome: Sequence[tuple[str, object]], reason: str = "",
                   os_reason: str = "") -> str:
    """An access that faulted the same way over and over: what ran, why it did not help."""
    facts = page_facts(view, addr) if vector == _PF else {}
    unchanged = likely_reason(vector, errcd, facts) or reason or "the fault's cause remained"
    text = (f"the same {fault_text(vector, errcd)} at {where(view, addr)} was delivered "
            f"{repeats} times without progress; {outcome_text(outcome)}; yet nothing "
            f"changed: {unchanged}")
    if os_reason:
        # the platform's own livelock note repeats what this sentence says; keep
        # only what the kernel last answered (e.g. why ELDU or EAUG refused)
        _, marker, last = os_reason.partition(_LAST_ANSWER)
        kernel = last if marker else ("" if "livelock" in os_reason else os_reason)
        if kernel:
            text += f"; the kernel: {kernel}"
    if facts:
        text += f"; page: {page_state(facts)}"
    return text


def nesting_cause(view: PlatformView,
                  chain: Sequence[tuple[int, int, int]], limit: int) -> str:
    """Handlers that faulted while handling a fault, `limit` levels deep."""
    first, last = chain[0], chain[-1]
    distinct = len(set(chain))
    text = (f"exception handling nested {limit} levels deep: while handling "
            f"{fault_text(first[0], first[2])} at {where(view, first[1])}, a handler "
            f"faulted again, and so on")
    if distinct == 1:
        text += " (the same fault every time: a handler touches the page it handles)"
    else:
        text += (f"; the innermost is {fault_text(last[0], last[2])} at "
                 f"{where(view, last[1])}")
    facts = page_facts(view, last[1]) if last[0] == _PF else {}
    guess = likely_reason(last[0], last[2], facts)
    if guess:
        text += f"; {guess}"
    return text


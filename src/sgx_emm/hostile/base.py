"""What an attack is, how it is switched on, and how its outcome is judged.

An `Attack` names one misbehaviour of the untrusted side (the kernel and its SGX
driver, the untrusted runtime that serves the manager's ocalls, the page tables,
the EPC pager, the scheduler), says what SGX and the manager guarantee against
it, and knows how to switch it on in a running enclave (`install` returns a
`Switch` whose `off()` restores honest behaviour). Attacks act only through the
platform's supported seams: the kernel's hook points, the untrusted runtime the
enclave's ocalls go to, and the syscalls and ENCLS leaves any kernel may issue.

`run_attack` builds a fresh enclave, switches the attack on, runs the attack's
victim workload (victims.py) inside it and judges what happened:

- DETECTED: the enclave noticed, through the hardware, and refused to go on:
  an `EmmError` (error), an `EnclaveAbort` (abort) or an `EnclaveCrashed`
  (crash), with its cause;
- NO_EFFECT: the victim finished, saw exactly its own data and the manager's
  books agree with the hardware;
- LEAKS: as NO_EFFECT, but the attacker learned something (the controlled
  channel: hardware cannot stop an OS from watching page-granular accesses);
- SILENT: the victim finished but read data it did not write, or the books
  disagree with the hardware, or something other than the documented errors
  escaped. Every SILENT row is a bug.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sgx_emm.errors import EmmError, EnclaveAbort, EnclaveCrashed
from sgx_emm.trace import PAGE_FAULT

if TYPE_CHECKING:
    from sgx_emm.enclave import Enclave, ThreadContext


class Outcome(enum.Enum):
    DETECTED = "detected"
    NO_EFFECT = "no effect"
    LEAKS = "leaks"
    SILENT = "SILENT"


class Corrupted(Exception):
    """A victim read something it did not write (raised by `Marks.expect`)."""


@dataclass
class Marks:
    """What a victim shares with the attack: named addresses and its own checks.

    A victim `publish`es the addresses an attack may aim at (the attacker learns
    them anyway: it served the victim's mmap) and says when it `reached` a
    checkpoint (where an attack may strike, as at an interrupt); `expect` is the
    victim checking its own data.
    """

    addresses: dict[str, int] = field(default_factory=dict)
    #: checkpoint name -> what the attacker does when the victim gets there
    actions: dict[str, list[Callable[[], None]]] = field(default_factory=dict)

    def publish(self, name: str, addr: int) -> int:
        self.addresses[name] = addr
        return addr

    def on(self, checkpoint: str, action: Callable[[], None]) -> None:
        """Run `action` when the victim reaches `checkpoint`: the OS may interrupt
        the enclave at any instruction; a checkpoint picks the instruction."""
        self.actions.setdefault(checkpoint, []).append(action)

    def reached(self, checkpoint: str) -> None:
        """The victim is at `checkpoint` (an interrupt point for the attacker)."""
        for action in self.actions.get(checkpoint, ()):
            action()

    def get(self, name: str) -> int | None:
        return self.addresses.get(name)

    @staticmethod
    def expect(ok: bool, what: str) -> None:
        if not ok:
            raise Corrupted(what)


class Switch:
    """An attack switched on in one enclave. `off()` restores honest behaviour;
    `leaked()` says what the attacker learned (None: nothing)."""

    def __init__(self, off: Callable[[], None] | None = None,
                 leaked: Callable[[], str | None] | None = None) -> None:
        self._off = off
        self._leaked = leaked

    def off(self) -> None:
        if self._off is not None:
            self._off()
            self._off = None

    def leaked(self) -> str | None:
        return self._leaked() if self._leaked is not None else None


#: A victim workload: runs inside `enc` on the entered thread `t`.
Victim = Callable[["Enclave", "ThreadContext", Marks], None]
#: Switches an attack on in `enc`; `marks` is shared with the victim.
Installer = Callable[["Enclave", Marks], Switch]


@dataclass(frozen=True)
class Attack:
    """One named misbehaviour of the untrusted side."""

    name: str
    family: str
    does: str            # what the attacker does, in one sentence
    guarantee: str       # what SGX and the manager guarantee against it
    victim: str          # the bundled victim workload it is run against
    install: Installer
    #: Enclave.create options the attack needs (paging on, a small EPC, ...)
    enclave: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Result:
    """One row of the attack table."""

    attack: str
    family: str
    guarantee: str
    outcome: Outcome
    detail: str
    books: str           # "agree" or the first differences `enc.check()` lists

    def as_json(self) -> dict[str, str]:
        return {"attack": self.attack, "family": self.family, "guarantee": self.guarantee,
                "outcome": self.outcome.value, "detail": self.detail, "books": self.books}


def _books(enc: Enclave) -> str:
    try:
        diffs = enc.check()
    except Exception as exc:  # the check itself must never be what fails
        return f"check failed: {type(exc).__name__}: {exc}"
    if not diffs:
        return "agree"
    more = f" (+{len(diffs) - 2} more)" if len(diffs) > 2 else ""
    return "; ".join(str(d) for d in diffs[:2]) + more


#: Where a crash cause quotes the kernel (sgx_emm.diagnosis).
_KERNEL_SAID = "; the kernel: "


def _first_line(text: str, limit: int = 160) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[:limit - 1] + "…"


def judge(attack: Attack, run: Callable[[], None], enc: Enclave, switch: Switch) -> Result:
    """Run the victim (`run`) with the attack on and classify what happened."""
    outcome: Outcome
    try:
        run()
    except EmmError as exc:
        outcome, detail = Outcome.DETECTED, f"error {exc.result_name}: {exc.reason}"
    except EnclaveAbort as exc:
        outcome, detail = Outcome.DETECTED, f"abort: {exc.cause or exc}"
    except EnclaveCrashed as exc:
        outcome, detail = Outcome.DETECTED, f"crash: {exc.cause or exc}"
    except Corrupted as exc:
        outcome, detail = Outcome.SILENT, f"the victim read data it did not write: {exc}"
    except Exception as exc:  # anything else escaping is a bug of the model
        outcome, detail = Outcome.SILENT, f"undocumented {type(exc).__name__}: {exc}"
    else:
        outcome, detail = Outcome.NO_EFFECT, "the victim finished with its own data"
    finally:
        switch.off()
    sigbus = enc.trace.by_category().get(PAGE_FAULT, {}).get("SIGBUS", 0)
    if outcome is Outcome.DETECTED and sigbus:
        # the kernel's own answer (why ELDU or EAUG refused) is what names the
        # attack; the fault loop around it is the same for every such row
        _, marker, answer = detail.partition(_KERNEL_SAID)
        head = (f"crash; the kernel: {answer.split('; page:')[0]}" if marker
                else detail.splitlines()[0])
        head = head if len(head) <= 120 else head[:119] + "…"
        detail = f"{head} (SIGBUS {sigbus}x)"
    books = _books(enc)
    if outcome is Outcome.NO_EFFECT:
        leaked = switch.leaked()
        if books != "agree":
            outcome, detail = Outcome.SILENT, f"the books disagree with the hardware: {books}"
        elif leaked:
            outcome, detail = Outcome.LEAKS, leaked
    return Result(attack.name, attack.family, attack.guarantee, outcome,
                  _first_line(detail), _first_line(books, 240))

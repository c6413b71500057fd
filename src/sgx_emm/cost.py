"""What the simulated events would cost on hardware, in CPU cycles.

The simulator counts events, not time. To show where time would go on a real
SGX2 machine, every event of the trace gets a cycle cost: enclave transitions,
each ENCLS/ENCLU leaf, the kernel's page-fault path, each ioctl and system call.
The defaults come from published measurements where there are any and are our
estimates elsewhere; docs/cost-model.md gives each figure with its source. A
TOML or JSON file overrides any of them, so the same replay can be costed for a
different machine.

Keys are `category:name` (`leaf:EAUG`, `syscall:mmap`), a bare `name` (any
category), or `category:*` (the fallback of a category). `call:*` is the
manager's own work per call, outside the events it causes.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Default cycles per event. Sources and the reasoning behind each figure are in
#: docs/cost-model.md; `~` there marks the ones that are our estimates.
DEFAULT_CYCLES: dict[str, int] = {
    # enclave transitions (an ecall round trip, EENTER + EEXIT, is 8k-12k cycles)
    "entry:EENTER": 5_000,
    "entry:EEXIT": 4_000,
    "entry:ERESUME": 4_000,
    "aex:#PF": 3_500,
    "aex:*": 3_500,
    # ENCLU leaves the enclave executes
    "leaf:EACCEPT": 4_000,
    "leaf:EACCEPTCOPY": 6_500,
    "leaf:EMODPE": 1_500,
    # ENCLS leaves the driver executes
    "leaf:EAUG": 6_000,
    "leaf:EMODPR": 3_000,
    "leaf:EMODT": 3_000,
    "leaf:EREMOVE": 3_000,
    "leaf:ETRACK": 5_000,       # includes the IPIs that flush other CPUs' TLBs
    "leaf:EWB": 15_000,
    "leaf:ELDU": 15_000,
    "leaf:ECREATE": 20_000,
    "leaf:EADD": 12_000,        # EADD plus the EEXTENDs that measure the page
    "leaf:EINIT": 80_000,
    "leaf:*": 3_000,
    # the kernel's #PF path (exception entry, VMA lookup, PTE update, return)
    "pf:*": 2_500,
    "pf:SIGBUS": 1_000,
    # ocall marshalling in the SDK, on top of its EEXIT and EENTER
    "ocall:*": 1_000,
    # system calls and the driver's ioctls (entry, checks, page walks); the
    # leaves they execute are costed on their own
    "syscall:mmap": 3_000,
    "syscall:mprotect": 2_500,
    "syscall:munmap": 3_000,
    "syscall:*": 1_500,
    "ioctl:*": 2_000,
    # in-enclave exception dispatch (SDK's two phases, the EMM's lookup)
    "handler:*": 1_500,
    # the manager's own bookkeeping per call
    "call:*": 500,
}

#: Clock used to turn cycles into microseconds.
DEFAULT_GHZ = 3.0


@dataclass(frozen=True, slots=True)
class CostModel:
    """Cycles per event and the clock rate; immutable, cheap to look up."""

    cycles: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_CYCLES))
    ghz: float = DEFAULT_GHZ

    def of(self, category: str, name: str) -> int:
        """Cycles of one event: exact key, bare name, category fallback, else 0."""
        table = self.cycles
        for key in (f"{category}:{name}", name, f"{category}:*"):
            got = table.get(key)
            if got is not None:
                return got
        return 0

    def micros(self, cycles: float) -> float:
        return cycles / (self.ghz * 1000.0)

    def of_counts(self, counts: Mapping[str, Mapping[str, int]]) -> int:
        """Cycles of a call's counts ({category: {name: n}}) without the call itself."""
        return sum(self.of(category, name) * n
                   for category, names in counts.items() for name, n in names.items())

    def call_cycles(self, counts: Mapping[str, Mapping[str, int]]) -> int:
        """Cycles of one call: its events plus the manager's own work."""
        return self.of("call", "*") + self.of_counts(counts)

    def with_overrides(self, overrides: Mapping[str, Any]) -> CostModel:
        """A copy with some figures replaced. Accepts {"ghz": x, "cycles": {...}}
        or a flat {key: cycles}; a bad value raises ValueError naming its key."""
        ghz = self.ghz
        table = dict(self.cycles)
        flat: dict[str, Any] = {}
        for key, value in overrides.items():
            if key == "ghz":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                    raise ValueError(f"ghz must be a positive number, not {value!r}")
                ghz = float(value)
            elif key == "cycles":
                if not isinstance(value, Mapping):
                    raise ValueError("cycles must be a table of event: cycles")
                flat.update(value)
            else:
                flat[key] = value
        for key, value in flat.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"cost of {key!r} must be a whole number of cycles >= 0, "
                                 f"not {value!r}")
            key = str(key)
            if ":" not in key:      # a bare name overrides it in every category
                for known in [k for k in table if k.split(":", 1)[-1] == key]:
                    table[known] = value
            table[key] = value
        return CostModel(table, ghz)

    @classmethod
    def from_file(cls, path: str | Path) -> CostModel:
        """The defaults overridden by a .toml or .json file."""
        p = Path(path)
        try:
            raw = p.read_bytes()
        except OSError as e:
            raise ValueError(f"cannot read cost model {p}: {e.strerror or e}") from None
        try:
            if p.suffix.lower() == ".toml":
                data: Any = tomllib.loads(raw.decode("utf-8"))
            else:
                data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot parse cost model {p}: {e}") from None
        if not isinstance(data, dict):
            raise ValueError(f"cost model {p} must be a table of event: cycles")
        return cls().with_overrides(data)


@dataclass(slots=True)
class CostSummary:
    """Cycles per call and per kind of event over a run."""

    model: CostModel
    per_call: list[tuple[int, str, int]] = field(default_factory=list)  # (line, op, cycles)
    per_kind: dict[str, int] = field(default_factory=dict)              # "leaf:EAUG" -> cycles
    counts: dict[str, int] = field(default_factory=dict)                # "leaf:EAUG" -> events

    @property
    def total(self) -> int:
        return sum(c for _, _, c in self.per_call)

    def add_call(self, line: int, op: str, counts: Mapping[str, Mapping[str, int]]) -> int:
        model = self.model
        cycles = model.call_cycles(counts)
        self.per_call.append((line, op, cycles))
        self._add_kind("call:" + op, model.of("call", "*"), 1)
        for category, names in counts.items():
            for name, n in names.items():
                self._add_kind(f"{category}:{name}", model.of(category, name) * n, n)
        return cycles

    def _add_kind(self, key: str, cycles: int, n: int) -> None:
        self.per_kind[key] = self.per_kind.get(key, 0) + cycles
        self.counts[key] = self.counts.get(key, 0) + n

    def kinds_by_cost(self) -> list[tuple[str, int, int]]:
        """(kind, events, cycles), most expensive first."""
        return sorted(((k, self.counts[k], c) for k, c in self.per_kind.items()),
                      key=lambda row: (-row[2], row[0]))

    def to_json(self) -> dict[str, Any]:
        m = self.model
        return {
            "ghz": m.ghz,
            "total_cycles": self.total,
            "total_us": round(m.micros(self.total), 3),
            "per_call": [{"line": line, "op": op, "cycles": c, "us": round(m.micros(c), 3)}
                         for line, op, c in self.per_call],
            "per_kind": [{"kind": k, "events": n, "cycles": c, "us": round(m.micros(c), 3)}
                         for k, n, c in self.kinds_by_cost()],
        }


def summarize(calls: Iterable[tuple[int, str, Mapping[str, Mapping[str, int]]]],
              model: CostModel | None = None) -> CostSummary:
    """Cost of (line, op, counts) rows, e.g. of a replay's results."""
    summary = CostSummary(model or CostModel())
    for line, op, counts in calls:
        summary.add_call(line, op, counts)
    return summary

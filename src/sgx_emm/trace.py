"""One event stream for everything the simulated machine does.

Every layer reports what it executes here: CPU leaves, ocalls, system calls and
ioctls, page faults by error code, AEXs and enclave entries. Counts (CLI totals,
benchmarks) and pictures (traces for teaching) are read from this one stream, so
they never disagree. Emitting is a counter bump unless somebody subscribed, which
keeps it cheap on the page-access path.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Event categories the layers use; names inside a category are free-form but
#: stable (leaf names in capitals, ocall / syscall / ioctl names as in C).
LEAF = "leaf"          # ENCLS/ENCLU leaf executed: EAUG, EACCEPT, EMODPR, ...
OCALL = "ocall"        # alloc_ocall, modify_ocall
SYSCALL = "syscall"    # mmap, mprotect, munmap
IOCTL = "ioctl"        # RESTRICT_PERMISSIONS, MODIFY_TYPES, REMOVE_PAGES, ...
PAGE_FAULT = "pf"      # name = error code as hex, e.g. "0x8007"
AEX = "aex"            # name = exception vector name, e.g. "#PF"
ENTRY = "entry"        # EENTER / ERESUME / EEXIT as seen by the vDSO
HANDLER = "handler"    # in-enclave exception dispatch outcomes

Listener = Callable[["Event"], None]


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened; `details` holds operands (addresses, results)."""

    category: str
    name: str
    details: dict[str, Any] = field(default_factory=dict)


class Trace:
    """Counts every event; forwards full events only to subscribers."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def emit(self, category: str, name: str, **details: Any) -> None:
        """Record one event. O(1); builds an Event only when someone listens."""
        key = (category, name)
        with self._lock:
            self.counts[key] += 1
        if self._listeners:
            event = Event(category, name, details)
            for listener in tuple(self._listeners):
                listener(event)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` for every later event; returns the unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def by_category(self) -> dict[str, dict[str, int]]:
        """Counts grouped as {category: {name: n}}, sorted for stable output."""
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            items = sorted(self.counts.items())
        for (category, name), n in items:
            out.setdefault(category, {})[name] = n
        return out

    def total(self, category: str, name: str | None = None) -> int:
        """Events of one category (or one name in it) so far."""
        with self._lock:
            if name is not None:
                return self.counts[(category, name)]
            return sum(n for (c, _), n in self.counts.items() if c == category)

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()

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
    """Counts every event; forwards full events only to subscribers.

    Each Python thread bumps its own counter dict, so `emit` takes no lock on the
    page-access path (the platform emits five or six events per committed page);
    readers add the per-thread dicts up. Complexity: `emit` O(1); reads
    O(threads x distinct event names).
    """

    def __init__(self) -> None:
        self._local = threading.local()
        # keys: (category, name), or a tuple of those counted together by bump_all
        self._per_thread: list[dict[Any, int]] = []
        self._listeners: list[Listener] = []
        #: True while somebody subscribed: events then need their details (`emit`).
        #: A plain attribute, kept by subscribe and its unsubscribe, because hot
        #: paths read it once per page
        self.listening = False
        self._lock = threading.Lock()

    def _counts(self) -> dict[Any, int]:
        """This thread's counter dict, made and registered on first use."""
        try:
            counts: dict[Any, int] = self._local.counts
        except AttributeError:
            counts = {}
            self._local.counts = counts
            with self._lock:
                self._per_thread.append(counts)
        return counts

    def emit(self, category: str, name: str, **details: Any) -> None:
        """Record one event. O(1); builds an Event only when someone listens."""
        try:
            counts = self._local.counts       # `_counts`, without its call once made
        except AttributeError:
            counts = self._counts()
        key = (category, name)
        counts[key] = counts.get(key, 0) + 1
        if self._listeners:
            event = Event(category, name, details)
            for listener in tuple(self._listeners):
                listener(event)

    def bump_all(self, keys: tuple[tuple[str, str], ...]) -> None:
        """Count several (category, name) events, in order, in one call, without
        details: for a hot path that checked `listening` was False (the platform's
        commit path counts six per page). Without listeners the batch is one counter
        entry, expanded when counts are read; a listener that subscribed meanwhile
        still gets each event, with no details."""
        counts = self._counts()
        if not self._listeners:
            counts[keys] = counts.get(keys, 0) + 1
            return
        for key in keys:
            self.emit(*key)

    def count_unheard(self, key: Any, n: int = 1) -> None:
        """Count `n` events that happened while nobody listened, in one call: `key` is
        a (category, name) or a `bump_all` batch. For a page loop that ran its
        leaves while `listening` was False and owes their counts, and (as `unheard`,
        n = 1) for one event of a per-call path (an ocall, an entry or exit, an
        ioctl, a system call) that skipped the details `emit` would take. No
        listener is told, not even one that subscribed since, because none heard
        them happen; every event after it is emitted."""
        if n > 0:
            try:
                counts = self._local.counts  # `_counts`, without its call once made
            except AttributeError:
                counts = self._counts()
            counts[key] = counts.get(key, 0) + n

    #: One unheard event of a per-call path: `count_unheard(key)`.
    unheard = count_unheard

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` for every later event; returns the unsubscribe function."""
        with self._lock:
            self._listeners.append(listener)
            self.listening = True

        def unsubscribe() -> None:
            with self._lock:
                self._listeners.remove(listener)
                self.listening = bool(self._listeners)
        return unsubscribe

    @property
    def counts(self) -> Counter[tuple[str, str]]:
        """A snapshot of all counts so far, keyed by (category, name)."""
        total: Counter[tuple[str, str]] = Counter()
        with self._lock:
            parts = [c.copy() for c in self._per_thread]
        for part in parts:
            for key, n in part.items():
                if not key or isinstance(key[0], tuple):     # a bump_all batch
                    for one in key:
                        total[one] += n
                else:
                    total[key] += n
        return total

    def by_category(self) -> dict[str, dict[str, int]]:
        """Counts grouped as {category: {name: n}}, sorted for stable output."""
        out: dict[str, dict[str, int]] = {}
        for (category, name), n in sorted(self.counts.items()):
            out.setdefault(category, {})[name] = n
        return out

    def total(self, category: str, name: str | None = None) -> int:
        """Events of one category (or one name in it) so far."""
        counts = self.counts
        if name is not None:
            return counts[(category, name)]
        return sum(n for (c, _), n in counts.items() if c == category)

    def reset(self) -> None:
        """Forget all counts (of every thread)."""
        with self._lock:
            for part in self._per_thread:
                part.clear()

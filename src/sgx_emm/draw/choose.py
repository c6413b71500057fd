"""Which calls of a recording a picture shows."""

from __future__ import annotations

from collections.abc import Sequence

from sgx_emm.draw.recording import CallRecord, Recording

#: Without a choice, files with at most this many calls are drawn whole.
DEFAULT_MAX_CALLS = 12


class NoSuchLine(ValueError):
    """A chosen line is not a call of the recording."""


def choose_calls(rec: Recording, lines: Sequence[int] = (),
                 limit: int = DEFAULT_MAX_CALLS) -> list[CallRecord]:
    """The calls on `lines`; without lines, every call of a short run, else its
    failing calls, else its first `limit` calls."""
    calls = rec.closed or rec.calls
    if lines:
        by_line = {c.line: c for c in calls}
        missing = [n for n in lines if n not in by_line]
        if missing:
            known = f"0..{calls[-1].line}" if calls else "none"
            raise NoSuchLine(f"line {missing[0]} is not a call of this run (calls: {known}; "
                             "blank lines have none)")
        return [by_line[n] for n in lines]
    if len(calls) <= limit:
        return list(calls)
    failing = [c for c in calls if c.failed]
    return failing[:limit] if failing else list(calls[:limit])

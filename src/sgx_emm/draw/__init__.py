"""Pictures of runs: Perfetto traces, sequence diagrams, region maps, a report.

Everything here is drawn from one `Recording` of the trace's event stream
(`record_replay` makes one from a replay; `Recording().attach(enclave)` from any
Python run). The JSON and Mermaid outputs need nothing beyond the standard
library; the SVG pictures need the `draw` extra (`pip install 'sgx-emm[draw]'`),
imported only when one is drawn.

Modules: `recording` (keeping the events, per call), `flow` (who called whom:
the model every picture reads), `perfetto` (trace-event JSON), `sequence` (SVG
sequence diagrams), `mermaid` (the same as Mermaid text), `mapsvg` (the region
map and EPC use as SVG), `report` (one self-contained HTML page), `svg` (the
drawing library, with a clear message when it is missing).
"""

from typing import Any

from sgx_emm.draw.perfetto import trace_events, write_trace
from sgx_emm.draw.recording import CallRecord, Recording, record_replay


def record(source: Any) -> Recording:
    """Start recording every event of a `Trace` (or of an enclave's trace, which
    also tells the enclave's threads and ranges); a context manager that detaches.
    `write_trace(recording, "run.json")` then writes it for ui.perfetto.dev."""
    return Recording().attach(source)


__all__ = ["CallRecord", "Recording", "record", "record_replay", "trace_events", "write_trace"]

"""Replay: run a recorded sequence of EMM calls on a fresh simulated enclave.

A replay file is JSON Lines, one call per line (docs/cli.md is the user's guide).
Each line is parsed on its own (a bad line is reported with its 0-based number and,
unless `strict`, does not stop the run); what each call caused is read from the
enclave's trace.

Our extensions of the format: `"handler": "commit" | "skip"` on alloc lines,
`b+OFF` addresses (relative to the enclave base), `ALIGNED(n)` in alloc flags,
`"expect"` (the result the line should give), `"errcd"` on fault lines, and
`"note"` (text shown with the line). Packages above the manager add ops with
`register_op`.

Modules: `parse` (lines, numbers, flags, addresses), `ops` (the op registry and
the built-in ops), `runner` (the Replayer and `run`), `results` (what a replay
produced), `interfaces` (what the runner needs from an enclave).
"""

from sgx_emm.replay.interfaces import EnclaveLike, EnclaveThread, TraceLike
from sgx_emm.replay.ops import (
    HANDLER_KINDS,
    HANDLER_RESULTS,
    OPS,
    PF_PRESENT,
    PF_SGX,
    PF_WRITE,
    OpContext,
    OpRunner,
    handler_for,
    register_op,
)
from sgx_emm.replay.parse import (
    COMMON_KEYS,
    MAX_U64,
    NAMESPACES,
    Address,
    Call,
    LineError,
    parse_address,
    parse_call,
    parse_data,
    parse_flags,
    parse_line,
    parse_number,
)
from sgx_emm.replay.results import (
    CallResult,
    RegionInfo,
    Report,
    committed_per_cell,
    committed_runs,
    snapshot_layout,
)
from sgx_emm.replay.runner import (
    EXAMPLE_NAME,
    Replayer,
    example_lines,
    example_text,
    read_lines,
    run,
)

__all__ = [
    "COMMON_KEYS", "EXAMPLE_NAME", "HANDLER_KINDS", "HANDLER_RESULTS", "MAX_U64",
    "NAMESPACES", "OPS", "PF_PRESENT", "PF_SGX", "PF_WRITE", "Address", "Call",
    "CallResult", "EnclaveLike", "EnclaveThread", "LineError", "OpContext", "OpRunner",
    "RegionInfo", "Replayer", "Report", "TraceLike", "committed_per_cell", "committed_runs",
    "example_lines",
    "example_text", "handler_for", "parse_address", "parse_call", "parse_data",
    "parse_flags", "parse_line", "parse_number", "read_lines", "register_op", "run",
    "snapshot_layout",
]

# the services' ops (malloc, mmap, thread_create, load_code, ...) are always available
import sgx_emm.services.replay_ops  # noqa: E402,F401,I001  (registers its ops)
import sgx_emm.hostile.replay_ops  # noqa: E402,F401,I001  (registers the attack op)

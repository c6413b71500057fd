"""The components an SGX runtime builds on the manager: heap, stacks, mmap, threads,
code loading, and the SDK's enclave configuration.

They are trusted-runtime code: each runs inside the enclave, on the enclave
thread of the call (inside `with enc.enter():`), through the manager's API, so
every flow shows in the trace. Reach them from the enclave: `enc.heap`,
`enc.mman`, `enc.threads`, `enc.loader`, `enc.add_thread()` /
`enc.remove_thread(tcs)`, `t.stack`, and `Enclave.create(config=...)`.

Modules: `config` (EnclaveConfig, config.xml, growth policies), `heap`, `stack`,
`mman`, `threads` (dynamic TCS creation and the create/join pool), `loader`,
`entry` (where a service call runs), `replay_ops` (their replay ops).
"""

from sgx_emm.services.config import (
    TCS_POLICY_BOUND,
    TCS_POLICY_UNBOUND,
    ConfigError,
    EnclaveConfig,
    GrowthPolicy,
    load_config,
)
from sgx_emm.services.entry import NotInsideEnclave
from sgx_emm.services.heap import Heap, HeapStats
from sgx_emm.services.loader import LoadedCode, Loader
from sgx_emm.services.mman import Mapping, Mman
from sgx_emm.services.stack import StackView
from sgx_emm.services.threads import ThreadContexts, ThreadHandle, ThreadMemory, Threads

__all__ = [
    "TCS_POLICY_BOUND", "TCS_POLICY_UNBOUND", "ConfigError", "EnclaveConfig", "GrowthPolicy",
    "Heap", "HeapStats", "LoadedCode", "Loader", "Mapping", "Mman", "NotInsideEnclave",
    "StackView", "ThreadContexts", "ThreadHandle", "ThreadMemory", "Threads", "load_config",
]

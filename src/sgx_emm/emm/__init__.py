"""The Enclave Memory Manager: portable, trusted, and blind to what it runs on.

It talks only to the two interfaces of `sgx_emm.emm.rt` (runtime abstraction and
primitives), as the C reference is ported between SDKs; it never imports
`sgx_emm.platform` or `sgx_emm.runtime`.
"""

from sgx_emm.emm.manager import EnclaveMemoryManager
from sgx_emm.emm.regions import CommittedView, Region

__all__ = ["CommittedView", "EnclaveMemoryManager", "Region"]

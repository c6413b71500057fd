"""sgx-emm: the Intel SGX Enclave Memory Manager on a simulated SGX2 platform."""

from __future__ import annotations

from sgx_emm.errors import EmmError, EnclaveAbort, EnclaveCrashed
from sgx_emm.flags import PAGE_SIZE

__all__ = ["PAGE_SIZE", "EmmError", "EnclaveAbort", "EnclaveCrashed"]

try:  # the enclave wiring lands after the platform and the manager
    from sgx_emm.enclave import Enclave  # noqa: F401

    __all__.append("Enclave")
except ImportError:  # pragma: no cover - only while the layers are being built
    pass

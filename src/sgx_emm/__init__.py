"""sgx-emm: the Intel SGX Enclave Memory Manager on a simulated SGX2 platform."""

from __future__ import annotations

from sgx_emm.enclave import Enclave
from sgx_emm.errors import EmmError, EnclaveAbort, EnclaveCrashed
from sgx_emm.flags import PAGE_SIZE

__all__ = ["PAGE_SIZE", "EmmError", "Enclave", "EnclaveAbort", "EnclaveCrashed"]

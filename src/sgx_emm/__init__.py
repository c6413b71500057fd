"""sgx-emm: the Intel SGX Enclave Memory Manager on a simulated SGX2 platform."""

from __future__ import annotations

from importlib import metadata as _metadata

from sgx_emm.enclave import Enclave
from sgx_emm.errors import EmmError, EnclaveAbort, EnclaveCrashed
from sgx_emm.flags import PAGE_SIZE

try:
    __version__: str = _metadata.version("sgx-emm")
except _metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["PAGE_SIZE", "EmmError", "Enclave", "EnclaveAbort", "EnclaveCrashed",
           "__version__"]

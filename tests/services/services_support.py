"""Small simulated enclaves for the services' tests (creation about 25 ms each)."""

from __future__ import annotations

from typing import Any

from sgx_emm import Enclave


def small(**options: Any) -> Enclave:
    """A 1 GiB ELRANGE with 2048 EPC pages and two threads, unless told otherwise."""
    kw: dict[str, Any] = {"size": 1 << 30, "epc_pages": 2048}
    if "config" not in options:
        kw["threads"] = 2
    kw.update(options)
    return Enclave.create(**kw)

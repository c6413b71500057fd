"""The services' tests run on small simulated enclaves."""

from __future__ import annotations

import pytest
from services_support import small

from sgx_emm import Enclave


@pytest.fixture
def enc() -> Enclave:
    return small()

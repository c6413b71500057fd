"""Fixtures the platform tests share: a fresh small enclave (`s`) and a thread
inside it (`t`), so every module builds them the same way."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from platform_support import Small, build_small

from sgx_emm.platform import EnclaveThread, Run


@pytest.fixture
def s() -> Small:
    return build_small()


@pytest.fixture
def t(s: Small) -> Iterator[EnclaveThread]:
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as thread:
        yield thread

"""What the services need from the enclave they run in.

The services sit above `sgx_emm.enclave` (which builds them on first use), so
they name the enclave and its entered threads through these protocols instead
of importing it: `sgx_emm.Enclave` and its `ThreadContext` satisfy them.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

from sgx_emm.guard import GuardedManager
from sgx_emm.runtime.layout import ImageLayout
from sgx_emm.services.config import EnclaveConfig


class Entered(Protocol):
    """An enclave thread inside an entry (`with enc.enter() as t`)."""

    @property
    def tcs(self) -> int: ...

    @property
    def enclave(self) -> Host: ...

    def read(self, addr: int, n: int) -> bytes: ...

    def write(self, addr: int, data: bytes) -> None: ...

    def fetch(self, addr: int, n: int) -> bytes: ...


class Host(Protocol):
    """The loaded enclave: its manager, image layout, configuration and TCS pool."""

    @property
    def emm(self) -> GuardedManager: ...

    @property
    def layout(self) -> ImageLayout: ...

    @property
    def base(self) -> int: ...

    @property
    def user_base(self) -> int: ...

    @property
    def user_end(self) -> int: ...

    @property
    def config(self) -> EnclaveConfig: ...

    @property
    def crashed(self) -> bool: ...

    @property
    def thread_contexts(self) -> Any: ...

    def current(self) -> Entered | None: ...

    def enter(self, tcs: int | None = None) -> AbstractContextManager[Entered]: ...

    def take_tcs(self) -> int | None: ...

    def give_tcs(self, tcs: int) -> None: ...

    def free_tcs_count(self) -> int: ...

    def tcs_busy(self, tcs: int) -> bool: ...

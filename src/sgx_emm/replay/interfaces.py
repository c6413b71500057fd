"""What the replay runner needs from an enclave.

`sgx_emm.Enclave` satisfies these protocols; tests may plug in a small double, so
the runner never imports the simulator itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from sgx_emm.trace import Event


class EnclaveThread(Protocol):
    def read(self, addr: int, n: int) -> bytes: ...

    def write(self, addr: int, data: bytes) -> None: ...

    def fetch(self, addr: int, n: int) -> bytes: ...


class TraceLike(Protocol):
    @property
    def counts(self) -> Counter[tuple[str, str]]: ...

    def by_category(self) -> dict[str, dict[str, int]]: ...

    def subscribe(self, listener: Callable[[Event], None]) -> Callable[[], None]: ...


class EnclaveLike(Protocol):
    @property
    def emm(self) -> Any: ...

    @property
    def trace(self) -> TraceLike: ...

    @property
    def base(self) -> int: ...

    @property
    def size(self) -> int: ...

    @property
    def user_base(self) -> int: ...

    @property
    def user_end(self) -> int: ...

    @property
    def tcs_addresses(self) -> list[int]: ...

    def enter(self, tcs: int | None = None) -> AbstractContextManager[Any]: ...

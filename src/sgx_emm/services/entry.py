"""Where a service call runs: inside the caller's enclave entry, or a short one of its own.

Every service is trusted-runtime code: its manager calls and memory accesses run
on an enclave thread. Called inside `with enc.enter() as t:` a service uses that
thread (so its flows appear in the trace inside the caller's ecall); a few
calls that an SDK application makes from outside (`add_thread`, `threads.join`)
take a free TCS for the time of the call, as the SDK's urts makes an ecall.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sgx_emm.services.host import Entered, Host


class NotInsideEnclave(RuntimeError):
    """A service that only runs inside the enclave was called outside any entry."""


def current(enc: Host, what: str) -> Entered:
    """The calling Python thread's entry into `enc`; NotInsideEnclave if there is none."""
    ctx = enc.current()
    if ctx is None:
        raise NotInsideEnclave(f"{what} runs inside the enclave: call it inside "
                               "`with enc.enter():`")
    return ctx


@contextmanager
def inside(enc: Host, via: int | None = None) -> Iterator[Entered]:
    """The caller's entry if it has one, else an ecall for the block, through `via`
    (a TCS the caller holds) or a free TCS."""
    ctx = enc.current()
    if ctx is not None:
        yield ctx
        return
    with enc.enter(tcs=via) as entered:
        yield entered

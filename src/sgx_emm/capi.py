"""The C-shaped surface of `sgx_mm.h` and `emm_private.h`.

Each function returns the C integer result (0 or an errno) instead of raising
`EmmError`, and takes NULL as 0 or None, so that C test code and traces from real
runtimes port line by line. They act on the enclave of the calling thread: call
them inside `enc.enter()`. `EnclaveAbort` and `EnclaveCrashed` still propagate,
as abort() and an unhandled exception end the C program too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sgx_emm.emm.rt import FaultHandler
from sgx_emm.errors import EmmError


def _manager() -> Any:
    """The calling thread's enclave's manager, unguarded: C passes plain integers,
    so a flag of another family is just its value (PROT_READ as a page type is
    EPERM, as in C). Raises NotEntered outside an entry, EnclaveCrashed after a
    crash."""
    from sgx_emm.enclave import current_enclave

    enc = current_enclave()
    enc.require_entry("capi")
    return enc.manager


def _addr(addr: int | None) -> int | None:
    return addr if addr else None


def _result(call: Callable[[], object]) -> int:
    try:
        call()
    except EmmError as exc:
        return int(exc.errno or 0)
    return 0


def _alloc(method: str, addr: int | None, size: int, flags: int,
           handler: FaultHandler | None, private: Any) -> tuple[int, int]:
    try:
        out = getattr(_manager(), method)(_addr(addr), size, flags, handler, private)
    except EmmError as exc:
        return int(exc.errno or 0), 0
    return 0, int(out)


def sgx_mm_alloc(addr: int | None, size: int, flags: int, handler: FaultHandler | None = None,
                 private: Any = None) -> tuple[int, int]:
    """Returns (ret, out_addr); out_addr is 0 when ret != 0, as C leaves it NULL."""
    return _alloc("alloc", addr, size, flags, handler, private)


def sgx_mm_dealloc(addr: int | None, size: int) -> int:
    """`sgx_mm_dealloc` as in C: the integer result (0 or an errno), never EmmError."""
    return _result(lambda: _manager().dealloc(addr or 0, size))


def sgx_mm_commit(addr: int | None, size: int) -> int:
    """`sgx_mm_commit` as in C: the integer result (0 or an errno), never EmmError."""
    return _result(lambda: _manager().commit(addr or 0, size))


def sgx_mm_uncommit(addr: int | None, size: int) -> int:
    """`sgx_mm_uncommit` as in C: the integer result (0 or an errno), never EmmError."""
    return _result(lambda: _manager().uncommit(addr or 0, size))


def sgx_mm_commit_data(addr: int | None, size: int, data: int | None, prot: int) -> int:
    """`sgx_mm_commit_data` as in C: the integer result (0 or an errno), never EmmError."""
    return _result(lambda: _manager().commit_data(addr or 0, size, data or 0, prot))


def sgx_mm_modify_type(addr: int | None, size: int, page_type: int) -> int:
    """`sgx_mm_modify_type` as in C: the integer result (0 or an errno), never EmmError."""
    return _result(lambda: _manager().modify_type(addr or 0, size, page_type))


def sgx_mm_modify_permissions(addr: int | None, size: int, prot: int) -> int:
    """`sgx_mm_modify_permissions` as in C: the integer result (0 or an errno), never EmmError."""
    return _result(lambda: _manager().modify_permissions(addr or 0, size, prot))


def mm_alloc(addr: int | None, size: int, flags: int, handler: FaultHandler | None = None,
             private: Any = None) -> tuple[int, int]:
    """`mm_alloc` as in C: (ret, out_addr); out_addr is 0 when ret != 0."""
    return _alloc("mm_alloc", addr, size, flags, handler, private)


def mm_dealloc(addr: int | None, size: int) -> int:
    """`mm_dealloc` as in C: the integer result (0 or an errno), never EmmError."""
    return _result(lambda: _manager().mm_dealloc(addr or 0, size))


def mm_commit(addr: int | None, size: int) -> int:
    """`mm_commit` as in C: the integer result (0 or an errno), never EmmError."""
    return _result(lambda: _manager().mm_commit(addr or 0, size))


def mm_uncommit(addr: int | None, size: int) -> int:
    """`mm_uncommit` as in C: the integer result (0 or an errno), never EmmError."""
    return _result(lambda: _manager().mm_uncommit(addr or 0, size))


def mm_commit_data(addr: int | None, size: int, data: int | None, prot: int) -> int:
    """`mm_commit_data` as in C: the integer result (0 or an errno), never EmmError."""
    return _result(lambda: _manager().mm_commit_data(addr or 0, size, data or 0, prot))


def mm_modify_type(addr: int | None, size: int, page_type: int) -> int:
    """`mm_modify_type` as in C: the integer result (0 or an errno), never EmmError."""
    return _result(lambda: _manager().mm_modify_type(addr or 0, size, page_type))


def mm_modify_permissions(addr: int | None, size: int, prot: int) -> int:
    """`mm_modify_permissions` as in C: the integer result (0 or an errno), never EmmError."""
    return _result(lambda: _manager().mm_modify_permissions(addr or 0, size, prot))


def mm_init_ema(addr: int | None, size: int, flags: int, prot: int,
                handler: FaultHandler | None = None, private: Any = None) -> int:
    """`mm_init_ema` as in C: the integer result (0 or an errno), never EmmError."""
    return _result(lambda: _manager().mm_init_ema(addr or 0, size, flags, prot, handler,
                                                  private))

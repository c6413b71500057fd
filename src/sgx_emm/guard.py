"""`enc.emm`: the manager as code outside the enclave may reach it, with its guards.

The manager is trusted code: on hardware it only runs inside an enclave entry,
and a crashed enclave runs nothing at all. `GuardedManager` wraps one enclave's
`EnclaveMemoryManager` and, before passing a call on unchanged:

* refuses it when the enclave is dead (`EnclaveCrashed`, carrying the first
  crash's cause) or when the calling thread is not inside this enclave
  (`NotEntered`: use `with enc.enter():`);
* checks argument *types* the way a C compiler would: integers only (plain ints
  and the `sgx_emm.flags` members; no bool, float or str), a flag member of the
  right family (a `Prot` where alloc flags belong is a `TypeError`, because
  PROT_READ == RESERVE would silently reserve), and a callable `handler`.

Values are the manager's business: a plain int passes untouched and meets the
manager's own checks (and its `EmmError` reasons). Read-only views (`regions`,
`region_count`, `user_base`, `user_end`) need no entry and work after a crash,
so a dead enclave can still be inspected. The manager itself stays reachable
as `enc.manager` for tests and benchmarks that drive it directly.
"""

from __future__ import annotations

from typing import Any, Protocol

from sgx_emm.emm import EnclaveMemoryManager, Region
from sgx_emm.emm.rt import FaultHandler, PfInfo
from sgx_emm.flags import AllocFlags, PageType, Prot


class EnclaveHost(Protocol):
    """What the guard needs of its enclave (`sgx_emm.Enclave`, which imports this
    module: naming it here would make an import cycle)."""

    @property
    def base(self) -> int: ...

    def require_entry(self, call: str = ...) -> None: ...

_FLAG_TYPES = (AllocFlags, PageType, Prot)
_FAMILY_NAMES: dict[type, str] = {AllocFlags: "AllocFlags", PageType: "PageType", Prot: "Prot"}


def check_int(name: str, value: object) -> None:
    """`value` must be an int (an IntFlag member is one); bool, float, str are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__} ({value!r})")


def check_addr(name: str, value: object) -> None:
    """An address: an int, or None for NULL (`capi` style)."""
    if value is not None:
        check_int(name, value)


def check_flags(name: str, value: object, *families: type) -> None:
    """An int, or a flag member of one of `families` (never of another family)."""
    check_int(name, value)
    if isinstance(value, _FLAG_TYPES) and not isinstance(value, families):
        wanted = " or ".join(_FAMILY_NAMES[f] for f in families)
        raise TypeError(f"{name} takes {wanted} values, not {type(value).__name__}."
                        f"{value} (a {_FAMILY_NAMES[type(value)]} member)")


def _check_range(addr: object, size: object) -> None:
    check_int("addr", addr)
    check_int("size", size)


def check_handler(value: object) -> None:
    """`handler` must be None or callable as handler(pfinfo, private)."""
    if value is not None and not callable(value):
        raise TypeError(f"handler must be callable as handler(pfinfo, private) or None, "
                        f"not {type(value).__name__} ({value!r})")


class GuardedManager:
    """The manager of one enclave, callable only from inside it (see module doc).

    Every method has the manager's signature and result; on top of the manager's
    `EmmError`s it raises `EnclaveCrashed` (the enclave is dead),
    `NotEntered` (not inside `with enc.enter():`) and `TypeError` (an
    argument of the wrong type, named in the message).
    """

    __slots__ = ("_enclave", "_manager")

    def __init__(self, enclave: EnclaveHost, manager: EnclaveMemoryManager) -> None:
        self._enclave = enclave
        self._manager = manager

    def __repr__(self) -> str:
        return (f"<GuardedManager of the enclave at {self._enclave.base:#x}, user range "
                f"{self.user_base:#x}-{self.user_end:#x}>")

    def _entered(self, call: str) -> EnclaveMemoryManager:
        self._enclave.require_entry(f"emm.{call}")
        return self._manager

    # Each call's checks are written once and shared by the public call and its
    # mm_* twin on the rts root: `call` names the manager method to run.
    def _alloc(self, call: str, addr: int | None, size: int, flags: int,
               handler: FaultHandler | None, private: Any) -> int:
        check_addr("addr", addr)
        check_int("size", size)
        check_flags("flags", flags, AllocFlags, PageType)
        check_handler(handler)
        result: int = getattr(self._entered(call), call)(addr, size, flags, handler,
                                                           private)
        return result

    def _range(self, call: str, addr: int, size: int) -> None:
        _check_range(addr, size)
        getattr(self._entered(call), call)(addr, size)

    def _with_prot(self, call: str, addr: int, size: int, prot: int) -> None:
        _check_range(addr, size)
        check_flags("prot", prot, Prot)
        getattr(self._entered(call), call)(addr, size, prot)

    def _commit_data(self, call: str, addr: int, size: int, data_addr: int,
                     prot: int) -> None:
        _check_range(addr, size)
        check_int("data_addr", data_addr)
        check_flags("prot", prot, Prot)
        getattr(self._entered(call), call)(addr, size, data_addr, prot)

    def _modify_type(self, call: str, addr: int, size: int, page_type: int) -> None:
        _check_range(addr, size)
        check_flags("page_type", page_type, PageType)
        getattr(self._entered(call), call)(addr, size, page_type)

    # ------------------------------------------------------------ public API
    def alloc(self, addr: int | None, size: int, flags: int,
              handler: FaultHandler | None = None, private: Any = None) -> int:
        """sgx_mm_alloc: reserve or commit `size` bytes at `addr` (None: anywhere).

        `flags`: one commit mode (RESERVE, COMMIT_NOW or COMMIT_ON_DEMAND), optional
        GROWSDOWN/GROWSUP, FIXED, a page type (REG, SS_FIRST, SS_REST) and
        `aligned(n)`. `handler(pfinfo, private)` then handles the region's faults.
        Returns the region's address. EmmError: EINVAL (bad flags, size or
        alignment), EACCES (outside the enclave), EEXIST / EPERM (FIXED over a
        live region / outside the user range), ENOMEM (no room or metadata),
        EFAULT (the OS refused); `reason` says which check.
        """
        return self._alloc("alloc", addr, size, flags, handler, private)

    def dealloc(self, addr: int, size: int) -> None:
        """sgx_mm_dealloc: free every page of [addr, addr+size) and forget the regions.

        EmmError EINVAL when the range is unaligned or does not start in a region,
        EACCES for the manager's own metadata.
        """
        self._range("dealloc", addr, size)

    def commit(self, addr: int, size: int) -> None:
        """sgx_mm_commit: EACCEPT the uncommitted pages of [addr, addr+size) now.

        EmmError EINVAL (unaligned, holes, outside regions), EACCES (a reservation,
        not writable or not REG), or the SGX code of a failing EACCEPT.
        """
        self._range("commit", addr, size)

    def uncommit(self, addr: int, size: int) -> None:
        """sgx_mm_uncommit: trim the committed pages of the range (they read as new later).

        EmmError EINVAL (unaligned, holes), EACCES (a reservation), EFAULT (the OS
        refused the trim).
        """
        self._range("uncommit", addr, size)

    def commit_data(self, addr: int, size: int, data_addr: int, prot: int) -> None:
        """sgx_mm_commit_data: commit uncommitted pages with a copy of `data_addr`'s
        bytes (EACCEPTCOPY), then give them `prot`.

        EmmError EINVAL (unaligned, not COMMIT_ON_DEMAND, source outside the
        enclave, X without R), EACCES (a page is already committed, not writable
        or not REG), EFAULT (EACCEPTCOPY or the OS failed).
        """
        self._commit_data("commit_data", addr, size, data_addr, prot)

    def modify_type(self, addr: int, size: int, page_type: int) -> None:
        """sgx_mm_modify_type: turn one committed REG|RW page into a TCS page.

        EmmError EPERM (a type other than PAGE_TYPE_TCS), EINVAL (not one page, or
        no region), EACCES (not committed, or not REG|RW), EFAULT (the OS refused).
        """
        self._modify_type("modify_type", addr, size, page_type)

    def modify_permissions(self, addr: int, size: int, prot: int) -> None:
        """sgx_mm_modify_permissions: give committed pages new permissions.

        EmmError EINVAL (unaligned, uncommitted pages, X without R, bad bits),
        EACCES (a reservation or a non-REG page), EFAULT (the OS refused, e.g. the
        driver refuses W without R), or the SGX code of a failing EACCEPT.
        """
        self._with_prot("modify_permissions", addr, size, prot)

    # ------------------------------------------------------------ private API
    def mm_alloc(self, addr: int | None, size: int, flags: int,
                 handler: FaultHandler | None = None, private: Any = None) -> int:
        """mm_alloc: `alloc` on the runtime's own (rts) root; SYSTEM is allowed."""
        return self._alloc("mm_alloc", addr, size, flags, handler, private)

    def mm_dealloc(self, addr: int, size: int) -> None:
        """mm_dealloc: `dealloc` on the rts root."""
        self._range("mm_dealloc", addr, size)

    def mm_commit(self, addr: int, size: int) -> None:
        """mm_commit: `commit` on the rts root."""
        self._range("mm_commit", addr, size)

    def mm_uncommit(self, addr: int, size: int) -> None:
        """mm_uncommit: `uncommit` on the rts root."""
        self._range("mm_uncommit", addr, size)

    def mm_commit_data(self, addr: int, size: int, data_addr: int, prot: int) -> None:
        """mm_commit_data: `commit_data` on the rts root."""
        self._commit_data("mm_commit_data", addr, size, data_addr, prot)

    def mm_modify_type(self, addr: int, size: int, page_type: int) -> None:
        """mm_modify_type: `modify_type` on the rts root."""
        self._modify_type("mm_modify_type", addr, size, page_type)

    def mm_modify_permissions(self, addr: int, size: int, prot: int) -> None:
        """mm_modify_permissions: `modify_permissions` on the rts root."""
        self._with_prot("mm_modify_permissions", addr, size, prot)

    def mm_init_ema(self, addr: int, size: int, flags: int, prot: int,
                    handler: FaultHandler | None = None, private: Any = None) -> None:
        """mm_init_ema: record a region the loader already built on the rts root.

        EmmError EINVAL (bad range, flags or prot, not free), EACCES (outside the
        enclave), ENOMEM (no metadata).
        """
        _check_range(addr, size)
        check_flags("flags", flags, AllocFlags, PageType)
        check_flags("prot", prot, Prot)
        check_handler(handler)
        self._entered("mm_init_ema").mm_init_ema(addr, size, flags, prot, handler, private)

    def handle_page_fault(self, pfinfo: PfInfo) -> int:
        """The manager's #PF handler, as the dispatcher calls it: CONTINUE_EXECUTION
        (the page was committed or is accessible), CONTINUE_SEARCH (not the
        manager's fault to fix), or EnclaveAbort."""
        if not isinstance(pfinfo, PfInfo):
            raise TypeError(f"pfinfo must be a PfInfo, not {type(pfinfo).__name__}")
        return self._entered("handle_page_fault").handle_page_fault(pfinfo)

    # ------------------------------------------------------------ read-only views
    def regions(self, root: str = "user") -> list[Region]:
        """Snapshots of one root's regions ("user" or "rts"), in address order.

        Needs no entry and works after a crash (it only reads the books).
        """
        return self._manager.regions(root)

    def region_count(self, root: str = "user") -> int:
        """How many regions a root holds, O(1)."""
        return self._manager.region_count(root)

    @property
    def user_base(self) -> int:
        """Start of the user range the public API allocates in."""
        return self._manager.user_base

    @property
    def user_end(self) -> int:
        """End of the user range."""
        return self._manager.user_end

    def __getattr__(self, name: str) -> Any:
        # anything else (metadata allocator, internals tests look at) is the manager's
        return getattr(self._manager, name)

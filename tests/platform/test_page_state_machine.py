"""Model-based test of the EDMM page life cycle (platform.md B's state machine).

A tiny model (per page: free / pending / accepted with RWX and PR / trimmed / trim
accepted, plus the last bytes written) runs beside the platform; after every step
the EPCM entry and the driver record of every page must match it. Steps are the
calls user space and the enclave really make: faults that EAUG, EACCEPT in its
three forms, EMODPE, and the three EDMM ioctls, legal or not.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from platform_support import DYN_X, PAGE, Small, build_small

from sgx_emm.platform import ModifyTypes, RemovePages, RestrictPermissions, Run
from sgx_emm.platform.secinfo import PT_REG, PT_TRIM

N = 6
pages = st.integers(min_value=0, max_value=N - 1)
perms = st.sampled_from([0, 1, 3, 5, 7])
extensions = st.sampled_from([1, 3, 4, 5, 7])


@dataclass
class PageModel:
    state: str = "free"       # free | pending | accepted | trim | trim_accepted
    rwx: int = 0
    pr: bool = False
    data: bytes = bytes(8)


class PageLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.s: Small = build_small()
        self.model = [PageModel() for _ in range(N)]

    def addr(self, i: int) -> int:
        return self.s.a(DYN_X + i * PAGE)      # an RWX mapping with no pages yet

    def ioctl(self, call: object) -> tuple[int, object]:
        try:
            call()  # type: ignore[operator]
        except OSError as err:
            return err.errno or 0, err
        return 0, None

    # ---- rules ----
    @rule(i=pages)
    def touch(self, i: int) -> None:
        """A not-present fault (from anyone): EAUG if the page has no record."""
        self.s.machine.kernel.handle_fault(self.addr(i), 0x4)
        m = self.model[i]
        if m.state == "free":
            m.state, m.rwx, m.pr, m.data = "pending", 3, False, bytes(8)

    @rule(i=pages)
    def accept_aug(self, i: int) -> None:
        m = self.model[i]
        with self.s.machine.vdso.inline(Run(tcs=self.s.tcs1)) as t:
            ret = t.eaccept(0x20B, self.addr(i))
        if m.state in ("free", "pending"):
            assert ret == 0
            m.state, m.rwx, m.pr, m.data = "accepted", 3, False, bytes(8)
        else:
            assert ret == 19

    @rule(i=pages, perm=perms)
    def restrict(self, i: int, perm: int) -> None:
        m = self.model[i]
        params = RestrictPermissions(DYN_X + i * PAGE, PAGE, perm)
        err, _ = self.ioctl(lambda: self.s.fd.restrict_permissions(params))
        if m.state == "accepted":
            assert err == 0 and params.count == PAGE
            m.rwx &= perm
            m.pr = True
        elif m.state == "pending":
            assert (err, params.result) == (errno.EFAULT, 20)
        elif m.state == "free":
            assert err == errno.EFAULT and params.result == 0
        else:
            assert err == errno.EINVAL

    @rule(i=pages)
    def accept_restriction(self, i: int) -> None:
        m = self.model[i]
        if m.state != "accepted":
            return
        with self.s.machine.vdso.inline(Run(tcs=self.s.tcs1)) as t:
            assert t.eaccept(0x220 | m.rwx, self.addr(i)) == 0
            assert t.eaccept(0x220 | (m.rwx ^ 1), self.addr(i)) == 19
        m.pr = False

    @rule(i=pages, bits=extensions)
    def emodpe(self, i: int, bits: int) -> None:
        m = self.model[i]
        if m.state != "accepted":
            return
        with self.s.machine.vdso.inline(Run(tcs=self.s.tcs1)) as t:
            assert t.emodpe(0x200 | bits, self.addr(i)) == 0
        m.rwx |= bits

    @rule(i=pages)
    def trim(self, i: int) -> None:
        m = self.model[i]
        params = ModifyTypes(DYN_X + i * PAGE, PAGE, PT_TRIM)
        err, _ = self.ioctl(lambda: self.s.fd.modify_types(params))
        if m.state == "accepted":
            assert err == 0
            m.state, m.rwx, m.pr = "trim", 0, False
        elif m.state == "pending":
            assert (err, params.result) == (errno.EFAULT, 20)
        elif m.state == "free":
            assert err == errno.EFAULT
        else:
            assert err == errno.EINVAL

    @rule(i=pages)
    def accept_trim(self, i: int) -> None:
        m = self.model[i]
        with self.s.machine.vdso.inline(Run(tcs=self.s.tcs1)) as t:
            ret = t.eaccept(0x410, self.addr(i))
        if m.state == "trim":
            assert ret == 0
            m.state = "trim_accepted"
        else:
            assert ret == 19
            if m.state == "free":       # the EACCEPT's fault made the kernel EAUG it
                m.state, m.rwx, m.pr, m.data = "pending", 3, False, bytes(8)

    @rule(i=pages)
    def remove(self, i: int) -> None:
        m = self.model[i]
        params = RemovePages(DYN_X + i * PAGE, PAGE)
        err, _ = self.ioctl(lambda: self.s.fd.remove_pages(params))
        if m.state == "trim_accepted":
            assert err == 0 and params.count == PAGE
            self.model[i] = PageModel()
        elif m.state == "free":
            assert err == errno.EFAULT
        else:
            assert err == errno.EPERM and params.count == 0

    @rule(i=pages, value=st.binary(min_size=8, max_size=8))
    def write_then_read(self, i: int, value: bytes) -> None:
        m = self.model[i]
        if m.state != "accepted" or m.rwx & 3 != 3:
            return
        with self.s.machine.vdso.inline(Run(tcs=self.s.tcs1)) as t:
            assert t.read(self.addr(i), 8) == m.data
            t.write(self.addr(i), value)
        m.data = value

    # ---- invariants ----
    @invariant()
    def epcm_matches_model(self) -> None:
        for i, m in enumerate(self.model):
            rec = self.s.fd.record(self.addr(i))
            if m.state == "free":
                assert rec is None
                continue
            assert rec is not None
            entry = self.s.machine.epc.describe(rec[0])
            rwx = int(entry["r"]) | int(entry["w"]) << 1 | int(entry["x"]) << 2
            assert entry["valid"] and entry["linaddr"] == self.addr(i)
            assert entry["pending"] == (m.state == "pending")
            assert entry["modified"] == (m.state == "trim")
            assert entry["pt"] == (PT_TRIM if m.state.startswith("trim") else PT_REG)
            assert rec[1] == entry["pt"]
            assert rwx == m.rwx and entry["pr"] == m.pr

    @invariant()
    def epc_accounting(self) -> None:
        used = sum(1 for m in self.model if m.state != "free")
        assert self.s.machine.epc.used == 12 + used


TestPageLifecycle = PageLifecycle.TestCase
TestPageLifecycle.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)

"""The untrusted runtime's ocall services follow platform.md D's decision table row
by row (a recording fake driver), retry EBUSY/EAGAIN with partial progress, report
every failure as EFAULT, and work end to end on the platform model."""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

import pytest
from platform_support import DYN, PAGE, Small, build_small

from sgx_emm.platform import MAP_FIXED, MAP_SHARED, Run
from sgx_emm.platform.kernel import ModifyTypes, RemovePages, RestrictPermissions
from sgx_emm.runtime.urts import UntrustedRuntime

BASE = 0x100000
REG, TCS, TRIM = 0x200, 0x100, 0x400
R, W, X = 1, 2, 4
RW = R | W


@dataclass
class FakeDriver:
    """Records syscalls and ioctls; `fail` maps a call name to errnos to raise in
    turn (with `partial` bytes reported done)."""

    base: int = BASE
    calls: list[tuple[object, ...]] = field(default_factory=list)
    fail: dict[str, list[int]] = field(default_factory=dict)
    partial: int = 0

    def _maybe_fail(self, name: str, params: object | None = None) -> None:
        queue = self.fail.get(name)
        if queue:
            err = queue.pop(0)
            if params is not None:
                params.count = self.partial  # type: ignore[attr-defined]
            raise OSError(err, name)

    def mmap(self, addr: int, length: int, prot: int, flags: int, fd: object,
             offset: int = 0) -> int:
        self.calls.append(("mmap", addr, length, prot, flags))
        self._maybe_fail("mmap")
        return addr

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        self.calls.append(("mprotect", addr, length, prot))
        self._maybe_fail("mprotect")

    def restrict_permissions(self, p: RestrictPermissions) -> int:
        self.calls.append(("restrict", p.offset, p.length, p.permissions))
        self._maybe_fail("restrict", p)
        return 0

    def modify_types(self, p: ModifyTypes) -> int:
        self.calls.append(("modify", p.offset, p.length, p.page_type))
        self._maybe_fail("modify", p)
        return 0

    def remove_pages(self, p: RemovePages) -> int:
        self.calls.append(("remove", p.offset, p.length))
        self._maybe_fail("remove", p)
        return 0


@pytest.fixture
def fake() -> FakeDriver:
    return FakeDriver()


@pytest.fixture
def urts(fake: FakeDriver) -> UntrustedRuntime:
    return UntrustedRuntime(fake, fake, max_retries=3)  # type: ignore[arg-type]


A = BASE + 0x4000
L = 2 * PAGE


def test_alloc_ocall_maps_rw_shared_fixed_ignoring_type_and_flags(urts: UntrustedRuntime,
                                                                  fake: FakeDriver) -> None:
    assert urts.alloc_ocall(A, L, TCS, 0x24) == 0
    assert fake.calls == [("mmap", A, L, RW, MAP_SHARED | MAP_FIXED)]


def test_alloc_ocall_failure_is_efault(urts: UntrustedRuntime, fake: FakeDriver) -> None:
    fake.fail["mmap"] = [errno.EACCES]
    assert urts.alloc_ocall(A, L, REG, 0) == errno.EFAULT


# one test per row of the table, in order
def test_row1_from_trim_to_other_type_is_invalid(urts: UntrustedRuntime,
                                                 fake: FakeDriver) -> None:
    assert urts.modify_ocall(A, L, TRIM | R, REG | R) == errno.EFAULT
    assert fake.calls == []


def test_row2_prot_and_type_both_change_is_invalid(urts: UntrustedRuntime,
                                                   fake: FakeDriver) -> None:
    assert urts.modify_ocall(A, L, REG | RW, TRIM | R) == errno.EFAULT
    assert fake.calls == []


def test_row3_trim_notify_removes_then_mprotect_none(urts: UntrustedRuntime,
                                                     fake: FakeDriver) -> None:
    assert urts.modify_ocall(A, L, TRIM, TRIM) == 0
    assert fake.calls == [("remove", A - BASE, L), ("mprotect", A, L, 0)]


def test_row3_trim_notify_with_prot_keeps_mapping(urts: UntrustedRuntime,
                                                  fake: FakeDriver) -> None:
    assert urts.modify_ocall(A, L, TRIM | R, TRIM | R) == 0
    assert fake.calls == [("remove", A - BASE, L)]


def test_row4_to_trim_modifies_types(urts: UntrustedRuntime, fake: FakeDriver) -> None:
    assert urts.modify_ocall(A, L, REG | RW, TRIM | RW) == 0
    assert fake.calls == [("modify", A - BASE, L, 4)]


def test_row5_reg_rw_to_tcs(urts: UntrustedRuntime, fake: FakeDriver) -> None:
    assert urts.modify_ocall(A, PAGE, REG | RW, TCS | RW) == 0
    assert fake.calls == [("modify", A - BASE, PAGE, 1)]


def test_row5_to_tcs_from_non_reg_is_invalid(urts: UntrustedRuntime, fake: FakeDriver) -> None:
    assert urts.modify_ocall(A, PAGE, 0x500 | RW, TCS | RW) == errno.EFAULT
    assert urts.modify_ocall(A, PAGE, REG | R, TCS | RW) == errno.EFAULT   # row 2 anyway
    assert fake.calls == []


def test_row5_to_tcs_with_unchanged_non_rw_prot(urts: UntrustedRuntime,
                                                fake: FakeDriver) -> None:
    assert urts.modify_ocall(A, PAGE, REG | R, TCS | R) == 0
    assert fake.calls == [("modify", A - BASE, PAGE, 1)]


def test_row6_other_type_change_is_invalid(urts: UntrustedRuntime, fake: FakeDriver) -> None:
    assert urts.modify_ocall(A, L, TCS | RW, REG | RW) == errno.EFAULT
    assert fake.calls == []


def test_row7_none_to_none_mprotects_none(urts: UntrustedRuntime, fake: FakeDriver) -> None:
    assert urts.modify_ocall(A, L, REG, REG) == 0
    assert fake.calls == [("mprotect", A, L, 0)]


def test_row8_unchanged_prot_does_nothing(urts: UntrustedRuntime, fake: FakeDriver) -> None:
    assert urts.modify_ocall(A, L, REG | RW, REG | RW) == 0
    assert fake.calls == []


def test_row9_restrict_then_mprotect(urts: UntrustedRuntime, fake: FakeDriver) -> None:
    assert urts.modify_ocall(A, L, REG | RW, REG | R) == 0
    assert fake.calls == [("restrict", A - BASE, L, R), ("mprotect", A, L, R)]


def test_row9_extending_still_restricts(urts: UntrustedRuntime, fake: FakeDriver) -> None:
    assert urts.modify_ocall(A, L, REG | R, REG | RW | X) == 0
    assert fake.calls == [("restrict", A - BASE, L, RW | X), ("mprotect", A, L, RW | X)]


def test_row9_to_none_skips_mprotect(urts: UntrustedRuntime, fake: FakeDriver) -> None:
    assert urts.modify_ocall(A, L, REG | RW, REG) == 0
    assert fake.calls == [("restrict", A - BASE, L, 0)]


def test_prot_change_on_non_reg_is_invalid(urts: UntrustedRuntime, fake: FakeDriver) -> None:
    assert urts.modify_ocall(A, PAGE, TCS | RW, TCS | R) == errno.EFAULT
    assert fake.calls == []


@pytest.mark.parametrize("err", [errno.EBUSY, errno.EAGAIN])
def test_retry_continues_after_partial_progress(urts: UntrustedRuntime, fake: FakeDriver,
                                                err: int) -> None:
    fake.fail["modify"] = [err, err]
    fake.partial = PAGE
    assert urts.modify_ocall(A, 3 * PAGE, REG | RW, TRIM | RW) == 0
    assert fake.calls == [("modify", A - BASE, 3 * PAGE, 4),
                          ("modify", A - BASE + PAGE, 2 * PAGE, 4),
                          ("modify", A - BASE + 2 * PAGE, PAGE, 4)]


def test_retry_without_progress_gives_up(urts: UntrustedRuntime, fake: FakeDriver) -> None:
    fake.fail["restrict"] = [errno.EBUSY] * 10
    assert urts.modify_ocall(A, L, REG | RW, REG | R) == errno.EFAULT
    assert len(fake.calls) == 3


@pytest.mark.parametrize("err", [errno.EPERM, errno.EINVAL, errno.EFAULT, errno.ENODEV])
def test_other_ioctl_errors_are_efault(urts: UntrustedRuntime, fake: FakeDriver,
                                       err: int) -> None:
    fake.fail["remove"] = [err]
    assert urts.modify_ocall(A, L, TRIM, TRIM) == errno.EFAULT
    assert fake.calls == [("remove", A - BASE, L)]          # no mprotect after a failure


def test_mprotect_failure_is_efault(urts: UntrustedRuntime, fake: FakeDriver) -> None:
    fake.fail["mprotect"] = [errno.EACCES]
    assert urts.modify_ocall(A, L, REG | RW, REG | R) == errno.EFAULT


# ---------------------------------------------------------------- end to end
def test_end_to_end_alloc_trim_remove_on_the_model() -> None:
    s: Small = build_small()
    urts = UntrustedRuntime(s.machine.kernel, s.fd)
    addr = s.a(0xC0000)
    assert urts.alloc_ocall(addr, 2 * PAGE, REG, 0) == 0
    with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
        assert t.eaccept(0x20B, addr) == 0 and t.eaccept(0x20B, addr + PAGE) == 0
        assert urts.modify_ocall(addr, 2 * PAGE, REG | RW, REG | R) == 0
        assert t.eaccept(0x221, addr) == 0 and t.eaccept(0x221, addr + PAGE) == 0
        assert urts.modify_ocall(addr, 2 * PAGE, REG | R, TRIM | R) == 0
        assert t.eaccept(0x410, addr) == 0 and t.eaccept(0x410, addr + PAGE) == 0
        assert urts.modify_ocall(addr, 2 * PAGE, TRIM | R, TRIM | R) == 0
    assert s.fd.record(addr) is None and s.fd.record(addr + PAGE) is None
    assert urts.modify_ocall(s.a(DYN), PAGE, TRIM, TRIM) == errno.EFAULT   # no record

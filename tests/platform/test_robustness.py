"""Bad input never escapes as anything but the documented outcomes: driver calls
raise OSError (with errno) or succeed; leaves return an SGX code or take the fault
path (FaultReported when the entry ends); state stays consistent."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from platform_support import BASE, SIZE, build_small

from sgx_emm.platform import (
    FaultReported,
    ModifyTypes,
    RemovePages,
    RestrictPermissions,
    Run,
)

interesting_ints = st.one_of(
    st.integers(min_value=-(2**65), max_value=2**65),
    st.sampled_from([0, 1, 0xFFF, 0x1000, SIZE, SIZE - 0x1000, 2**64 - 1, 2**64, -1]),
    st.integers(min_value=0, max_value=SIZE // 0x1000).map(lambda p: p * 0x1000),
)
addresses = st.one_of(interesting_ints, interesting_ints.map(lambda o: BASE + o))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["mmap", "mprotect", "munmap", "restrict", "modify",
                                           "remove"]),
                          addresses, interesting_ints, interesting_ints, interesting_ints),
                max_size=8))
def test_driver_calls_only_raise_oserror(calls: list[tuple[str, int, int, int, int]]) -> None:
    s = build_small()
    m = s.machine
    for name, addr, length, a, b in calls:
        try:
            if name == "mmap":
                m.mmap(addr, length, a, b, s.fd)
            elif name == "mprotect":
                m.mprotect(addr, length, a)
            elif name == "munmap":
                m.munmap(addr, length)
            elif name == "restrict":
                s.fd.restrict_permissions(RestrictPermissions(addr - BASE, length, a))
            elif name == "modify":
                s.fd.modify_types(ModifyTypes(addr - BASE, length, a))
            else:
                s.fd.remove_pages(RemovePages(addr - BASE, length))
        except OSError as err:
            assert err.errno
    assert m.epc.used + m.epc.free_pages == m.epc.npages


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["eaccept", "eacceptcopy", "emodpe", "read",
                                           "write", "fetch"]),
                          interesting_ints, addresses, addresses), max_size=6))
def test_leaves_and_accesses_only_return_codes_or_report(
        ops: list[tuple[str, int, int, int]]) -> None:
    s = build_small()
    for name, secinfo, addr, other in ops:
        try:
            with s.machine.vdso.inline(Run(tcs=s.tcs1)) as t:
                if name == "eaccept":
                    assert isinstance(t.eaccept(secinfo, addr), int)
                elif name == "eacceptcopy":
                    assert isinstance(t.eacceptcopy(secinfo, addr, other), int)
                elif name == "emodpe":
                    assert isinstance(t.emodpe(secinfo, addr), int)
                elif name == "read":
                    t.read(addr, 8)
                elif name == "write":
                    t.write(addr, b"12345678")
                else:
                    t.fetch(addr, 8)
        except FaultReported as exc:
            assert exc.run.exception_vector in (13, 14)
            break          # the TCS is one SSA frame down; stop like a crashed enclave
        except ValueError:
            assert addr < 0 or addr + 8 > 2**64     # the documented argument check

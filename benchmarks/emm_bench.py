"""The manager benchmark of spec/bench-workload.md.

    python benchmarks/emm_bench.py N M SEED [--backend null|sim]

Setup: N one-page COMMIT_ON_DEMAND allocations; loop: M calls drawn with
splitmix64 (commit, uncommit, realloc, mprotect, fault). Prints the setup and
loop times, microseconds per call and the final region count; the last line is
`per_call_us=<float> regions=<int>`.

Back ends: `null` (the manager over the null runtime: ocalls and leaves only
count) and `sim` (the full simulated enclave; plug it in `make_sim_backend`).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sgx_emm.emm.rt import PfInfo
from sgx_emm.errors import EmmError
from sgx_emm.flags import (
    COMMIT_ON_DEMAND,
    EXCEPTION_CONTINUE_EXECUTION,
    PROT_READ,
    PROT_READ_WRITE,
)

MASK64 = (1 << 64) - 1
PAGE = 0x1000


class SplitMix64:
    """The workload's PRNG (64-bit wrap-around arithmetic)."""

    def __init__(self, seed: int) -> None:
        self.state = seed & MASK64

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)


class Manager(Protocol):
    """The calls the workload makes (EnclaveMemoryManager satisfies it)."""

    def alloc(self, addr: int | None, size: int, flags: int) -> int: ...

    def dealloc(self, addr: int, size: int) -> None: ...

    def commit(self, addr: int, size: int) -> None: ...

    def uncommit(self, addr: int, size: int) -> None: ...

    def modify_permissions(self, addr: int, size: int, prot: int) -> None: ...


@dataclass
class Backend:
    """A manager plus how to deliver a fault to its handler and count regions."""

    name: str
    emm: Manager
    fault: Callable[[int, bool], int]  # (address, write) -> handler result
    region_count: Callable[[], int]


ENCLAVE_BASE = 0x7F0000000000
ENCLAVE_SIZE = 1 << 36


def make_null_backend() -> Backend:
    from sgx_emm.emm import EnclaveMemoryManager
    from sgx_emm.runtime.null import NullRuntime

    rt = NullRuntime(ENCLAVE_BASE, ENCLAVE_SIZE, record=False)
    user_base = ENCLAVE_BASE + ENCLAVE_SIZE // 2
    mgr = EnclaveMemoryManager(rt, rt.primitives, meta_area_base=ENCLAVE_BASE + 0x100000)
    mgr.init(user_base, ENCLAVE_BASE + ENCLAVE_SIZE)

    def fault(addr: int, write: bool) -> int:
        return mgr.handle_page_fault(PfInfo(addr, 0x2 if write else 0))

    return Backend("null", mgr, fault, lambda: mgr.region_count("user"))


def make_sim_backend() -> Backend:
    """The full simulated enclave: every leaf, ocall, ioctl and fault is modelled.

    One ecall stays open for the whole run (the workload runs inside the
    enclave), and the fault kind calls the manager's handler directly on that
    thread, as the workload says; its EACCEPTs take the platform's path.
    """
    import sgx_emm

    enc = sgx_emm.Enclave.create(ENCLAVE_BASE, ENCLAVE_SIZE, epc_pages=1 << 18)
    entry = enc.enter()
    entry.__enter__()  # left open until the process ends
    mgr = enc.emm

    def fault(addr: int, write: bool) -> int:
        return mgr.handle_page_fault(PfInfo(addr, 0x8005 | (0x2 if write else 0)))

    return Backend("sim", mgr, fault, lambda: mgr.region_count("user"))


BACKENDS: dict[str, Callable[[], Backend]] = {
    "null": make_null_backend,
    "sim": make_sim_backend,
}


def run(n: int, m: int, seed: int, backend: Backend) -> tuple[float, float, int]:
    emm = backend.emm
    rng = SplitMix64(seed)
    t0 = time.perf_counter()
    addr = [emm.alloc(None, PAGE, COMMIT_ON_DEMAND) for _ in range(n)]
    committed = [False] * n
    prot = [int(PROT_READ_WRITE)] * n
    t1 = time.perf_counter()
    rw, r_only = int(PROT_READ_WRITE), int(PROT_READ)
    for _ in range(m):
        r = rng.next()
        kind = r % 5
        i = rng.next() % n
        r2 = rng.next()
        try:
            if kind == 0:
                emm.commit(addr[i], PAGE)
                committed[i] = True
            elif kind == 1:
                emm.uncommit(addr[i], PAGE)
                committed[i] = False
            elif kind == 2:
                emm.dealloc(addr[i], PAGE)
                addr[i] = emm.alloc(None, PAGE, COMMIT_ON_DEMAND)
                committed[i] = False
                prot[i] = rw
            elif kind == 3:
                if not committed[i]:
                    with contextlib.suppress(EmmError):
                        emm.commit(addr[i], PAGE)
                    committed[i] = True
                new_prot = r_only if prot[i] == rw else rw
                emm.modify_permissions(addr[i], PAGE, new_prot)
                prot[i] = new_prot
            else:
                result = backend.fault(addr[i] + (r2 & 0xFF8), bool((r2 >> 12) & 1))
                if result == EXCEPTION_CONTINUE_EXECUTION:
                    committed[i] = True
        except EmmError:
            pass
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, backend.region_count()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", type=int, help="live regions (setup allocations)")
    parser.add_argument("m", type=int, help="calls in the timed loop")
    parser.add_argument("seed", type=int)
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="null")
    args = parser.parse_args(argv)
    if args.n <= 0 or args.m < 0:
        parser.error("N must be positive and M non-negative")
    backend = BACKENDS[args.backend]()
    setup, loop, regions = run(args.n, args.m, args.seed, backend)
    per_call = loop / args.m * 1e6 if args.m else 0.0
    print(f"backend={backend.name} N={args.n} M={args.m} seed={args.seed}")
    print(f"setup_s={setup:.3f}")
    print(f"loop_s={loop:.3f}")
    print(f"us_per_call={per_call:.2f}")
    print(f"regions={regions}")
    print(f"per_call_us={per_call:.3f} regions={regions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

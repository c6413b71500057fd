"""Scale benchmarks: costs that must stay linear, a 1 GiB commit, a million regions.

    python benchmarks/scale_bench.py linear [--allocs 100000] [--threads 10000] [--repeat K]
                                            [--slices 20]
    python benchmarks/scale_bench.py gib [--pages 262144] [--probe-pages 16384] [--repeat K]
    python benchmarks/scale_bench.py regions [--regions 1000000]

`linear`: on the simulated enclave, N one-page COMMIT_NOW allocations through
the API, then their deallocations, and `Enclave.create(threads=N)`, each timed
at N/4 and at N; a linear cost takes 4x as long for 4x the work, and the goal
allows 4.4x. The figure printed is the ratio time(N) / time(N/4). The two
alloc/dealloc sizes run in two enclaves side by side, taking turns in
`--slices` slices, so that the machine's drift falls on both alike.

`gib`: one COMMIT_NOW allocation of 1 GiB on the simulated enclave and its
deallocation (goal: 2 s each), beside this run's cost of one EAUG+EACCEPT pair
(a commit of a COMMIT_ON_DEMAND region: each page's EACCEPT takes the #PF,
the driver EAUGs, the EACCEPT is retried), the platform's own per-page floor;
then Python memory per committed, never-written page (tracemalloc; goal < 16
bytes).

`regions`: the manager alone on the null runtime holding N one-page regions
(goal: one million in at most 1 GB), with the bytes per region printed (the
process's resident set growth, which counts everything the regions need).

Times are wall clock with this process's CPU time beside them: the machine may
be shared, and CPU time is what the code costs. Even CPU time varies by up to
1.5x between back-to-back runs on a shared virtual machine, so `--repeat K`
(linear, gib) runs the sizes interleaved K times and prints the fastest and
slowest CPU time of each as the noise of the run; `gib` judges its fastest run,
`linear` the ratio of the mean CPU times (see `_ratio_line`).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from collections.abc import Callable

PAGE = 0x1000


class Clock:
    """Wall and CPU seconds of the blocks timed with it (one block, or the sum of several
    when a run is timed a slice at a time)."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self.wall0 = self.cpu0 = 0.0

    def __enter__(self) -> Clock:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self.wall0
        self.cpu += time.process_time() - self.cpu0

    def __str__(self) -> str:
        return f"{self.wall:.2f} s (CPU {self.cpu:.2f} s)"


class _OnePageAllocs:
    """One enclave's N one-page COMMIT_NOW allocations, then their deallocations in
    allocation order, run a slice at a time so that two sizes can share the clock."""

    def __init__(self, n: int) -> None:
        import sgx_emm

        self.n = n
        self.enc = sgx_emm.Enclave.create()
        self.addrs: list[int] = []
        self.freed = 0
        self.alloc_clock, self.dealloc_clock = Clock(), Clock()

    def _slice(self, k: int, slices: int) -> int:
        return self.n * (k + 1) // slices - self.n * k // slices

    def alloc_slice(self, k: int, slices: int) -> None:
        from sgx_emm.flags import COMMIT_NOW

        alloc, count, addrs = self.enc.emm.alloc, self._slice(k, slices), self.addrs
        with self.alloc_clock:
            for _ in range(count):
                addrs.append(alloc(None, PAGE, COMMIT_NOW))

    def dealloc_slice(self, k: int, slices: int) -> None:
        dealloc, count = self.enc.emm.dealloc, self._slice(k, slices)
        todo = self.addrs[self.freed:self.freed + count]
        self.freed += count
        with self.dealloc_clock:
            for addr in todo:
                dealloc(addr, PAGE)


def _alloc_dealloc(small_n: int, large_n: int,
                   slices: int) -> tuple[Clock, Clock, Clock, Clock]:
    """(small allocs, small deallocs, large allocs, large deallocs), side by side.

    Each size runs exactly the calls it would run alone, in its own enclave, but the
    two take turns in `slices` slices (which goes first alternates), so a slow stretch
    of a shared machine falls on both sizes alike instead of on whichever happened to
    run then. Both enclaves stay alive until the end: the small size runs beside the
    large one's memory, as the large one always does."""
    small, large = _OnePageAllocs(small_n), _OnePageAllocs(large_n)
    with small.enc.enter(), large.enc.enter():
        for step in ("alloc_slice", "dealloc_slice"):
            for k in range(slices):
                pair = (small, large) if k % 2 == 0 else (large, small)
                for side in pair:
                    getattr(side, step)(k, slices)
    return small.alloc_clock, small.dealloc_clock, large.alloc_clock, large.dealloc_clock


def _create(threads: int) -> Clock:
    import sgx_emm

    with Clock() as c:
        sgx_emm.Enclave.create(threads=threads)
    return c


def _fastest(runs: list[Clock]) -> Clock:
    """The run with the least CPU time: the one the machine's other tenants hurt least."""
    return min(runs, key=lambda c: c.cpu)


def _spread(runs: list[Clock]) -> str:
    best = _fastest(runs)
    if len(runs) == 1:
        return str(best)
    return f"{best} (slowest of {len(runs)}: CPU {max(c.cpu for c in runs):.2f} s)"


def _mean_cpu(runs: list[Clock]) -> float:
    return sum(c.cpu for c in runs) / len(runs)


def _ratio_line(what: str, n: int, small: list[Clock], large: list[Clock]) -> str:
    """The verdict uses the ratio of mean CPU times: the fastest of K short runs is
    biased low (a short run fits a quiet stretch of a shared machine more often
    than a long one), so with K > 1 the ratio of the fastest runs is printed
    beside it only as a bound."""
    lo, hi = _mean_cpu(small), _mean_cpu(large)
    ratio = hi / lo if lo else float("inf")
    verdict = "ok" if ratio <= 4.4 else "MISSED"
    line = (f"{what}: N/4={n // 4}: {_spread(small)}; N={n}: {_spread(large)}; "
            f"ratio {ratio:.2f} (mean CPU; goal <= 4.4, linear = 4.0) {verdict}")
    if len(small) > 1:
        fast = _fastest(large).cpu / _fastest(small).cpu if _fastest(small).cpu else 0.0
        line += f"; fastest runs' ratio {fast:.2f}"
    return line


def bench_linear(allocs: int, threads: int, repeat: int = 1, slices: int = 20) -> None:
    a_small: list[Clock] = []
    d_small: list[Clock] = []
    a_large: list[Clock] = []
    d_large: list[Clock] = []
    t_small: list[Clock] = []
    t_large: list[Clock] = []
    for _ in range(repeat):  # interleaved, so a slow stretch hurts both sizes alike
        gc.collect()
        a, d, a_big, d_big = _alloc_dealloc(allocs // 4, allocs, slices)
        a_small.append(a)
        d_small.append(d)
        a_large.append(a_big)
        d_large.append(d_big)
        gc.collect()
        t_small.append(_create(threads // 4))
        gc.collect()
        t_large.append(_create(threads))
    print(_ratio_line("COMMIT_NOW allocs", allocs, a_small, a_large))
    print(_ratio_line("their deallocs", allocs, d_small, d_large))
    print(_ratio_line("Enclave.create(threads=N)", threads, t_small, t_large))


def bench_gib(pages: int, probe_pages: int, repeat: int = 1) -> None:
    import sgx_emm
    from sgx_emm.flags import COMMIT_NOW, COMMIT_ON_DEMAND

    size = pages * PAGE
    probes: list[Clock] = []
    commits: list[Clock] = []
    frees: list[Clock] = []
    for _ in range(repeat):
        enc = sgx_emm.Enclave.create(epc_pages=pages + probe_pages + 4096)
        with enc.enter():
            emm = enc.emm
            probe = emm.alloc(None, probe_pages * PAGE, COMMIT_ON_DEMAND)
            with Clock() as p:
                emm.commit(probe, probe_pages * PAGE)  # each page: EACCEPT, #PF, EAUG, EACCEPT
            emm.dealloc(probe, probe_pages * PAGE)
            probes.append(p)
            with Clock() as c:
                addr = emm.alloc(None, size, COMMIT_NOW)
            commits.append(c)
            with Clock() as d:
                emm.dealloc(addr, size)
            frees.append(d)
        del enc
        gc.collect()
    per_page = _fastest(probes).cpu / probe_pages
    c, d = _fastest(commits), _fastest(frees)
    mib = size >> 20
    print(f"EAUG+EACCEPT per page (#PF path, {probe_pages} pages): {per_page * 1e6:.2f} us "
          f"CPU -> {per_page * pages:.2f} s for {pages} pages")
    print(f"COMMIT_NOW {mib} MiB: {_spread(commits)} (goal <= 2 s) "
          f"{'ok' if c.cpu <= 2 else 'MISSED'}")
    print(f"its dealloc: {_spread(frees)} (goal <= 2 s) {'ok' if d.cpu <= 2 else 'MISSED'}")
    mem_pages = min(pages, 65536)
    enc = sgx_emm.Enclave.create(epc_pages=mem_pages + 4096)
    with enc.enter():
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        addr = enc.emm.alloc(None, mem_pages * PAGE, COMMIT_NOW)
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    per = (after - before) / mem_pages
    print(f"memory per committed never-written page: {per:.1f} bytes ({mem_pages} pages, "
          f"tracemalloc; goal < 16) {'ok' if per < 16 else 'MISSED'}")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def bench_regions(n: int, report: Callable[[str], None] = print) -> None:
    from sgx_emm.emm import EnclaveMemoryManager
    from sgx_emm.flags import COMMIT_ON_DEMAND
    from sgx_emm.runtime.null import NullRuntime

    base, size = 0x7F00_0000_0000, 1 << 40
    rt = NullRuntime(base, size, record=False)
    mgr = EnclaveMemoryManager(rt, rt.primitives, meta_area_base=base + 0x100000)
    mgr.init(base + size // 2, base + size)
    gc.collect()
    rss0 = _rss()
    with Clock() as c:
        for _ in range(n):
            mgr.alloc(None, PAGE, COMMIT_ON_DEMAND)
    gc.collect()
    grown = _rss() - rss0
    report(f"{mgr.region_count()} regions on the null runtime: resident set grew "
           f"{grown / 2**20:.0f} MiB = {grown / n:.0f} bytes per region; allocs took {c} "
           f"(goal: 1,000,000 in <= 1 GB) {'ok' if grown * 1_000_000 / n <= 1e9 else 'MISSED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    lin = sub.add_parser("linear", help="N vs N/4: allocs, deallocs, threads")
    lin.add_argument("--allocs", type=int, default=100_000)
    lin.add_argument("--threads", type=int, default=10_000)
    lin.add_argument("--repeat", type=int, default=1, help="interleaved runs, fastest kept")
    lin.add_argument("--slices", type=int, default=20,
                     help="turns the two alloc/dealloc sizes take on the clock")
    gib = sub.add_parser("gib", help="1 GiB COMMIT_NOW and dealloc; memory per page")
    gib.add_argument("--pages", type=int, default=262_144)
    gib.add_argument("--probe-pages", type=int, default=16_384)
    gib.add_argument("--repeat", type=int, default=1, help="runs, fastest kept")
    reg = sub.add_parser("regions", help="memory per region on the null runtime")
    reg.add_argument("--regions", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    if args.what == "linear":
        if args.allocs < 4 or args.threads < 4 or args.repeat < 1 or args.slices < 1:
            parser.error("--allocs and --threads must be at least 4, --repeat and --slices "
                         "at least 1")
        bench_linear(args.allocs, args.threads, args.repeat, args.slices)
    elif args.what == "gib":
        if args.pages <= 0 or args.probe_pages <= 0 or args.repeat < 1:
            parser.error("--pages and --probe-pages must be positive, --repeat at least 1")
        bench_gib(args.pages, args.probe_pages, args.repeat)
    else:
        if args.regions <= 0:
            parser.error("--regions must be positive")
        bench_regions(args.regions)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Platform model benchmark: EDMM commit rate, access rate, memory per page.

    python benchmarks/platform_bench.py [--pages 262144] [--accesses 200000]

1. EAUG+EACCEPT pages per second: mmap a 1 GiB range (262,144 pages) of a loaded
   enclave, then EACCEPT each page from inside; every EACCEPT takes the hardware
   path (read #PF 0x4, AEX, kernel EAUG + PTE, ERESUME, EACCEPT again).
   Target: the whole GiB in under 2 s. Wall time is the measure; the CPU time of
   this process is printed beside it because the machine may be shared.
2. Accesses per second on accepted pages (8-byte reads and writes).
3. Bytes of Python memory per committed page nobody wrote (tracemalloc over a
   separate commit of --mem-pages pages). Target: under 200 bytes.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

from sgx_emm.platform import (
    MAP_FIXED,
    MAP_SHARED,
    PROT_READ,
    PROT_WRITE,
    EnclaveThread,
    Machine,
    Run,
    SecsImage,
    TcsImage,
    secinfo_flags,
)
from sgx_emm.platform.secinfo import MISC_EXINFO, PT_REG, PT_TCS

PAGE = 0x1000
ACCEPT_AUG = 0x20B
IMAGE_PAGES = 4           # TCS, SSA x2, data
RW = PROT_READ | PROT_WRITE


def load(machine: Machine, pages: int) -> tuple[int, int, object]:
    """A minimal enclave (one TCS with NSSA 2, its SSA, a data page) with room for
    `pages` dynamic pages above the image. Returns (base, heap start, fd)."""
    size = 1 << ((IMAGE_PAGES + pages) * PAGE - 1).bit_length()
    base = size * max(1, 0x7F00_0000_0000 // size)
    fd = machine.open_enclave()
    fd.create(SecsImage(base, size, ssa_frame_size=1, miscselect=MISC_EXINFO))
    fd.add_pages(0, TcsImage(ossa=PAGE, nssa=2).to_bytes(), secinfo_flags(0, PT_TCS))
    fd.add_pages(PAGE, bytes(3 * PAGE), secinfo_flags(RW, PT_REG))
    fd.init()
    machine.mmap(base, PAGE, RW, MAP_SHARED | MAP_FIXED, fd)
    machine.mmap(base + PAGE, 3 * PAGE, RW, MAP_SHARED | MAP_FIXED, fd)
    heap = base + IMAGE_PAGES * PAGE
    machine.mmap(heap, pages * PAGE, RW, MAP_SHARED | MAP_FIXED, fd)
    return base, heap, fd


def commit(t: EnclaveThread, heap: int, pages: int) -> None:
    eaccept = t.eaccept
    for addr in range(heap, heap + pages * PAGE, PAGE):
        if eaccept(ACCEPT_AUG, addr):
            raise SystemExit(f"EACCEPT failed at {addr:#x}")


def bench_commit(pages: int, accesses: int) -> None:
    machine = Machine(epc_pages=pages + IMAGE_PAGES + 16)
    base, heap, _ = load(machine, pages)
    with machine.vdso.inline(Run(tcs=base)) as t:
        start, cpu_start = time.perf_counter(), time.process_time()
        commit(t, heap, pages)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        print(f"commit: {pages} pages ({pages * PAGE >> 20} MiB) EAUG+EACCEPT in "
              f"{elapsed:.2f} s = {pages / elapsed:,.0f} pages/s, "
              f"{elapsed / pages * 1e6:.1f} us/page (CPU {cpu:.2f} s; "
              f"target: 1 GiB in < 2 s)")
        print(f"  trace: {machine.trace.by_category()['pf']} page faults, "
              f"{machine.trace.total('leaf', 'EAUG')} EAUG")
        span = min(pages, 4096)
        start = time.perf_counter()
        for i in range(accesses // 2):
            addr = heap + (i % span) * PAGE + (i & 0x3F8)
            t.write(addr, b"12345678")
            t.read(addr, 8)
        elapsed = time.perf_counter() - start
        print(f"access: {accesses} 8-byte reads/writes on accepted pages: "
              f"{accesses / elapsed:,.0f} accesses/s")


def bench_memory(pages: int) -> None:
    machine = Machine(epc_pages=pages + IMAGE_PAGES + 16)
    base, heap, _ = load(machine, pages)
    with machine.vdso.inline(Run(tcs=base)) as t:
        t.read(base + 2 * PAGE, 8)   # warm the SSA/TCS paths outside the measurement
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        commit(t, heap, pages)
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    per_page = (after - before) / pages
    print(f"memory: {per_page:.1f} bytes of Python memory per committed untouched page "
          f"({pages} pages, tracemalloc; target: < 200)")
    print(f"  EPC contents allocated: {len(machine.epc.contents)} pages "
          f"(the SSA frame AEX wrote; committed pages hold no buffer)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=262_144)
    parser.add_argument("--accesses", type=int, default=200_000)
    parser.add_argument("--mem-pages", type=int, default=65_536)
    args = parser.parse_args()
    bench_commit(args.pages, args.accesses)
    bench_memory(args.mem_pages)


if __name__ == "__main__":
    main()

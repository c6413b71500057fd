"""Reliability campaigns: they print figures; bounded samples run in pytest.

    python benchmarks/reliability.py fuzz --calls 1000000 [--seed 1]
    python benchmarks/reliability.py threads [--threads 8 --calls 10000]
    python benchmarks/reliability.py failing [--max-k 200]

- fuzz: random calls of the public API, the private one, the C-style `capi` and
  replay input (well-formed and not), with good and bad arguments, and enclave
  reads and writes. Only the documented errors may come out (EmmError,
  EnclaveAbort, EnclaveCrashed; `capi` returns an int; replay reports per line),
  and `enc.check()` runs after every call.
- threads: N enclave threads making mixed calls at once; the books are checked
  whenever all threads meet at a barrier.
- failing: the same workload again and again, with the k-th ocall or ioctl made
  to fail (k = 1, 2, ...); after each failure the books must still agree.

Every difference found is printed with the call that left it.
"""

from __future__ import annotations

import argparse
import errno
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sgx_emm import EmmError, Enclave, EnclaveAbort, EnclaveCrashed, capi, replay
from sgx_emm.flags import (
    COMMIT_NOW,
    COMMIT_ON_DEMAND,
    FIXED,
    GROWSDOWN,
    GROWSUP,
    PAGE_SIZE,
    PAGE_TYPE_REG,
    PAGE_TYPE_SS_FIRST,
    PAGE_TYPE_SS_REST,
    PAGE_TYPE_TCS,
    RESERVE,
    SYSTEM,
)
from sgx_emm.hostile import victims
from sgx_emm.hostile.base import Marks
from sgx_emm.platform import TcsImage
from sgx_emm.runtime.urts import UntrustedRuntime

P = PAGE_SIZE
WINDOW = 48          # pages of the user range the fuzzer aims at
DOCUMENTED = (EmmError, EnclaveAbort, EnclaveCrashed)


@dataclass
class Figures:
    """What a campaign counted."""

    calls: int = 0
    results: Counter[str] = field(default_factory=Counter)
    undocumented: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    enclaves: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        rate = self.calls / self.seconds if self.seconds else 0.0
        top = ", ".join(f"{k} {v}" for k, v in self.results.most_common(8))
        return (f"{self.calls} calls in {self.seconds:.1f} s ({rate:,.0f}/s), "
                f"{self.enclaves} enclaves; undocumented exceptions: "
                f"{len(self.undocumented)}; books differing: {len(self.differences)}; "
                f"results: {top}")


def small_enclave(**extra: Any) -> Enclave:
    options: dict[str, Any] = {"size": 1 << 28, "epc_pages": 2048, "threads": 2}
    options.update(extra)
    return Enclave.create(**options)


# ------------------------------------------------------------------ fuzz
class Fuzzer:
    """One random call at a time against one enclave (a new one after a crash)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.figures = Figures()
        self.enc = self._new()

    def _new(self) -> Enclave:
        self.figures.enclaves += 1
        return small_enclave()

    def addr(self) -> int:
        rng, enc = self.rng, self.enc
        pick = rng.random()
        if pick < 0.75:
            return enc.user_base + 0x100000 + rng.randrange(WINDOW) * P
        regions = enc.emm.regions()
        if pick < 0.9 and regions:
            return rng.choice(regions).start
        return rng.choice([enc.base, enc.base + 0x1000, enc.base + enc.size, 0, 8,
                           enc.user_end - P, enc.user_base + 0x100010, 1 << 63])

    def size(self) -> int:
        return self.rng.choice([P, P, 2 * P, 3 * P, 8 * P, 0, 0x800, 1 << 62])

    def flags(self) -> int:
        rng = self.rng
        mode = rng.choice([COMMIT_ON_DEMAND, COMMIT_ON_DEMAND, COMMIT_NOW, RESERVE, 0,
                           RESERVE | COMMIT_NOW])
        extra = rng.choice([0, 0, FIXED, GROWSDOWN, GROWSUP, SYSTEM, 0x300 << 16])
        ptype = rng.choice([0, 0, PAGE_TYPE_REG, PAGE_TYPE_SS_FIRST, PAGE_TYPE_SS_REST,
                            PAGE_TYPE_TCS, 0x700])
        align = rng.choice([0, 0, 0, 13 << 24, 11 << 24])
        return mode | extra | ptype | align

    def prot(self) -> int:
        return self.rng.choice([0, 1, 3, 5, 7, 2, 4, 8])

    def one(self) -> str:
        """Make one random call; returns its result's name."""
        rng, enc = self.rng, self.enc
        emm = enc.emm
        op = rng.choice(["alloc", "alloc", "dealloc", "commit", "uncommit", "commit_data",
                         "modify_permissions", "modify_type", "read", "write", "capi",
                         "private"])
        with enc.enter() as t:
            if op == "alloc":
                addr = None if rng.random() < 0.4 else self.addr()
                emm.alloc(addr, self.size(), self.flags())
            elif op in ("dealloc", "commit", "uncommit"):
                getattr(emm, op)(self.addr(), self.size())
            elif op == "commit_data":
                emm.commit_data(self.addr(), self.size(), self.addr(), self.prot())
            elif op == "modify_permissions":
                emm.modify_permissions(self.addr(), self.size(), self.prot())
            elif op == "modify_type":
                a = self.addr()
                if rng.random() < 0.5 and self._accessible(a, True):
                    t.write(a, TcsImage(ossa=0, nssa=1).to_bytes())
                emm.modify_type(a, rng.choice([P, P, 2 * P]),
                                rng.choice([PAGE_TYPE_TCS, PAGE_TYPE_REG]))
            elif op in ("read", "write"):
                a = self.addr() + rng.choice([0, 0, 16, P - 1])
                if not self._accessible(a, op == "write") and rng.random() < 0.97:
                    return "skipped"
                if op == "read":
                    t.read(a, rng.choice([1, 8, 2]))
                else:
                    t.write(a, bytes([rng.randrange(1, 256)]) * rng.choice([1, 8]))
            elif op == "capi":
                ret = rng.choice([
                    lambda: capi.sgx_mm_alloc(self.addr(), self.size(), self.flags())[0],
                    lambda: capi.sgx_mm_dealloc(self.addr(), self.size()),
                    lambda: capi.sgx_mm_commit(self.addr(), self.size()),
                    lambda: capi.sgx_mm_modify_permissions(self.addr(), self.size(),
                                                           self.prot()),
                ])()
                return f"capi:{errno.errorcode.get(ret, ret) if ret else 0}"
            else:
                emm.mm_alloc(None, self.size(), self.flags() | SYSTEM)
        return "0"

    def _accessible(self, addr: int, write: bool) -> bool:
        for r in self.enc.emm.regions():
            if r.start <= addr < r.end:
                if r.alloc_flags & RESERVE or r.page_type == PAGE_TYPE_TCS:
                    return False
                need = 2 if write else 1
                index = (addr - r.start) // P
                committed = r.committed[index]
                return bool(r.prot & need) and (committed or bool(
                    r.alloc_flags & COMMIT_ON_DEMAND))
        return False

    def step(self) -> None:
        f = self.figures
        f.calls += 1
        try:
            name = self.one()
        except EmmError as exc:
            name = exc.result_name
        except (EnclaveAbort, EnclaveCrashed) as exc:
            f.results[type(exc).__name__] += 1
            self.enc = self._new()
            return
        except Exception as exc:   # the bug this campaign looks for
            f.undocumented.append(f"call {f.calls}: {type(exc).__name__}: {exc}")
            self.enc = self._new()
            return
        f.results[name] += 1
        diffs = self.enc.check()
        if diffs:
            f.differences.append(f"call {f.calls} ({name}): {diffs[0]}")
            self.enc = self._new()

    def replay_batch(self, lines: int) -> None:
        """Random replay input (some of it malformed) through `replay.run`."""
        rng = self.rng
        ops = ["alloc", "commit", "uncommit", "dealloc", "read", "write", "fault",
               "modify_permissions", "bogus"]
        text = []
        for i in range(lines):
            op = rng.choice(ops)
            if rng.random() < 0.05:
                text.append("{not json")
                continue
            addr = rng.choice(["null", '"u+0x100000"', f'"${max(i - 1, 0)}"', '"0x10"'])
            size = rng.choice(["0x1000", "0x2000", "0"])
            flags = rng.choice(["COMMIT_ON_DEMAND", "COMMIT_NOW", "RESERVE", "NOPE"])
            prot = rng.choice(["READ", "READ|WRITE", "NONE"])
            text.append(f'{{"op": "{op}", "addr": {addr}, "size": "{size}", '
                        f'"flags": "{flags}", "prot": "{prot}", "data": "ab"}}')
        f = self.figures
        f.calls += lines
        try:
            report = replay.run(text, size=1 << 28, epc_pages=2048, threads=2)
        except Exception as exc:
            f.undocumented.append(f"replay batch at call {f.calls}: {type(exc).__name__}: {exc}")
            return
        f.enclaves += 1
        f.results["replay lines"] += lines
        enc = getattr(report, "enclave", None)
        if enc is not None and not enc.crashed:
            diffs = enc.check()
            if diffs:
                f.differences.append(f"replay batch at call {f.calls}: {diffs[0]}")


def fuzz(calls: int, seed: int = 1) -> Figures:
    fuzzer = Fuzzer(seed)
    start = time.perf_counter()
    while fuzzer.figures.calls < calls:
        if fuzzer.rng.random() < 0.002:
            fuzzer.replay_batch(min(40, calls - fuzzer.figures.calls))
        else:
            fuzzer.step()
    fuzzer.figures.seconds = time.perf_counter() - start
    return fuzzer.figures


# ------------------------------------------------------------------ threads
def threads(n: int = 8, calls: int = 10_000, seed: int = 1, rounds: int = 20) -> Figures:
    """`n` enclave threads making `calls` mixed calls each; books checked per round."""
    enc = small_enclave(threads=n + 1, epc_pages=8192)
    figures = Figures(enclaves=1)
    lock = threading.Lock()

    def check() -> None:
        diffs = enc.check()
        if diffs:
            figures.differences.append(f"after {figures.calls} calls: {diffs[0]}")

    barrier = threading.Barrier(n, action=check)
    per_round = max(1, calls // rounds)

    def worker(k: int) -> None:
        rng = random.Random(seed * 1000 + k)
        mine: dict[int, bool] = {}
        done = 0
        with enc.enter() as t:
            while done < calls:
                for _ in range(min(per_round, calls - done)):
                    name = _thread_call(enc, t, rng, mine)
                    with lock:
                        figures.calls += 1
                        figures.results[name] += 1
                done += per_round
                try:
                    barrier.wait(timeout=120)
                except threading.BrokenBarrierError:
                    return

    start = time.perf_counter()
    workers = [threading.Thread(target=worker, args=(k,)) for k in range(n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    figures.seconds = time.perf_counter() - start
    check()
    return figures


def _thread_call(enc: Enclave, t: Any, rng: random.Random, mine: dict[int, bool]) -> str:
    """One call on this thread's own regions (`mine`: address -> writable)."""
    emm = enc.emm
    try:
        op = rng.random()
        if op < 0.25 or not mine:
            mine[emm.alloc(None, rng.choice([P, 2 * P, 4 * P]), COMMIT_ON_DEMAND)] = True
            return "0"
        a = rng.choice(list(mine))
        if op < 0.55:
            if mine[a]:
                t.write(a, b"x")
                if t.read(a, 1) != b"x":
                    return "CORRUPTED"
            else:
                t.read(a, 1)
        elif op < 0.7:
            prot = rng.choice([1, 3])
            emm.modify_permissions(a, P, prot)
            mine[a] = prot == 3
        elif op < 0.8:
            emm.uncommit(a, P)
        elif op < 0.9:
            emm.commit(a, P)
        else:
            del mine[a]
            emm.dealloc(a, P)
        return "0"
    except EmmError as exc:
        return exc.result_name


# ------------------------------------------------------------------ failing
class FailsAtK(UntrustedRuntime):
    """The honest runtime whose k-th ocall or ioctl (counted together) fails."""

    k = 0
    seen = 0
    failed = ""

    def _tick(self, what: str) -> bool:
        self.seen += 1
        if self.seen == self.k:
            self.failed = what
            return True
        return False

    def alloc_ocall(self, addr: int, length: int, page_type: int, alloc_flags: int) -> int:
        if self._tick("alloc_ocall"):
            return errno.EFAULT
        return super().alloc_ocall(addr, length, page_type, alloc_flags)

    def modify_ocall(self, addr: int, length: int, flags_from: int, flags_to: int) -> int:
        if self._tick("modify_ocall"):
            return errno.EFAULT
        return super().modify_ocall(addr, length, flags_from, flags_to)

    def restrict_permissions(self, addr: int, length: int, prot: int) -> None:
        if self._tick("RESTRICT_PERMISSIONS"):
            raise OSError(errno.EIO, "injected ioctl failure")
        super().restrict_permissions(addr, length, prot)

    def modify_types(self, addr: int, length: int, page_type: int) -> None:
        if self._tick("MODIFY_TYPES"):
            raise OSError(errno.EIO, "injected ioctl failure")
        super().modify_types(addr, length, page_type)

    def remove_pages(self, addr: int, length: int) -> None:
        if self._tick("REMOVE_PAGES"):
            raise OSError(errno.EIO, "injected ioctl failure")
        super().remove_pages(addr, length)


WORKLOAD: tuple[Callable[..., None], ...] = (
    victims.commit, victims.restrict, victims.trim, victims.tcs, victims.commit_data)


def failing(max_k: int = 200) -> Figures:
    """Run the workload with the k-th ocall/ioctl failing, k = 1..max_k."""
    figures = Figures()
    start = time.perf_counter()
    for k in range(1, max_k + 1):
        enc = small_enclave()
        figures.enclaves += 1
        urts = FailsAtK(enc.machine.kernel, enc.fd)
        urts.k = k
        enc.use_untrusted_runtime(urts)
        try:
            with enc.enter() as t:
                for victim in WORKLOAD:
                    figures.calls += 1
                    victim(enc, t, Marks())
            name = "completed"
        except EmmError as exc:
            name = f"{urts.failed} -> {exc.result_name}"
        except (EnclaveAbort, EnclaveCrashed) as exc:
            name = f"{urts.failed} -> {type(exc).__name__}"
        except Exception as exc:
            figures.undocumented.append(f"k={k} ({urts.failed}): {type(exc).__name__}: {exc}")
            continue
        figures.results[name] += 1
        if not enc.crashed:
            diffs = enc.check()
            if diffs:
                figures.differences.append(f"k={k} ({urts.failed}): {diffs[0]}")
        if not urts.failed:
            break      # k is past the workload's last ocall: every point was tried
    figures.seconds = time.perf_counter() - start
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="campaign", required=True)
    p_fuzz = sub.add_parser("fuzz")
    p_fuzz.add_argument("--calls", type=int, default=1_000_000)
    p_fuzz.add_argument("--seed", type=int, default=1)
    p_threads = sub.add_parser("threads")
    p_threads.add_argument("--threads", type=int, default=8)
    p_threads.add_argument("--calls", type=int, default=10_000)
    p_fail = sub.add_parser("failing")
    p_fail.add_argument("--max-k", type=int, default=400)
    args = parser.parse_args(argv)
    if args.campaign == "fuzz":
        figures = fuzz(args.calls, args.seed)
    elif args.campaign == "threads":
        figures = threads(args.threads, args.calls)
    else:
        figures = failing(args.max_k)
    print(f"{args.campaign}: {figures.line()}")
    for text in figures.undocumented[:10] + figures.differences[:10]:
        print("  " + text)
    return 1 if figures.undocumented or figures.differences else 0


if __name__ == "__main__":
    sys.exit(main())

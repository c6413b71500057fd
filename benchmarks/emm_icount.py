"""The manager benchmark's work per call in machine instructions, which this VM's noise
does not move.

    python benchmarks/emm_icount.py 1000,50000 [M] [--seed S]

For each N, runs emm_bench's workload on the null runtime twice under valgrind's
callgrind: the N-region setup followed by the first M of the drawn calls, and the
setup alone (the same M calls are drawn in both runs, so the PRNG cancels out).
The difference divided by M is the instructions per call of the timed loop;
prints `N=<n> instructions_per_call=<int>`. CPU time on this shared VM varies by
up to 1.5x between runs of the same code; instruction counts repeat within a
fraction of a percent (string hashing is fixed), so they tell whether a change
removed work. Needs
valgrind; about a minute per size at M = 5000.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

import emm_bench


def _inner(n: int, m: int, total: int, seed: int) -> None:
    """The measured process: draw `total` calls, run the setup and the first `m`."""
    seq = emm_bench.draws(total, seed, n)
    emm_bench.run_sequence(n, seq[:m], emm_bench.make_null_backend())


def _instructions(n: int, m: int, total: int, seed: int, workdir: str) -> int:
    out = os.path.join(workdir, f"cg.{n}.{m}")
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
            os.path.abspath(__file__), "--inner", str(n), str(m), str(total), str(seed)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts in every run
    res = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    found = re.search(r"Collected : (\d+)", res.stderr)
    if res.returncode or not found:
        raise SystemExit(f"valgrind failed for N={n} M={m}:\n{res.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--inner"]:  # the process valgrind measures
        n, m, total, seed = (int(x) for x in argv[1:5])
        _inner(n, m, total, seed)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", help="live regions: an integer or a comma list")
    parser.add_argument("m", type=int, nargs="?", default=5000, help="calls measured")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt-get install valgrind)")
    try:
        sizes = [int(x) for x in args.n.split(",")]
    except ValueError:
        parser.error(f"N must be an integer or a comma list of integers, not {args.n!r}")
    if any(n <= 0 for n in sizes) or args.m <= 0:
        parser.error("N and M must be positive")
    with tempfile.TemporaryDirectory() as workdir:
        for n in sizes:
            loop = _instructions(n, args.m, args.m, args.seed, workdir)
            setup = _instructions(n, 0, args.m, args.seed, workdir)
            print(f"N={n} instructions_per_call={(loop - setup) // args.m}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Replay output at scale: text against JSON on one long generated call sequence.

    python benchmarks/replay_bench.py [--lines 100000] [--seed 1] [--keep FILE]

Writes a replay of N lines (half one-page COMMIT_ON_DEMAND allocs, the rest
writes, commits and reads of live regions and a tenth deallocs, drawn from a
seeded PRNG), then runs `sgx-emm replay FILE --format json` and `--format text`
in child processes with stdout to a file, as a user redirecting output would.
Prints each run's wall time, CPU time and peak resident set, the text / JSON CPU
ratio (goal: at most 1.5) and the text run's peak memory (goal: under 300 MB),
and how many lines the text region map took for how many regions.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def generate(lines: int, seed: int) -> str:
    """The call sequence, one JSON object per line (line K's address is `$K`)."""
    rng = random.Random(seed)
    live: list[int] = []
    out = []
    for i in range(lines):
        r = rng.random()
        if r < 0.5 or len(live) < 10:
            out.append('{"op": "alloc", "addr": null, "size": "0x1000", '
                       '"flags": "COMMIT_ON_DEMAND"}')
            live.append(i)
        elif r < 0.7:
            out.append(f'{{"op": "write", "addr": "${rng.choice(live)}", "data": "01"}}')
        elif r < 0.8:
            out.append(f'{{"op": "commit", "addr": "${rng.choice(live)}", "size": "0x1000"}}')
        elif r < 0.9:
            out.append(f'{{"op": "read", "addr": "${rng.choice(live)}", "size": 1}}')
        else:
            j = live.pop(rng.randrange(len(live)))
            out.append(f'{{"op": "dealloc", "addr": "${j}", "size": "0x1000"}}')
    return "\n".join(out) + "\n"


def run_cli(path: Path, fmt: str, out: Path) -> tuple[float, float, int]:
    """(wall s, CPU s, peak RSS bytes) of one CLI replay in a child process."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parent.parent / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    argv = [sys.executable, "-m", "sgx_emm.cli", "replay", str(path), "--format", fmt]
    with out.open("w") as fh:
        start = time.perf_counter()
        child = subprocess.Popen(argv, stdout=fh, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{' '.join(argv)} exited with {child.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", metavar="FILE", help="also save the generated replay here")
    args = parser.parse_args(argv)
    if args.lines <= 0:
        parser.error("--lines must be positive")
    text = generate(args.lines, args.seed)
    if args.keep:
        Path(args.keep).write_text(text)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "calls.jsonl"
        path.write_text(text)
        figures = {}
        for fmt in ("json", "text"):
            out = Path(tmp) / f"out.{fmt}"
            figures[fmt] = run_cli(path, fmt, out)
            wall, cpu, rss = figures[fmt]
            print(f"{fmt:>4}: {wall:.1f} s (CPU {cpu:.1f} s), peak {rss / 2**20:.0f} MiB")
            if fmt == "text":
                lines = out.read_text().splitlines()
                first = next(i for i, line in enumerate(lines) if line == "region map")
                rows = next((i for i in range(first, len(lines)) if not lines[i].strip()),
                            len(lines)) - first - 3
                regions = sum(1 for line in lines[:first] if " alloc " in line) - sum(
                    1 for line in lines[:first] if " dealloc " in line)
                print(f"      region map: {rows} rows for about {regions} user regions "
                      "(runs of alike neighbours folded)")
    ratio = figures["text"][1] / figures["json"][1]
    peak = figures["text"][2]
    print(f"text / JSON CPU: {ratio:.2f} (goal <= 1.5) {'ok' if ratio <= 1.5 else 'MISSED'}")
    print(f"text peak memory: {peak / 2**20:.0f} MiB (goal < 300 MB) "
          f"{'ok' if peak < 300e6 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

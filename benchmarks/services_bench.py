"""What each growth policy costs the bundled service workloads.

Replays every bundled workload (a JSON parser's heap pattern, a thread pool, a
JIT warm-up, and the tour) under each growth policy on a fresh simulated
enclave, and prints, per workload and policy, the ENCLS/ENCLU leaves, the
ocalls, the enclave exits (EEXIT: every ocall and ecall return leaves the
enclave; an AEX is counted apart) and the page faults (AEXs) it caused. These
are the costs EDMM measurements on hardware weigh: each leaf, exit and fault is
thousands of cycles.

    python benchmarks/services_bench.py            # the table, as Markdown
    python benchmarks/services_bench.py --workload json_parser
"""

from __future__ import annotations

import argparse
from importlib import resources

from sgx_emm.replay import run
from sgx_emm.services import EnclaveConfig, GrowthPolicy

WORKLOADS = ("json_parser", "thread_pool", "jit_warmup", "tour")

#: name -> (what it changes, the policy)
POLICIES: dict[str, tuple[str, GrowthPolicy]] = {
    "default": ("heap grows 16 KiB at a time, trims past 64 KiB free", GrowthPolicy()),
    "step-4k": ("heap grows one page at a time", GrowthPolicy(heap_step=0x1000)),
    "step-64k": ("heap grows 64 KiB at a time", GrowthPolicy(heap_step=0x10000)),
    "fault": ("heap pages committed by their first touch (#PF)",
              GrowthPolicy(heap_commit="fault")),
    "fault-8": ("heap fault mode, each fault commits 8 pages up (GROWSUP batch)",
                GrowthPolicy(heap_commit="fault", heap_fault_pages=8)),
    "no-trim": ("the heap never gives pages back", GrowthPolicy(heap_trim_threshold=0)),
    "stack-4": ("a stack fault commits 4 pages (GROWSDOWN batch)",
                GrowthPolicy(stack_fault_pages=4)),
}


def measure(workload: str, policy: GrowthPolicy) -> dict[str, int]:
    text = (resources.files("sgx_emm") / "examples" / f"{workload}.jsonl").read_text("utf-8")
    config = EnclaveConfig(heap_max_size=0x100000, policy=policy)
    # count only what the workload causes, not the loading of the enclave
    report = run(text.splitlines(), config=config, size=1 << 30, epc_pages=8192)
    assert report.unexpected == 0 and report.errors == 0, (workload, report.unexpected)
    leaves = ocalls = exits = faults = 0
    for result in report.results:
        counts = result.counts
        leaves += sum(counts.get("leaf", {}).values())
        ocalls += sum(counts.get("ocall", {}).values())
        exits += counts.get("entry", {}).get("EEXIT", 0)
        faults += sum(counts.get("aex", {}).values())
    return {"leaves": leaves, "ocalls": ocalls, "exits": exits, "faults": faults}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=WORKLOADS, action="append")
    args = parser.parse_args()
    print("| workload | policy | leaves | ocalls | exits | faults |")
    print("|---|---|---:|---:|---:|---:|")
    for workload in args.workload or WORKLOADS:
        for name, (_why, policy) in POLICIES.items():
            got = measure(workload, policy)
            print(f"| {workload} | {name} | {got['leaves']} | {got['ocalls']} | "
                  f"{got['exits']} | {got['faults']} |")
    print()
    for name, (why, _policy) in POLICIES.items():
        print(f"- {name}: {why}")


if __name__ == "__main__":
    main()

"""Bounded samples of the reliability campaigns (benchmarks/reliability.py).

The full campaigns (a million fuzzed calls, 8 threads x 10,000 calls, every
ocall and ioctl failing in turn) print figures outside the suite; here each runs
small and must find no undocumented exception and no books differing from the
hardware.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import reliability  # noqa: E402


def test_fuzz_sample_raises_only_documented_errors_and_keeps_the_books() -> None:
    figures = reliability.fuzz(400, seed=7)
    assert figures.calls >= 400
    assert figures.undocumented == [] and figures.differences == []
    assert figures.results["EINVAL"] > 0   # bad input was tried, and refused


def test_threads_sample_keeps_the_books() -> None:
    figures = reliability.threads(4, 150, rounds=3)
    assert figures.calls == 600
    assert figures.undocumented == [] and figures.differences == []
    assert figures.results["CORRUPTED"] == 0


def test_every_ocall_and_ioctl_failing_in_turn_keeps_the_books() -> None:
    figures = reliability.failing(max_k=12)
    assert figures.undocumented == [] and figures.differences == []
    assert sum(figures.results.values()) == figures.enclaves
    assert any("->" in name for name in figures.results)


def test_the_script_prints_figures(capsys: object) -> None:
    assert reliability.main(["failing", "--max-k", "3"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert out.startswith("failing: ") and "books differing: 0" in out

"""The attack library: every attack runs against its victim and none goes unnoticed.

A SILENT row (the victim read data it did not write, the books disagree with the
hardware after a run that looked fine, or an undocumented exception escaped) is
a failing test. Individual attacks pin the outcome the guarantee promises.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from sgx_emm.cli import main
from sgx_emm.hostile import ATTACKS, Outcome, attack, run_all, run_attack
from sgx_emm.hostile.base import Attack, Corrupted, Marks, Switch, judge
from sgx_emm.hostile.suite import counts


@pytest.fixture(scope="module")
def results() -> dict[str, object]:
    return {r.attack: r for r in run_all()}


def test_no_attack_goes_unnoticed(results: dict[str, object]) -> None:
    silent = [r for r in results.values() if r.outcome is Outcome.SILENT]  # type: ignore[attr-defined]
    assert silent == []


def test_every_attack_states_its_guarantee_and_family() -> None:
    assert len(ATTACKS) >= 35
    for a in ATTACKS.values():
        assert a.guarantee and a.does and a.family
        assert a.name.split(".")[0] in ("urts", "driver", "pte", "paging", "threads", "channel")


@pytest.mark.parametrize(("name", "outcome", "detail"), [
    ("urts.skip-restrict", Outcome.DETECTED, "SGX_PAGE_ATTRIBUTES_MISMATCH"),
    ("urts.skip-trim", Outcome.DETECTED, "abort"),
    ("urts.skip-remove", Outcome.DETECTED, "abort"),
    ("urts.map-read-only", Outcome.DETECTED, "crash"),
    ("urts.keep-mapping-writable", Outcome.NO_EFFECT, "own data"),
    ("driver.skip-emodpr", Outcome.DETECTED, "SGX_PAGE_ATTRIBUTES_MISMATCH"),
    ("driver.withhold-etrack", Outcome.DETECTED, "SGX_NOT_TRACKED"),
    ("driver.eaug-outside-mmap", Outcome.NO_EFFECT, "own data"),
    ("driver.eremove-behind-back", Outcome.DETECTED, "crash"),
    ("pte.swap", Outcome.DETECTED, "crash"),
    ("pte.redirect-commit-data", Outcome.DETECTED, "EACCEPTCOPY"),
    ("threads.withhold-ipi", Outcome.DETECTED, "SGX_NOT_TRACKED"),
    ("paging.replay-old", Outcome.DETECTED, "ELDU of 0x"),
    ("paging.forge", Outcome.DETECTED, "SGX_MAC_COMPARE_FAIL (9)"),
    ("paging.relabel", Outcome.DETECTED, "SGX_MAC_COMPARE_FAIL (9)"),
    ("paging.evict-storm", Outcome.NO_EFFECT, "own data"),
    ("channel.page-trace", Outcome.LEAKS, "0x5ec2e7a9"),
])
def test_outcomes_the_guarantees_promise(results: dict[str, object], name: str,
                                         outcome: Outcome, detail: str) -> None:
    r = results[name]
    assert r.outcome is outcome, r  # type: ignore[attr-defined]
    assert detail in r.detail  # type: ignore[attr-defined]


def test_the_judge_calls_a_corrupted_victim_silent() -> None:
    def victim(enc: object, t: object, marks: Marks) -> None:
        marks.expect(False, "page 3 reads back")

    fake = Attack("urts.fake", "untrusted runtime", "nothing", "none", "commit",
                  lambda enc, marks: Switch())
    from sgx_emm import Enclave

    enc = Enclave.create(size=1 << 30, epc_pages=2048, threads=2)

    def run() -> None:
        with enc.enter() as t:
            victim(enc, t, Marks())

    r = judge(fake, run, enc, Switch())
    assert r.outcome is Outcome.SILENT and "page 3" in r.detail
    with pytest.raises(Corrupted):
        Marks.expect(False, "x")


def test_unknown_attack_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="urts.skip-mmap"):
        attack("no.such")


def test_one_attack_runs_alone() -> None:
    r = run_attack(attack("urts.skip-tcs"))
    assert r.outcome is Outcome.DETECTED and r.books == "agree"


def test_cli_attacks_json_and_text() -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["attacks", "--format", "json", "--only", "urts."])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert {row["attack"] for row in doc["attacks"]} == {
        n for n in ATTACKS if n.startswith("urts.")}
    assert doc["counts"]["SILENT"] == 0
    assert set(doc["attacks"][0]) == {"attack", "family", "guarantee", "outcome", "detail",
                                      "books"}
    text = runner.invoke(main, ["attacks", "--only", "urts.skip-trim"])
    assert text.exit_code == 0 and "urts.skip-trim" in text.output and "1 attacks" in text.output
    listed = runner.invoke(main, ["attacks", "--list"])
    assert listed.exit_code == 0 and len(listed.output.splitlines()) == len(ATTACKS)
    bad = runner.invoke(main, ["attacks", "--only", "nope"])
    assert bad.exit_code == 2 and "no attack matches" in bad.output


def test_a_detected_commit_data_leaves_the_books_equal_to_the_hardware(
        results: dict[str, object]) -> None:
    assert results["pte.redirect-commit-data"].books == "agree"  # type: ignore[attr-defined]


def test_counts_cover_every_outcome(results: dict[str, object]) -> None:
    c = counts(results.values())  # type: ignore[arg-type]
    assert list(c) == [o.value for o in Outcome]
    assert sum(c.values()) == len(ATTACKS)

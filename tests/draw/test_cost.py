"""The cost model: lookups, overrides from files, and the summary of a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sgx_emm.cost import DEFAULT_CYCLES, CostModel, summarize


def test_lookup_prefers_exact_then_bare_name_then_category() -> None:
    m = CostModel({"leaf:EAUG": 10, "EACCEPT": 7, "leaf:*": 3})
    assert m.of("leaf", "EAUG") == 10
    assert m.of("leaf", "EACCEPT") == 7
    assert m.of("leaf", "EMODPE") == 3
    assert m.of("nothing", "known") == 0


def test_defaults_cover_every_kind_the_issue_names() -> None:
    m = CostModel()
    for cat, name in [("entry", "EENTER"), ("entry", "EEXIT"), ("aex", "#PF"),
                      ("entry", "ERESUME"), ("leaf", "EAUG"), ("leaf", "EACCEPT"),
                      ("leaf", "ETRACK"), ("pf", "0x4"), ("ioctl", "REMOVE_PAGES"),
                      ("syscall", "mmap"), ("syscall", "mprotect")]:
        assert m.of(cat, name) > 0, (cat, name)
    # an ecall round trip lands in the published 8k-12k cycle range
    assert 8_000 <= m.of("entry", "EENTER") + m.of("entry", "EEXIT") <= 12_000


def test_micros_follow_the_clock() -> None:
    assert CostModel(ghz=2.0).micros(4_000) == pytest.approx(2.0)


@pytest.mark.parametrize("suffix,text", [
    (".toml", 'ghz = 2.0\n[cycles]\n"leaf:EAUG" = 1\nEACCEPT = 2\n'),
    (".json", json.dumps({"ghz": 2.0, "leaf:EAUG": 1, "cycles": {"EACCEPT": 2}})),
])
def test_overrides_from_a_file(tmp_path: Path, suffix: str, text: str) -> None:
    path = tmp_path / f"costs{suffix}"
    path.write_text(text)
    m = CostModel.from_file(path)
    assert m.ghz == 2.0
    assert m.of("leaf", "EAUG") == 1
    assert m.of("leaf", "EACCEPT") == 2
    assert m.of("leaf", "EMODPR") == DEFAULT_CYCLES["leaf:EMODPR"]   # the rest stays


@pytest.mark.parametrize("text,why", [
    ('{"leaf:EAUG": -1}', "whole number"),
    ('{"leaf:EAUG": "many"}', "whole number"),
    ('{"ghz": 0}', "ghz"),
    ('[1, 2]', "table"),
    ('{"cycles": 3}', "table"),
    ('{not json', "cannot parse"),
])
def test_bad_files_are_refused_with_the_reason(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=why):
        CostModel.from_file(path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        CostModel.from_file(tmp_path / "none.toml")


def test_summary_adds_calls_and_kinds() -> None:
    m = CostModel({"leaf:EAUG": 100, "call:*": 10})
    s = summarize([(0, "commit", {"leaf": {"EAUG": 2}}), (1, "read", {})], m)
    assert s.per_call == [(0, "commit", 210), (1, "read", 10)]
    assert s.total == 220
    kinds = {k: (n, c) for k, n, c in s.kinds_by_cost()}
    assert kinds["leaf:EAUG"] == (2, 200)
    assert kinds["call:commit"] == (1, 10)
    assert s.to_json()["total_cycles"] == 220


def test_the_docs_list_every_default_with_its_value() -> None:
    """docs/cost-model.md is where each figure's source is: it must stay in step."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "cost-model.md").read_text()
    listed = {}
    for line in doc.splitlines():
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        if len(parts) == 3 and parts[0].startswith("`") and parts[1].isdigit():
            listed[parts[0].strip("`")] = int(parts[1])
    assert listed == DEFAULT_CYCLES

"""Docs stand alone, public calls say what they do, values read as C programmers write them."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import sgx_emm
from sgx_emm import capi
from sgx_emm.emm import EnclaveMemoryManager
from sgx_emm.emm.regions import CommittedView, Region
from sgx_emm.flags import COMMIT_NOW, FIXED, PROT_NONE, PROT_READ, PROT_WRITE, AllocFlags
from sgx_emm.guard import GuardedManager

ROOT = Path(__file__).resolve().parents[1]


def test_docs_do_not_point_outside_the_package() -> None:
    pattern = re.compile(r"spec/|python-api|design\.md|\.\./shared|platform\.md|replay-format")
    files = [*ROOT.joinpath("src", "sgx_emm").rglob("*.py"), *ROOT.joinpath("docs").glob("*.md"),
             ROOT / "README.md"]
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in files
            for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert hits == []


def test_public_calls_have_docstrings() -> None:
    owners = [EnclaveMemoryManager, GuardedManager, sgx_emm.Enclave]
    missing = [f"{cls.__name__}.{name}" for cls in owners
               for name, f in vars(cls).items()
               if not name.startswith("_") and inspect.isfunction(f) and not f.__doc__]
    missing += [name for name, f in vars(capi).items()
                if not name.startswith("_") and inspect.isfunction(f)
                and f.__module__ == capi.__name__ and not f.__doc__]
    assert missing == []


def test_version_is_a_string() -> None:
    assert isinstance(sgx_emm.__version__, str) and sgx_emm.__version__


def test_flags_read_like_c_and_stay_integers() -> None:
    assert str(COMMIT_NOW | FIXED) == "COMMIT_NOW|FIXED"
    assert str(PROT_READ | PROT_WRITE) == "PROT_READ_WRITE" and str(PROT_NONE) == "PROT_NONE"
    assert str(AllocFlags(0x142)) == "COMMIT_NOW|FIXED|0x100"
    assert COMMIT_NOW | FIXED == 0x42 and f"{COMMIT_NOW | FIXED:#x}" == "0x42"
    assert int(FIXED) == 64 and str(int(FIXED)) == "64"


def test_region_repr_is_hex() -> None:
    region = Region(0x7F0800020000, 0x2000, 0x4, 0x203, CommittedView(2, (0, 1)))
    text = repr(region)
    assert "start=0x7f0800020000" in text and "size=0x2000" in text
    assert "si_flags=0x203" in text


def test_fault_records_repr_in_hex() -> None:
    from sgx_emm.emm.rt import PfInfo
    from sgx_emm.runtime.dispatcher import ExceptionRecord

    assert repr(PfInfo(0x7F0800020000, 0x8007)) == "PfInfo(maddr=0x7f0800020000, errcd=0x8007)"
    assert "maddr=0x1000" in repr(ExceptionRecord(14, 0x1000, 0x6))

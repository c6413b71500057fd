"""Attacks in replay files: a directive line switches one on from that line."""

from __future__ import annotations

from sgx_emm import replay


def test_an_attack_line_switches_the_attack_on_and_off() -> None:
    lines = [
        '{"op": "alloc", "addr": null, "size": "0x1000", "flags": "COMMIT_NOW"}',
        '{"op": "attack", "name": "driver.skip-emodpr"}',
        '{"op": "modify_permissions", "addr": "$0", "size": "0x1000", "prot": "READ"}',
        '{"op": "attack", "name": "off"}',
        '{"op": "modify_permissions", "addr": "$0", "size": "0x1000", "prot": "READ"}',
        '{"op": "attack", "name": "no.such"}',
    ]
    report = replay.run(lines, size=1 << 28, epc_pages=2048, threads=2)
    rets = [r.ret for r in report.results]
    assert rets[1] in (0, None)
    assert rets[2] == "SGX_PAGE_ATTRIBUTES_MISMATCH"   # the skipped EMODPR is caught
    assert rets[4] in (0, None)                          # honest again
    assert rets[5] == "EINVAL" and "no attack" in (report.results[5].detail or "")


def test_an_attack_aimed_at_an_address_strikes_at_its_checkpoint() -> None:
    lines = [
        '{"op": "alloc", "addr": null, "size": "0x2000", "flags": "COMMIT_NOW"}',
        '{"op": "write", "addr": "$0", "data": "aa"}',
        '{"op": "attack", "name": "pte.swap", "addr": "$0", "checkpoint": "written"}',
        '{"op": "read", "addr": "$0", "size": 1}',
    ]
    report = replay.run(lines, size=1 << 28, epc_pages=2048, threads=2)
    assert report.results[3].ret == "CRASH"   # the EPCM refuses the swapped page

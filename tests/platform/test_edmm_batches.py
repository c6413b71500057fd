"""The EDMM ioctls' batched page loops (edmm.py) against their per-page events.

While nobody listens to the trace, RESTRICT_PERMISSIONS, MODIFY_TYPES and
REMOVE_PAGES run their pages in batches and count each batch's events at its
end; a listener makes every leaf emit its own event as it runs. Each scenario
runs both ways on a fresh enclave, with ranges that cross a batch boundary and
failures after it, and everything observable must be the same: the error, its
`count` and `result`, event counts, the EPCM, the driver's records, the page
tables and the enclave's tracking state.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import pytest

import sgx_emm
from sgx_emm.flags import COMMIT_NOW
from sgx_emm.platform import ModifyTypes, RemovePages, RestrictPermissions
from sgx_emm.platform.epcm import Epc
from sgx_emm.platform.secinfo import PT_TRIM
from sgx_emm.trace import Event

PAGE = 0x1000
PAGES = 600                 # more than one batch of 512 pages
ACCEPT_TRIM = 0x410

Scenario = Callable[[sgx_emm.Enclave, int], Any]


def _outcome(call: Callable[[], object], params: Any) -> Any:
    try:
        result: Any = ("ok", call())
    except OSError as err:
        result = ("raised", err.errno, str(err), getattr(err, "count", None))
    return (result, vars(params) if hasattr(params, "__dict__") else
            {k: getattr(params, k) for k in params.__slots__})


def _state(enc: sgx_emm.Enclave, addr: int) -> dict[str, Any]:
    m = enc.machine
    epc = m.epc
    return {
        "counts": dict(m.trace.counts),
        "epcm": [epc.describe(s) for s in range(epc.npages) if epc.owner[s] >= 0],
        "free": list(epc._free),
        "records": [enc.fd.record(a) for a in range(addr, addr + PAGES * PAGE, PAGE)],
        "ptes": {k: list(v) for k, v in m.mm.chunks.items() if any(v)},
        "enclaves": {s: (e.children, e.epoch, e.tracked, sorted(e.inside),
                         sorted(e.track_waiting)) for s, e in m.cpu.enclaves.items()},
    }


def _restrict_all(enc: sgx_emm.Enclave, addr: int) -> Any:
    p = RestrictPermissions(addr - enc.base, PAGES * PAGE, 0x1)
    return _outcome(lambda: enc.fd.restrict_permissions(p), p)


def _restrict_conflict(enc: sgx_emm.Enclave, addr: int) -> Any:
    rec = enc.fd.record(addr + 550 * PAGE)
    assert rec is not None
    enc.machine.cpu.inject_conflict(Epc.paddr(rec[0]))
    return _restrict_all(enc, addr)


def _modify_trim_stops_at_a_trim_page(enc: sgx_emm.Enclave, addr: int) -> Any:
    one = ModifyTypes(addr - enc.base + 530 * PAGE, PAGE, PT_TRIM)
    enc.fd.modify_types(one)
    p = ModifyTypes(addr - enc.base, PAGES * PAGE, PT_TRIM)
    return _outcome(lambda: enc.fd.modify_types(p), p)


def _remove_stops_at_an_unaccepted_page(enc: sgx_emm.Enclave, addr: int) -> Any:
    enc.fd.modify_types(ModifyTypes(addr - enc.base, PAGES * PAGE, PT_TRIM))
    with enc.enter() as t:
        for page in range(addr, addr + PAGES * PAGE, PAGE):
            if page != addr + 520 * PAGE:
                assert t.eaccept(ACCEPT_TRIM, page) == 0
    p = RemovePages(addr - enc.base, PAGES * PAGE)
    return _outcome(lambda: enc.fd.remove_pages(p), p)


def _remove_all(enc: sgx_emm.Enclave, addr: int) -> Any:
    enc.fd.modify_types(ModifyTypes(addr - enc.base, PAGES * PAGE, PT_TRIM))
    with enc.enter() as t:
        for page in range(addr, addr + PAGES * PAGE, PAGE):
            assert t.eaccept(ACCEPT_TRIM, page) == 0
    p = RemovePages(addr - enc.base, PAGES * PAGE)
    return _outcome(lambda: enc.fd.remove_pages(p), p)


SCENARIOS = [_restrict_all, _restrict_conflict, _modify_trim_stops_at_a_trim_page,
             _remove_stops_at_an_unaccepted_page, _remove_all]


def _run(scenario: Scenario, listen: bool, inside: bool) -> tuple[Any, dict[str, Any],
                                                                    list[tuple[str, str]]]:
    enc = sgx_emm.Enclave.create(epc_pages=PAGES + 512)
    with enc.enter():
        addr = enc.manager.alloc(None, PAGES * PAGE, COMMIT_NOW)
    enc.trace.reset()
    events: list[tuple[str, str]] = []
    if listen:
        def record(ev: Event) -> None:
            events.append((ev.category, ev.name))
        enc.trace.subscribe(record)
    # inside: the calling thread stays entered, so every IPI interrupts it
    with enc.enter() if inside else nullcontext():
        outcome = scenario(enc, addr)
    return outcome, _state(enc, addr), events


@pytest.mark.parametrize("inside", [False, True])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__.strip("_"))
def test_batched_loops_match_the_per_page_events(scenario: Scenario, inside: bool) -> None:
    quiet_outcome, quiet_state, _ = _run(scenario, listen=False, inside=inside)
    loud_outcome, loud_state, events = _run(scenario, listen=True, inside=inside)
    assert quiet_outcome == loud_outcome
    assert quiet_state == loud_state
    assert len(events) == sum(loud_state["counts"].values())   # each one emitted
    if inside:
        assert quiet_state["counts"].get(("aex", "INTR"), 0) > 0


def test_the_scenarios_fail_where_they_should() -> None:
    outcome, _, _ = _run(_modify_trim_stops_at_a_trim_page, listen=False, inside=False)
    assert outcome[0][1:2] == (22,) and outcome[0][3] == 530 * PAGE
    outcome, _, _ = _run(_remove_stops_at_an_unaccepted_page, listen=False, inside=False)
    assert outcome[0][1:2] == (1,) and outcome[0][3] == 520 * PAGE
    outcome, _, _ = _run(_restrict_conflict, listen=False, inside=False)
    assert outcome[0][1:2] == (14,) and outcome[0][3] == 550 * PAGE
    assert outcome[1]["result"] == 7
    outcome, state, _ = _run(_remove_all, listen=False, inside=False)
    assert outcome[0] == ("ok", 0) and state["counts"][("leaf", "EREMOVE")] == PAGES


def test_a_listener_that_subscribes_mid_batch_hears_only_what_follows() -> None:
    from sgx_emm.platform.hooks import KernelHooks

    enc = sgx_emm.Enclave.create(epc_pages=PAGES + 512)
    with enc.enter():
        addr = enc.manager.alloc(None, PAGES * PAGE, COMMIT_NOW)
    heard: list[tuple[str, str]] = []
    late = addr + 300 * PAGE

    class SubscribeAtPage(KernelHooks):
        def page_leaf(self, encl: Any, leaf: str, page_addr: int) -> bool:
            if page_addr == late:
                enc.trace.subscribe(lambda e: heard.append((e.category, e.name)))
            return True

    enc.trace.reset()
    enc.machine.kernel.hooks = SubscribeAtPage()
    enc.fd.modify_types(ModifyTypes(addr - enc.base, PAGES * PAGE, PT_TRIM))
    assert heard == [("leaf", "EMODT"), ("leaf", "ETRACK")] * (PAGES - 300)
    counts = enc.trace.counts
    assert counts[("leaf", "EMODT")] == counts[("leaf", "ETRACK")] == PAGES

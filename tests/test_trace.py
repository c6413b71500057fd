"""Trace.bump_all / listening: counting without details must read back exactly
as the same events emitted one by one, whoever reads and however they are mixed."""

from __future__ import annotations

import threading

from sgx_emm.trace import AEX, ENTRY, LEAF, PAGE_FAULT, Event, Trace

BATCH = ((LEAF, "EACCEPT"), (AEX, "#PF"), (PAGE_FAULT, "0x4"), (LEAF, "EAUG"),
         (ENTRY, "ERESUME"), (LEAF, "EACCEPT"))


def _emitted(events: list[tuple[str, str]]) -> Trace:
    trace = Trace()
    for category, name in events:
        trace.emit(category, name)
    return trace


def test_bump_all_reads_back_as_single_emits() -> None:
    bumped = Trace()
    bumped.bump_all(BATCH)
    bumped.emit(LEAF, "EACCEPT")
    bumped.bump_all(BATCH[:1])
    bumped.emit(ENTRY, "EEXIT", tcs=1)
    bumped.bump_all(BATCH)
    same = _emitted(list(BATCH) + [(LEAF, "EACCEPT"), (LEAF, "EACCEPT"), (ENTRY, "EEXIT")]
                    + list(BATCH))
    assert bumped.counts == same.counts
    assert bumped.counts[(LEAF, "EACCEPT")] == 6
    assert bumped.by_category() == same.by_category()
    assert bumped.total(LEAF) == same.total(LEAF) == 8
    assert bumped.total(AEX, "#PF") == 2


def test_empty_batch_counts_nothing() -> None:
    trace = Trace()
    trace.bump_all(())
    assert trace.counts == {}
    assert trace.by_category() == {}


def test_reset_forgets_batches() -> None:
    trace = Trace()
    trace.bump_all(BATCH)
    trace.reset()
    assert trace.counts == {}
    trace.bump_all(BATCH[:2])
    assert trace.counts == {(LEAF, "EACCEPT"): 1, (AEX, "#PF"): 1}


def test_listening_and_listeners_get_each_event_without_details() -> None:
    trace = Trace()
    assert trace.listening is False
    seen: list[Event] = []
    counts_seen: list[int] = []

    def listener(event: Event) -> None:
        seen.append(event)
        counts_seen.append(trace.total(LEAF, "EACCEPT"))

    unsubscribe = trace.subscribe(listener)
    assert trace.listening is True
    trace.bump_all(BATCH)
    trace.emit(LEAF, "EAUG")
    assert [(e.category, e.name) for e in seen] == list(BATCH) + [(LEAF, "EAUG")]
    assert all(e.details == {} for e in seen)
    # counted before each listener call, as emit does
    assert counts_seen == [1, 1, 1, 1, 1, 2, 2]
    unsubscribe()
    assert trace.listening is False
    trace.bump_all(BATCH)
    assert len(seen) == 7
    assert trace.counts[(LEAF, "EACCEPT")] == 4


def test_batches_from_several_threads_add_up() -> None:
    trace = Trace()

    def work() -> None:
        for _ in range(500):
            trace.bump_all(BATCH)
            trace.emit(LEAF, "EMODPE")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    counts = trace.counts
    assert counts[(LEAF, "EACCEPT")] == 4 * 500 * 2
    assert counts[(ENTRY, "ERESUME")] == 4 * 500
    assert counts[(LEAF, "EMODPE")] == 4 * 500


def test_subscribers_get_every_event_with_its_details_in_order() -> None:
    trace = Trace()
    seen: list[Event] = []
    stop = trace.subscribe(seen.append)
    trace.emit(LEAF, "EAUG", addr=0x1000)
    trace.emit(PAGE_FAULT, "0x4", addr=0x2000)
    stop()
    trace.emit(LEAF, "EACCEPT")
    assert [(e.category, e.name, e.details) for e in seen] == [
        (LEAF, "EAUG", {"addr": 0x1000}), (PAGE_FAULT, "0x4", {"addr": 0x2000})]
    assert trace.total(LEAF) == 2  # counting does not depend on listening


def test_counts_from_several_threads_add_up_and_reset_clears_them_all() -> None:
    trace = Trace()

    def work() -> None:
        for _ in range(1000):
            trace.emit(LEAF, "EACCEPT")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    trace.emit(LEAF, "EACCEPT")
    assert trace.counts[(LEAF, "EACCEPT")] == 4001
    trace.reset()
    assert trace.counts == {}
    trace.emit(LEAF, "EAUG")
    assert trace.by_category() == {LEAF: {"EAUG": 1}}


def test_counting_unheard_events_adds_up_and_tells_no_listener() -> None:
    trace = Trace()
    trace.count_unheard((LEAF, "EMODT"), 3)
    trace.count_unheard((LEAF, "EMODT"), 0)
    trace.count_unheard(BATCH, 4)
    assert trace.total(LEAF, "EMODT") == 3
    assert trace.total(LEAF, "EACCEPT") == 8    # twice in BATCH, four times over
    seen: list[tuple[str, str]] = []
    trace.subscribe(lambda e: seen.append((e.category, e.name)))
    trace.count_unheard((LEAF, "EMODT"), 2)
    trace.count_unheard(BATCH, 1)
    assert seen == []
    assert trace.total(LEAF, "EMODT") == 5 and trace.total(AEX, "#PF") == 5


def test_one_unheard_event_counts_once_and_tells_no_listener() -> None:
    trace = Trace()
    trace.unheard((ENTRY, "EENTER"))
    seen: list[Event] = []
    trace.subscribe(seen.append)
    trace.unheard((ENTRY, "EENTER"))
    assert seen == []
    assert trace.counts == {(ENTRY, "EENTER"): 2}


def _one_page_round_trip(listen: bool) -> tuple[dict[tuple[str, str], int], list[Event]]:
    """Trace counts of one one-page COMMIT_NOW alloc and its dealloc on the simulated
    enclave, and what a listener (if any) heard."""
    import sgx_emm
    from sgx_emm.flags import COMMIT_NOW, PAGE_SIZE

    enc = sgx_emm.Enclave.create()
    heard: list[Event] = []
    with enc.enter():
        enc.emm.dealloc(enc.emm.alloc(None, PAGE_SIZE, COMMIT_NOW), PAGE_SIZE)  # warm up
        before = enc.trace.counts
        unsubscribe = enc.trace.subscribe(heard.append) if listen else None
        addr = enc.emm.alloc(None, PAGE_SIZE, COMMIT_NOW)
        enc.emm.dealloc(addr, PAGE_SIZE)
        if unsubscribe is not None:
            unsubscribe()
        after = enc.trace.counts
    return {k: n - before[k] for k, n in after.items() if n != before[k]}, heard


def test_per_call_events_count_the_same_whether_or_not_anyone_listens() -> None:
    quiet, _ = _one_page_round_trip(listen=False)
    loud, heard = _one_page_round_trip(listen=True)
    assert quiet == loud
    for key in ((ENTRY, "EEXIT"), (ENTRY, "EENTER"), ("ocall", "alloc_ocall"),
                ("ocall", "modify_ocall"), ("syscall", "mmap"), ("syscall", "mprotect"),
                ("ioctl", "MODIFY_TYPES"), ("ioctl", "REMOVE_PAGES")):
        assert quiet[key] >= 1, key
    # a listener hears each of them, with its details
    by_key = {(e.category, e.name): e for e in heard}
    assert "tcs" in by_key[(ENTRY, "EENTER")].details
    assert {"addr", "length", "flags_from", "flags_to"} <= set(
        by_key[("ocall", "modify_ocall")].details)
    assert {"offset", "length"} <= set(by_key[("ioctl", "REMOVE_PAGES")].details)
    assert by_key[("syscall", "mmap")].details["length"] == 0x1000
    assert sum(1 for e in heard if (e.category, e.name) == (ENTRY, "EEXIT")) == quiet[
        (ENTRY, "EEXIT")]

"""The whole compactor under load and faults (issue 11's concurrency and crash tests).

A compact topic with keyed producers, tombstones and consumers reading from offset 0 while
passes (merge and key compaction) run with the clock moved between requests; a pass
crashed at each fail point the compactor reaches, then rerun. Time is a fake clock moved
only while no request is in flight (`InFlight`); threads meet at conditions, never sleeps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from lakelog import Engine, Record
from lakelog.service import keycompact
from lakelog.service import merge as merge_module
from lakelog.service.compactor import CompactionSettings, Compactor
from lakelog.service.produce import AppendRetryPolicy
from lakelog.storage.keys import topic_segments_prefix
from tests.contract.backends import Backend, MemoryBackend
from tests.integration.test_compactor_retention import (
    CONSUMERS,
    HOUR_MS,
    PRODUCERS,
    TOPIC,
    Clock,
    InFlight,
    _consume,
    referenced,
    run_pass,
)
from tests.support import run_in_threads

KEYS = 4
"""Keys per producer: a small key space, each key rewritten many times."""
KEYED_BATCHES = 16
KEYED_PARTITIONS = 2
PASS_STEP_MS = 4 * HOUR_MS
"""How far the clock moves after each pass: a day is six passes."""
TOMBSTONE_RETENTION_MS = 10 * HOUR_MS
WAIT_S = 120.0
"""Longest a thread waits for another's progress before the test fails (a hang, not a race)."""

Produced = dict[int, dict[int, tuple[bytes, bytes | None, int]]]
"""Partition: offset: (key, value, timestamp) of every acknowledged record."""


@pytest.fixture
def clock(backend: Backend) -> Clock:
    clock = Clock()
    if isinstance(backend, MemoryBackend):
        backend.storage.clock_ms = clock
    return clock


@pytest.fixture
def make(make_engine: Callable[..., Engine], clock: Clock) -> Callable[..., Engine]:
    def new(**kwargs: Any) -> Engine:
        return make_engine(clock_ms=clock, grace_ms=HOUR_MS, sleep=lambda _s: None, **kwargs)

    return new


def keyed_compactor(engine: Engine) -> Compactor:
    """Small steps: a few items, entries and bytes each, so a pass takes many of them."""
    settings = CompactionSettings(
        max_items_per_step=5, max_merge_items=5, target_l1_bytes=200, key_compaction_bytes=300
    )
    return Compactor(engine.context, engine.gc, settings)


class Passes:
    """The number of passes run, which producers wait on (batch ``b`` after pass ``b``)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.done = 0

    def ran(self) -> None:
        with self._cond:
            self.done += 1
            self._cond.notify_all()

    def wait(self, count: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.done >= count, WAIT_S), "no pass ran"


def _record(producer: int, batch: int, partition: int, ts: int) -> Record:
    """Key ``k<producer>-<n>`` (keys shared by the partitions' producers), every fifth a
    tombstone."""
    number = producer * KEYED_BATCHES + batch
    key = b"k%d-%d" % (producer, (batch + partition) % KEYS)
    value = None if number % 5 == 4 else b"p%d-%d-%d" % (producer, batch, partition)
    return Record(key=key, value=value, partition=partition, timestamp_ms=ts)


def test_key_compaction_with_producers_and_consumers_keeps_every_last_record_of_a_key(
    make: Callable[..., Engine], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a compact topic whose merges write many small entries and whose key compaction
    # replaces them a few at a time
    monkeypatch.setattr(merge_module, "L1_ROW_GROUP_BYTES", 1)
    monkeypatch.setattr(keycompact, "MAX_COVERED", 3)
    admin = make()
    admin.create_topic(
        TOPIC,
        partitions=KEYED_PARTITIONS,
        config={"cleanup_policy": "compact", "delete_retention_ms": TOMBSTONE_RETENTION_MS},
    )
    stop = threading.Event()
    requests = InFlight(clock)
    passes = Passes()
    produced: Produced = {p: {} for p in range(KEYED_PARTITIONS)}
    read: list[list[tuple[int, int, bytes | None]]] = [[] for _ in range(CONSUMERS)]
    lock = threading.Lock()
    running = [PRODUCERS]

    def produce(index: int) -> None:
        try:
            engine = make(retry=AppendRetryPolicy(deadline_seconds=10**6))
            for batch in range(KEYED_BATCHES):
                passes.wait(batch)
                with requests.one():
                    records = [_record(index, batch, p, clock()) for p in range(KEYED_PARTITIONS)]
                    acks = engine.append(TOPIC, records)
                with lock:
                    for ack, record in zip(acks, records, strict=True):
                        assert record.key is not None
                        produced[ack.partition][ack.offset] = (
                            record.key,
                            record.value,
                            record.timestamp_ms or 0,
                        )
        finally:
            with lock:
                running[0] -= 1

    def consume(index: int) -> None:
        read[index].extend(_consume(make(), KEYED_PARTITIONS, stop, requests))

    def compact(_index: int) -> None:
        compactor = keyed_compactor(make())
        try:
            while True:
                with lock:
                    producing = running[0] > 0
                run_pass(compactor)
                requests.advance(PASS_STEP_MS)
                passes.ran()
                if not producing:
                    break
            for _ in range(12):  # two more days: everything merges and is compacted
                run_pass(compactor)
                requests.advance(PASS_STEP_MS)
        finally:
            passes.ran()
            passes.done += 10**6  # release producers if a pass failed
            stop.set()

    # When 4 producers, 2 consumers and the compactor run at once
    roles: list[Callable[[int], None]] = [
        *(lambda _i, n=n: produce(n) for n in range(PRODUCERS)),
        *(lambda _i, n=n: consume(n) for n in range(CONSUMERS)),
        compact,
    ]
    run_in_threads(len(roles), lambda i: roles[i](i))

    # Then key compaction did run: some records were dropped
    final = _read_from_zero(make())
    assert sum(map(len, final.values())) < sum(map(len, produced.values()))
    now = clock()
    for partition in range(KEYED_PARTITIONS):
        written = produced[partition]
        got = final[partition]
        # And a reader from 0 gets records exactly as produced at their offsets
        assert all(written[o] == r for o, r in got.items())
        last_of: dict[bytes, int] = {}
        for offset in sorted(written):
            last_of[written[offset][0]] = offset
        for key, offset in last_of.items():
            _, value, ts = written[offset]
            if value is not None or ts >= now - TOMBSTONE_RETENTION_MS:
                # every key's last record is there
                assert offset in got, (partition, key, offset)
            elif offset not in got:
                # an expired tombstone may go, but no older value of its key comes back
                assert [o for o, r in got.items() if r[0] == key] == [], (partition, key)
        # And each consumer read offsets strictly ascending, each as produced, and every
        # record that survived (none was lost while it was moved or compacted)
        for records in read:
            offsets = [o for p, o, _ in records if p == partition]
            assert offsets == sorted(set(offsets))
            assert all(written[o][1] == v for p, o, v in records if p == partition)
            assert set(got) <= set(offsets)
    # And after a full pass nothing unreferenced older than the grace period is left, and
    # everything the ledger names is stored
    run_pass(keyed_compactor(admin))
    assert_bucket_consistent(admin, clock)


def assert_bucket_consistent(engine: Engine, clock: Clock) -> None:
    """Every segment the ledger names is stored; every other one is younger than grace."""
    topic_id = engine.describe_topic(TOPIC).topic_id
    named = {key for key in referenced(engine) if key}
    stored = {
        info.key: info.last_modified_ms
        for info in engine.context.objects.list(topic_segments_prefix(topic_id))
    }
    assert named <= set(stored)
    old = {key for key, ms in stored.items() if key not in named and ms <= clock() - HOUR_MS}
    assert old == set()


def _read_from_zero(engine: Engine) -> Produced:
    """Every record from offset 0 of each partition, following next_offset and cursors."""
    log: Produced = {}
    for partition in range(KEYED_PARTITIONS):
        records: dict[int, tuple[bytes, bytes | None, int]] = {}
        offset, cursor = 0, None
        high = engine.list_offset(TOPIC, partition, "latest")
        while offset < high:
            result = engine.fetch(TOPIC, partition, offset, max_records=3, cursor=cursor)
            for record in result.records:
                assert record.offset not in records and record.offset >= offset
                assert record.key is not None
                records[record.offset] = (record.key, record.value, record.timestamp_ms)
            assert result.next_offset > offset
            offset, cursor = result.next_offset, result.cursor
        log[partition] = records
    return log

"""Retention over L1 entries key compaction replaced (a compact topic altered to delete):
the step deletes no segment an entry left still names (ADR 0013, 2 and 6)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lakelog.service import merge as merge_module
from lakelog.service.compactor import CompactionSettings, Compactor
from lakelog.service.engine import Engine
from lakelog.types import Record, StoredRecord
from tests.integration.test_compactor_merge import Clock, merge_all, objects, referenced
from tests.integration.test_key_compaction import (
    DAY_MS,
    PARTITIONS,
    clock,
    compact,
    make,
    make_topic,
    read_log,
    small_groups,
)

__all__ = ["clock", "make", "small_groups"]  # fixtures shared with the key compaction tests


@pytest.mark.parametrize("share", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_retention_over_key_compacted_entries_deletes_no_segment_an_entry_names(
    make: Callable[[], Engine], clock: Clock, share: float
) -> None:
    # Given a compact topic whose merged records key compaction replaced, group by group
    # (replacement entries in new segments between entries left in the merge's), then
    # altered to delete by bytes
    engine, _ = make_topic(make, clock, "keys")
    assert any(step.records_compacted for step in compact(engine, "keys"))
    compacted = read_log(make(), "keys")
    assert any(entry.row_count >= 0 for entry in l1_entries(engine, "keys"))
    sizes = [p.bytes for p in engine.describe_topic("keys").partitions]
    engine.alter_topic(
        "keys", config={"cleanup_policy": "delete", "retention_bytes": int(share * max(sizes))}
    )

    # When retention steps expire a prefix of the L1 entries
    compactor = Compactor(engine.context, engine.gc, CompactionSettings(max_items_per_step=2))
    for _ in range(100):
        if compactor.compact_topic("keys").done:
            break

    # Then every segment an entry names is still stored, and a reader gets every record
    # key compaction left from the new log starts
    assert referenced(engine, "keys") <= set(objects(engine, "keys"))
    starts = [p.log_start_offset for p in engine.describe_topic("keys").partitions]
    assert any(starts)
    reader = make()
    for partition in range(PARTITIONS):
        kept = [r for r in compacted[partition] if r.offset >= starts[partition]]
        assert read_from(reader, partition, starts[partition]) == kept


def test_retention_keeps_a_merged_segment_named_again_after_a_key_compacted_entry(
    make: Callable[[], Engine], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given one merged L1 segment X of one entry per batch: keys a b c d e f g (old
    # timestamps up to d), then a e (new); key compaction replaces the groups a-c and
    # e-g (they lose the first a and e) by entries in a new segment Y, between which d's
    # entry keeps naming X, as do the last a and e after them
    monkeypatch.setattr(merge_module, "L1_ROW_GROUP_BYTES", 1)
    engine = make()
    engine.create_topic("keys", config={"cleanup_policy": "compact"})
    old, new = clock.ms - 3 * DAY_MS, clock.ms
    for key, stamp in [*((k, old) for k in b"abcd"), *((k, new) for k in b"efgae")]:
        engine.append("keys", [Record(key=bytes([key]), value=b"v", timestamp_ms=stamp)])
    clock.ms += DAY_MS + 1
    engine.append("keys", [Record(key=b"young", value=b"y")])
    merge_all(engine, "keys", clock.ms, max_items=100, target_bytes=1 << 20)
    (segment,) = {entry.segment_key for entry in l1_entries(engine, "keys")}
    assert any(step.records_compacted for step in compact(engine, "keys"))
    layout = [
        (entry.segment_key == segment, entry.row_count) for entry in l1_entries(engine, "keys")
    ]
    assert layout == [(False, 2), (True, -1), (False, 2), (True, -1), (True, -1)]
    compacted = read_from(make(), 0, 0)

    # When the topic is altered to delete after two days: the first group and d expire
    engine.alter_topic("keys", config={"cleanup_policy": "delete", "retention_ms": 2 * DAY_MS})
    step = Compactor(engine.context, engine.gc).compact_topic("keys")

    # Then X stays (the last a and e name it), and the records from the log start read
    assert step.entries_removed == 2
    assert segment in objects(engine, "keys")
    assert referenced(engine, "keys") <= set(objects(engine, "keys"))
    start = engine.describe_topic("keys").partitions[0].log_start_offset
    assert read_from(make(), 0, start) == [r for r in compacted if r.offset >= start]


def read_from(engine: Engine, partition: int, offset: int) -> list[StoredRecord]:
    """Every record of ``partition`` of topic ``keys`` from ``offset``."""
    records: list[StoredRecord] = []
    for _ in range(1000):
        result = engine.fetch("keys", partition, offset, max_records=3)
        records.extend(result.records)
        if result.next_offset == result.high_watermark:
            return records
        offset = result.next_offset
    raise AssertionError("the fetches never reached the high watermark")


def l1_entries(engine: Engine, topic: str) -> list[object]:
    record = engine.context.catalog.get_topic(topic)
    assert record is not None
    return [
        entry
        for partition in range(PARTITIONS)
        for entry in engine.context.ledger.entries(record.topic_id, partition)
    ]

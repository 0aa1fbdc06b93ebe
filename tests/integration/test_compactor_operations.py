"""What operators see of the compactor: a topic's segments and bytes per storage level
(``describe`` with levels) and how long its L0 backlog has waited (``l0_backlog_ms``).

Time is a fake clock; the merge is the compactor's own (`Compactor.compact_topic`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lakelog.cli.compact import print_pass
from lakelog.local.compaction import pass_reply
from lakelog.service import levels as levels_module
from lakelog.service.compactor import CompactionSettings, CompactionStep, Compactor
from lakelog.service.engine import Engine
from lakelog.service.passes import PassReport
from lakelog.storage.keys import topic_segments_prefix
from lakelog.types import LevelUsage, Record
from tests.integration.test_compactor_merge import (
    BACKENDS,
    DAY_MS,
    PARTITIONS,
    Clock,
    clock,
    fill,
    make,
)

__all__ = ["clock", "make"]  # fixtures shared with the merge tests

TOPIC = "levels"


def object_sizes(engine: Engine, level: str) -> dict[str, int]:
    """Size of each stored segment of ``TOPIC`` whose key names ``level`` (``/L1/``...)."""
    record = engine.context.catalog.get_topic(TOPIC)
    assert record is not None
    prefix = topic_segments_prefix(record.topic_id)
    return {
        info.key: info.size for info in engine.context.objects.list(prefix) if level in info.key
    }


def compact(engine: Engine, clock: Clock, settings: CompactionSettings) -> list[CompactionStep]:
    """Compactor steps until nothing is left to merge, the clock moved past each grace
    period that keeps the next merge waiting."""
    compactor = Compactor(engine.context, engine.gc, settings)
    steps: list[CompactionStep] = []
    for _ in range(100):
        steps.append(compactor.compact_topic(TOPIC))
        if steps[-1].done and not steps[-1].l0_backlog_ms:
            return steps
        if steps[-1].done:
            clock.ms += engine.gc.grace_ms + 1
    raise AssertionError("the compactor never finished")


def test_describe_counts_levels_only_when_asked(make: Callable[[], Engine], clock: Clock) -> None:
    # Given a topic of 24 appends, none merged
    engine = make()
    engine.create_topic(TOPIC, partitions=PARTITIONS)
    fill(engine, TOPIC, clock)

    plain = engine.describe_topic(TOPIC)
    described = engine.describe_topic(TOPIC, levels=True)

    # Then a plain describe has no levels; one with levels has every append in L0
    assert plain.levels is None
    assert all(p.levels is None for p in plain.partitions)
    assert described.levels is not None
    assert described.levels.l0 == LevelUsage(
        segments=24, bytes=sum(p.bytes for p in plain.partitions)
    )
    assert described.levels.l1 == LevelUsage(0, 0)
    assert [p.levels.l0_bytes if p.levels else None for p in described.partitions] == [
        p.bytes for p in plain.partitions
    ]
    # The existing fields are the same either way
    assert [(p.log_start_offset, p.high_watermark, p.bytes) for p in described.partitions] == [
        (p.log_start_offset, p.high_watermark, p.bytes) for p in plain.partitions
    ]


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_after_a_merge_l1_counts_the_segments_written_and_l0_what_is_left(
    make: Callable[[], Engine], clock: Clock, monkeypatch: pytest.MonkeyPatch, backend_name: str
) -> None:
    # Given 24 appends a day old and 5 fresh ones, merged into small L1 segments
    engine = make()
    engine.create_topic(TOPIC, partitions=PARTITIONS)
    fill(engine, TOPIC, clock)
    clock.ms += DAY_MS + 1
    before = engine.describe_topic(TOPIC, levels=True)
    fill(engine, TOPIC, clock, appends=5)
    young = [
        after.bytes - old.bytes
        for after, old in zip(
            engine.describe_topic(TOPIC).partitions, before.partitions, strict=True
        )
    ]
    steps = compact(engine, clock, CompactionSettings(max_items_per_step=7, target_l1_bytes=400))
    assert sum(step.segments_merged for step in steps) == 24

    # When described with levels (entries read two at a time, so pages follow each other)
    monkeypatch.setattr(levels_module, "ENTRY_PAGE", 2)
    described = engine.describe_topic(TOPIC, levels=True)

    # Then L1 is every L1 object stored, with its size, and L0 the five young appends
    assert described.levels is not None
    l1_objects = object_sizes(engine, "/L1/")
    assert len(l1_objects) > PARTITIONS  # several segments per partition
    assert described.levels.l1 == LevelUsage(len(l1_objects), sum(l1_objects.values()))
    assert described.levels.l0 == LevelUsage(segments=5, bytes=sum(young))
    shares = [p.levels for p in described.partitions]
    assert [share.l0_bytes if share else None for share in shares] == young
    assert sum(share.l1.segments for share in shares if share) == len(l1_objects)
    assert sum(share.l1.bytes for share in shares if share) == sum(l1_objects.values())
    # And the merged bytes the steps report are the bytes that left L0
    assert (
        sum(step.bytes_merged for step in steps) == before.levels.l0.bytes if before.levels else 0
    )


def test_l0_backlog_age_is_how_long_the_oldest_mergeable_item_waited(
    make: Callable[[], Engine], clock: Clock
) -> None:
    # Given three appends an hour apart, the first a day and three hours old, and a
    # compactor that merges one item per step
    engine = make()
    engine.create_topic(TOPIC, partitions=1, config={"retention_ms": -1})
    start_ms = clock.ms
    for value in (b"a", b"b", b"c"):
        engine.append(TOPIC, [Record(value=value)])
        clock.ms += 3600_000
    clock.ms = start_ms + DAY_MS + 3 * 3600_000
    compactor = Compactor(
        engine.context, engine.gc, CompactionSettings(max_items_per_step=1, max_merge_items=1)
    )

    # When a step merges the first: the second has waited two hours past its eligibility
    merged = compactor.compact_topic(TOPIC)
    assert (merged.segments_merged, merged.done) == (1, False)
    assert merged.l0_backlog_ms == 2 * 3600_000

    # When the next step waits for the grace period of the items below the chain start,
    # the second still waits
    waiting = compactor.compact_topic(TOPIC)
    assert (waiting.segments_merged, waiting.done) == (0, True)
    assert waiting.l0_backlog_ms == 2 * 3600_000

    # When the grace period has passed: steps delete the items below the chain start (the
    # second waits on), then merge it; the last item is never backlog
    clock.ms += engine.gc.grace_ms
    steps = [compactor.compact_topic(TOPIC)]
    while not steps[-1].segments_merged:
        assert steps[-1].l0_backlog_ms == 2 * 3600_000 + engine.gc.grace_ms
        steps.append(compactor.compact_topic(TOPIC))
    assert [step.items_removed for step in steps] == [1, 1, 0]
    assert steps[-1].l0_backlog_ms == 0
    assert compactor.compact_topic(TOPIC).l0_backlog_ms == 0


def test_an_idle_topic_has_no_backlog_however_old_its_last_item(
    make: Callable[[], Engine], clock: Clock
) -> None:
    # Given two appends ten days old, the first merged, the items below the chain start
    # waiting for their grace period
    engine = make()
    engine.create_topic(TOPIC, partitions=1, config={"retention_ms": -1})
    engine.append(TOPIC, [Record(value=b"first")])
    engine.append(TOPIC, [Record(value=b"last")])
    clock.ms += 10 * DAY_MS
    compactor = Compactor(engine.context, engine.gc)
    assert compactor.compact_topic(TOPIC).segments_merged == 1

    # When a step looks again: only the chain's last item is left, and it is never merged
    step = compactor.compact_topic(TOPIC)

    assert step.segments_merged == 0
    assert step.l0_backlog_ms == 0


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_a_dry_run_says_what_the_step_does_for_retention_truncation_and_merge(
    make: Callable[[], Engine],
    clock: Clock,
    backend: Any,
    backend_name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given three expired batches and two kept, appended a day ago
    engine = make()
    engine.create_topic(TOPIC, partitions=1, config={"retention_ms": DAY_MS})
    for stamp in [clock.ms - 2 * DAY_MS] * 3 + [clock.ms + 3 * DAY_MS] * 2:
        engine.append(TOPIC, [Record(value=b"v", timestamp_ms=stamp)])
    clock.ms += DAY_MS + 1
    compactor = Compactor(engine.context, engine.gc)
    contents = backend.contents()

    # When a dry run looks, then the step runs
    dry = compactor.compact_topic(TOPIC, dry_run=True)
    assert backend.contents() == contents
    real = compactor.compact_topic(TOPIC)

    # Then the dry run said exactly what the step did: expire items 1-3, move the chain
    # start past them, merge item 4 alone (not the expired ones; item 5 is the tail)
    assert (dry.log_start_offsets, dry.bytes_expired) == ({0: 3}, real.bytes_expired)
    assert (dry.segments_merged, dry.bytes_merged) == (1, real.bytes_merged)
    assert dry.actions == real.actions
    kinds = [action.split()[0] for action in dry.actions]
    assert kinds == ["expire", "expire", "expire", "move", "merge"]
    assert "merge chain items 4..4" in dry.actions[-1]

    # And lakelog compact --dry-run prints it, counters and actions
    print_pass(pass_reply(PassReport(steps=[dry])), dry_run=True)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{TOPIC}: would do: {dry.bytes_expired} bytes expired, ")
    assert f"1 segments merged ({dry.bytes_merged} bytes)" in out[0]
    assert "log_start_offset 0->3" in out[0]
    assert [line.strip() for line in out[1:]] == list(dry.actions)

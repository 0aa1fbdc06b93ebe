"""The compactor benchmark: a W1-like topic merged to L1, what it costs, and a replay after.

Everything runs the real service code (`lakelog.service.compactor.Compactor`, its `Merger`
and gc, through an `EngineContext` on in-process moto) with the cost benchmark's recorder
(`benchmarks.recorder`: every S3 request and DynamoDB unit, as AWS bills them) and a fake
clock (`benchmarks.simulation.SimClock`) moved past `PRODUCER_EXPIRATION_MS` and gc's grace
period instead of waiting. Nothing reaches AWS.

Two topics:

- **W1-like**: 12 partitions, keyed 1 KiB records, appends of W1's size (1 MiB/s at the
  3 appends a second W1's producer makes over HTTPS: 341 records, about 28 KiB a
  partition), one append every 1/3 s of modeled time. `CompactionWorkload.appends` of
  them (48 s of W1; a modeled day is 259,200) fill the chain with L0 flush segments.
  Then passes run as the state machine runs them (list, compact each topic until done,
  collect): one with the full gc before anything is a day old (its scan reads every
  item), then light passes (gc without the scan, as every 5 minutes): the merge pass a
  day later, the pass a grace period after that (the truncation deletes the merged items,
  then their L0 segments), and an idle pass.
  Everything a pass does per item, per object or per GiB is linear in them, so the
  monthly figures scale the measured units (`price_w1`).
- **Replay**: one partition of 1 MiB appends, merged into L1 segments of the size a W1
  merge step makes per partition (`w1_segment_bytes`: its share of the step's
  `CompactionSettings.max_merge_bytes`), then read from offset 0 by the
  SDK's `Consumer` over HTTPS (the API handler in-process, one warm function) as the cost
  benchmark does it. The replay of a day of one W1 partition (7.03 GiB) is this one
  scaled.

The compact task's Lambda duration is its CPU measured here (moto, the recorder and
Python's gc excluded; the merge's GET threads run in the calling thread so that their
decoding is counted) stretched by ``1769 / memory`` below a full vCPU, plus the modeled
I/O (`benchmarks.simulation.io_seconds`; the merge's GETs overlap `merge.GET_THREADS` at a
time). The Express execution's duration is its tasks' durations plus
`STATE_OVERHEAD_S` per Lambda task, billed per started 100 ms at 64 MB (ADR 0013, 5.2).
A merge step's memory is measured apart, on in-memory storage (`merge_memory`). The
arithmetic and the results are in ADR 0013, 5.5.
"""

from __future__ import annotations

import functools
import io
import math
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass, field, replace
from typing import Any, Final, TypeVar
from unittest import mock

import pyarrow as pa
from moto import mock_aws

from benchmarks.cost import RECORD_BYTES, Deployment
from benchmarks.meter import item_size
from benchmarks.pricing import (
    DAY_S,
    DYNAMODB_ITEM_OVERHEAD_BYTES,
    DYNAMODB_READ_UNIT,
    DYNAMODB_STORAGE_GB_MONTH,
    DYNAMODB_WRITE_UNIT,
    GIB,
    LAMBDA_ARM_GB_SECOND,
    LAMBDA_REQUEST,
    MONTH_S,
    S3_GET_REQUEST,
    S3_PUT_REQUEST,
    S3_STORAGE_GB_MONTH,
    express_execution_cost,
    lambda_duration,
)
from benchmarks.recorder import Call
from benchmarks.simulation import DDB_READ_S, S3_GET_S, START_MS, io_seconds, sim_time
from benchmarks.workloads import make_values
from lakelog import Engine, Record, TopicPartition
from lakelog.client import Consumer
from lakelog.local.emulation import serialize_moto_dynamodb
from lakelog.log.chain import PRODUCER_EXPIRATION_MS
from lakelog.service import merge as merge_module
from lakelog.service.compactor import SHARED_SEGMENT_MS, CompactionSettings, Compactor
from lakelog.service.gc import DEFAULT_GRACE_MS
from lakelog.service.merge import Merger
from lakelog.service.passes import run_topic
from lakelog.storage.keys import HEAD_SK
from lakelog.storage.memory import MemoryStorage

__all__ = [
    "BucketState",
    "CompactionReport",
    "CompactionWorkload",
    "DayReplay",
    "GcScan",
    "MergeUnits",
    "PassCost",
    "ReplayReport",
    "TaskRun",
    "W1Compaction",
    "W1Shape",
    "choose_memory",
    "compact_gb_seconds_per_gib",
    "compact_storage_per_gib",
    "gc_scan",
    "left_to_full_gc",
    "merge_memory",
    "merge_storage_month",
    "merge_units",
    "price_w1",
    "replay_day",
    "required_memory_mb",
    "run_compaction",
    "truncation_read_units",
    "w1_segment_bytes",
]

R = TypeVar("R")
_MIB = 1 << 20
STATE_OVERHEAD_S: Final = 0.025
"""Step Functions' own time around each Lambda task (invoke and state transitions)."""
W1_APPENDS_PER_S: Final = 3.0
"""W1's appends a second over HTTPS (the cost benchmark's S3 PUTs: 7.78 M a month)."""
W1_MIB_PER_S: Final = 1.0
W1_PARTITIONS: Final = 12


@dataclass(frozen=True, slots=True)
class CompactionWorkload:
    """Sizes of the compactor benchmark (the defaults take about 30 s on two cores)."""

    partitions: int = W1_PARTITIONS
    appends: int = 144
    """L0 flush segments of the W1-like topic (48 s of W1)."""
    records_per_append: int = round(W1_MIB_PER_S * _MIB / RECORD_BYTES / W1_APPENDS_PER_S)
    replay_appends: int = 86
    """1 MiB appends of the replay's one partition."""
    settings: CompactionSettings = field(default_factory=CompactionSettings)
    memory_mb: tuple[int, ...] = (1024, 1536, 1769, 3008)
    """Lambda memory sizes the compact task is priced at."""
    seed: int = 1


@dataclass(frozen=True, slots=True)
class TaskRun:
    """One Lambda task: its CPU seconds here and the AWS calls it made."""

    cpu_s: float
    calls: tuple[Call, ...]
    parallel_gets: int = 1

    @property
    def io_s(self) -> float:
        """Modeled wait of its calls; GETs overlap ``parallel_gets`` at a time."""
        gets = [c for c in self.calls if c.operation == "GetObject"]
        others = [c for c in self.calls if c.operation != "GetObject"]
        return io_seconds(others) + io_seconds(gets) / self.parallel_gets

    def count(self, s3_class: str) -> int:
        """S3 requests of one pricing class (``put``: PUT and LIST; ``get``; ``free``)."""
        return sum(1 for c in self.calls if c.s3_class == s3_class)

    def operations(self, operation: str) -> int:
        """Calls of one API operation."""
        return sum(1 for c in self.calls if c.operation == operation)

    @property
    def read_units(self) -> float:
        """DynamoDB read request units."""
        return sum(c.read_units for c in self.calls)

    @property
    def write_units(self) -> float:
        """DynamoDB write request units."""
        return sum(c.write_units for c in self.calls)

    def duration_s(self, memory_mb: int) -> float:
        """Lambda duration at ``memory_mb`` (`benchmarks.pricing.lambda_duration`)."""
        return lambda_duration(self.cpu_s, self.io_s, memory_mb)


@dataclass(frozen=True, slots=True)
class PassCost:
    """One pass: the list task, each compact task, the collect task."""

    listing: TaskRun
    compact: tuple[TaskRun, ...]
    collect: TaskRun
    topics: int
    segments_merged: int = 0
    """L0 segments the compact tasks merged into L1."""
    items_removed: int = 0
    """Chain items the compact tasks deleted."""

    @property
    def tasks(self) -> tuple[TaskRun, ...]:
        """Every Lambda task of the pass, in order."""
        return (self.listing, *self.compact, self.collect)

    def execution_s(self, memory_mb: int) -> float:
        """The Express execution's duration: its tasks one after another."""
        return sum(task.duration_s(memory_mb) + STATE_OVERHEAD_S for task in self.tasks)

    def storage_cost(self) -> float:
        """S3 requests and DynamoDB units of every task, USD."""
        return sum(_storage_cost(task) for task in self.tasks)


@dataclass(frozen=True, slots=True)
class BucketState:
    """Objects and bytes under ``segments/``, and chain items stored."""

    l0_objects: int
    l0_bytes: int
    l1_objects: int
    l1_bytes: int


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """A read of one partition from offset 0 to its end through the SDK."""

    record_bytes: int
    gets: int
    get_bytes: int
    api_requests: int
    queries: int
    read_units: float
    modeled_s: float
    storage_cost: float
    """S3 GETs and DynamoDB units, USD."""
    l1_gets: int = 0
    """GETs of L1 segments (the others read the chain's L0 segments)."""

    @property
    def record_bytes_per_get(self) -> float:
        """Record bytes (keys, values, headers) delivered per S3 GET."""
        return self.record_bytes / max(1, self.gets)

    @property
    def get_bytes_per_get(self) -> float:
        """Bytes S3 returned per GET (compressed segment bytes)."""
        return self.get_bytes / max(1, self.gets)

    def per_gib(self, value: float) -> float:
        """``value`` per GiB of records read."""
        return value * GIB / self.record_bytes


@dataclass(frozen=True, slots=True)
class CompactionReport:
    """Every measurement of `run_compaction`."""

    workload: CompactionWorkload
    record_bytes: int
    """Record bytes appended to the W1-like topic."""
    before: BucketState
    after: BucketState
    chain_items_before: int
    chain_items_after: int
    early: PassCost
    """The pass before anything is a day old, with the full gc: merges nothing, its gc
    lists every segment and reads every item."""
    merge: PassCost
    truncate: PassCost
    idle: PassCost
    """A light pass with nothing to do: its collect is what every 5-minute pass's is."""
    fetch_before: ReplayReport
    fetch_after: ReplayReport
    replay: ReplayReport
    replay_segment_bytes: int
    """Record bytes of each L1 segment of the replay (what a W1 merge step makes)."""
    peak_mib_per_mib: float
    """Peak memory a merge step holds per MiB of records it merges (`merge_memory`)."""
    chain_item_bytes: float
    """Average billed size of a W1-like chain item (DynamoDB item size)."""
    entry_bytes: float
    """Average billed size of an L1 entry."""


def _storage_cost(task: TaskRun) -> float:

    return (
        task.count("put") * S3_PUT_REQUEST
        + task.count("get") * S3_GET_REQUEST
        + task.write_units * DYNAMODB_WRITE_UNIT
        + task.read_units * DYNAMODB_READ_UNIT
    )


class _InThread:
    """A `ThreadPoolExecutor` stand-in that maps in the calling thread (so the CPU of the
    merge's decoding is measured where the task runs)."""

    def __init__(self, *_: Any, **__: Any) -> None:
        pass

    def __enter__(self) -> _InThread:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def map(self, function: Callable[[Any], R], items: Sequence[Any]) -> Iterator[R]:
        return map(function, items)


def _peak_memory(action: Callable[[], R]) -> tuple[R, int]:
    """``action()`` and the peak bytes it held: Python's allocations (`tracemalloc`) plus
    Arrow's memory pool, sampled together every millisecond (and Python's own peak, when
    larger)."""
    arrow_base = pa.total_allocated_bytes()
    peak = [0]
    stop = threading.Event()

    def held() -> int:
        return tracemalloc.get_traced_memory()[0] + pa.total_allocated_bytes() - arrow_base

    def sample() -> None:
        while not stop.wait(0.001):
            peak[0] = max(peak[0], held() - base)

    tracemalloc.start()
    base = held()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        result = action()
        python_peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        stop.set()
        thread.join()
        tracemalloc.stop()
    return result, max(peak[0], python_peak)


def _w1_records(n: int, per_append: int, partitions: int, seed: int) -> list[Record]:
    """The records of W1-like append ``n``: keyed 1 KiB records, round robin."""
    values = make_values(per_append, RECORD_BYTES - 16, seed + n)
    return [
        Record(
            key=f"k{n:07d}-{i:05d}".encode()[:16].ljust(16, b"."),
            value=value,
            partition=i % partitions,
        )
        for i, value in enumerate(values)
    ]


def merge_memory(workload: CompactionWorkload, appends: int = 48) -> float:
    """Peak bytes a merge step holds per record byte it merges, measured on in-memory
    storage (no moto, no botocore in the way): ``appends`` W1-like appends a day old,
    merged in one step by the real `Merger`."""
    clock = [START_MS]
    storage = MemoryStorage(clock_ms=lambda: clock[0])
    engine = Engine(*storage.stores(), clock_ms=lambda: clock[0])
    topic = "w1.memory"
    engine.create_topic(topic, partitions=workload.partitions)
    per_append = workload.records_per_append
    for n in range(appends):
        engine.append(topic, _w1_records(n, per_append, workload.partitions, workload.seed))
    clock[0] += PRODUCER_EXPIRATION_MS + 60_000
    record = engine.context.current_topic(topic)
    settings = workload.settings
    result, peak = _peak_memory(
        lambda: Merger(engine.context).merge_topic(
            record,
            max_items=settings.max_merge_items,
            target_bytes=settings.target_l1_bytes,
            now_ms=clock[0],
            max_bytes=settings.max_merge_bytes,
        )
    )
    return peak / (result.items_merged * per_append * RECORD_BYTES)


class _Bench:
    """One moto deployment, its compactor and its clock."""

    def __init__(self, workload: CompactionWorkload) -> None:
        self.workload = workload
        self.run = Deployment(workload.seed)
        self.clock = self.run.clock
        with self.run.recorder.paused():
            self.engine = self.run.engine()
        self.compactor = Compactor(self.engine.context, self.engine.gc, workload.settings)
        self.s3 = self.run.session.client("s3")
        # Simulated time starts at the real time, so that the objects moto stamps with
        # the real time are as old as the simulated clock says.
        self.origin = max(0.0, time.time() - START_MS / 1000)

    def task(self, action: Callable[[], R], parallel_gets: int = 1) -> tuple[R, TaskRun]:
        """``action()`` as one Lambda task: its CPU and recorded calls."""
        with self.run.recorder.capture() as calls:
            result, cpu = self.run.account.cpu(action)
        return result, TaskRun(cpu, tuple(calls), parallel_gets)

    def run_pass(self, *, full_gc: bool = False) -> PassCost:
        """A pass as the state machine runs it: one compact task per listed topic, then
        the collect (``full_gc``: with the scan for orphans, as the daily pass)."""
        topics, listing = self.task(self.compactor.topics_needing_work)
        compact = []
        merged = removed = 0
        for topic in topics:
            steps, run = self.task(
                functools.partial(run_topic, self.compactor, topic), merge_module.GET_THREADS
            )
            compact.append(run)
            merged += sum(step.segments_merged for step in steps)
            removed += sum(step.items_removed for step in steps)
        _, collect = self.task(functools.partial(self.compactor.collect, full=full_gc))
        return PassCost(listing, tuple(compact), collect, len(topics), merged, removed)

    def at(self, seconds: float) -> None:
        """Move the clock."""
        self.clock.advance_to(self.origin + seconds)

    def bucket(self) -> BucketState:
        """Objects and bytes of each level (an un-recorded listing)."""
        counts = {"L0": [0, 0], "L1": [0, 0]}
        paginator = self.s3.get_paginator("list_objects_v2")
        with self.run.recorder.paused():
            for page in paginator.paginate(Bucket=self.run.names.bucket):
                for obj in page.get("Contents", []):
                    level = "L1" if "/L1/" in obj["Key"] else "L0"
                    counts[level][0] += 1
                    counts[level][1] += int(obj["Size"])
        return BucketState(*counts["L0"], *counts["L1"])

    def item_sizes(self) -> tuple[float, float]:
        """Average DynamoDB size of the chain items and of the L1 entries stored now
        (an un-recorded scan of the ledger table)."""
        chain: list[int] = []
        entries: list[int] = []
        client = self.run.session.client("dynamodb")
        for page in client.get_paginator("scan").paginate(TableName=self.run.names.ledger_table):
            for item in page["Items"]:
                pk = item["pk"]["S"]
                if pk.startswith("p#"):
                    entries.append(item_size(item))
                elif pk.startswith("t#") and int(item["sk"]["N"]) not in (0, HEAD_SK):
                    chain.append(item_size(item))
        return sum(chain) / max(1, len(chain)), sum(entries) / max(1, len(entries))

    def chain_items(self, topic: str) -> int:
        """Chain items stored (genesis included)."""
        record = self.engine.context.current_topic(topic)
        with self.run.recorder.paused():
            return sum(1 for _ in self.engine.context.ledger.chain(record.topic_id))

    def fill(self, topic: str, partitions: int, appends: int, per_append: int, gap_s: float) -> int:
        """Append ``appends`` keyed batches of ``per_append`` 1 KiB records, round robin over
        the partitions, ``gap_s`` of modeled time apart; the record bytes appended."""
        total = 0
        with self.run.recorder.paused():
            self.engine.create_topic(topic, partitions=partitions)
            for n in range(appends):
                self.at(n * gap_s)
                records = _w1_records(n, per_append, partitions, self.workload.seed)
                self.engine.append(topic, records)
                total += sum(16 + len(r.value or b"") for r in records)
        return total

    def replay(self, topic: str, partition: int) -> ReplayReport:
        """Read ``partition`` from offset 0 to its end with the SDK over HTTPS, on a fresh
        engine (a warm function that has not read this topic yet)."""
        transport = self.run.transport(https=True, producer=False)
        start = len(self.run.log)
        end = self.engine.context.topic_state(
            self.engine.context.current_topic(topic)
        ).high_watermark(partition)
        consumer = Consumer(
            transport, auto_offset_reset="earliest", max_poll_records=10_000, _clock=self.clock
        )
        record_bytes = 0
        with sim_time(self.clock), redirect_stdout(io.StringIO()):
            consumer.assign([TopicPartition(topic, partition)])
            tp = TopicPartition(topic, partition)
            while consumer.position(tp) < end:
                for batch in consumer.poll(timeout_ms=0).values():
                    record_bytes += sum(len(r.key or b"") + len(r.value or b"") for r in batch)
            consumer.close(autocommit=False)
        requests = [r for r in self.run.log[start:] if r.operation in ("Fetch", "FetchMany")]
        calls = [c for r in requests for c in r.calls]
        run = TaskRun(0.0, tuple(calls))
        return ReplayReport(
            record_bytes=record_bytes,
            gets=run.operations("GetObject"),
            get_bytes=sum(c.bytes_received for c in calls),
            api_requests=sum(len(r.invocations) for r in requests),
            queries=run.operations("Query"),
            read_units=run.read_units,
            modeled_s=sum(r.latency_s for r in requests),
            storage_cost=_storage_cost(run),
            l1_gets=sum(
                1 for c in calls if c.operation == "GetObject" and "/L1/" in c.params["Key"]
            ),
        )


def run_compaction(workload: CompactionWorkload | None = None) -> CompactionReport:
    """Run the compactor benchmark on a fresh moto deployment (see the module docstring)."""
    workload = workload or CompactionWorkload()
    serialize_moto_dynamodb()
    grace_s = DEFAULT_GRACE_MS / 1000
    day_s = PRODUCER_EXPIRATION_MS / 1000
    with (
        mock_aws(),
        mock.patch.object(merge_module, "ThreadPoolExecutor", _InThread),
    ):
        bench = _Bench(workload)
        account = bench.run.account
        with account.excluding_moto(), account.excluding_gc():
            topic = "w1.compaction"
            gap = 1 / W1_APPENDS_PER_S
            record_bytes = bench.fill(
                topic, workload.partitions, workload.appends, workload.records_per_append, gap
            )
            last = (workload.appends - 1) * gap
            before = bench.bucket()
            items_before = bench.chain_items(topic)
            fetch_before = bench.replay(topic, 0)
            bench.at(last + grace_s + 60)
            early = bench.run_pass(full_gc=True)
            bench.at(last + day_s + 60)
            merge = bench.run_pass()
            chain_item_bytes, entry_bytes = bench.item_sizes()
            bench.at(last + day_s + grace_s + 120)
            truncate = bench.run_pass()
            bench.at(last + day_s + grace_s + 420)
            idle = bench.run_pass()
            after = bench.bucket()
            items_after = bench.chain_items(topic)
            fetch_after = bench.replay(topic, 0)
            replay, segment_bytes = _replay(bench, workload, record_bytes)
        peak_per_mib = merge_memory(workload)
    return CompactionReport(
        workload=workload,
        record_bytes=record_bytes,
        before=before,
        after=after,
        chain_items_before=items_before,
        chain_items_after=items_after,
        early=early,
        merge=merge,
        truncate=truncate,
        idle=idle,
        fetch_before=fetch_before,
        fetch_after=fetch_after,
        replay=replay,
        replay_segment_bytes=segment_bytes,
        peak_mib_per_mib=peak_per_mib,
        chain_item_bytes=chain_item_bytes,
        entry_bytes=entry_bytes,
    )


def _replay(bench: _Bench, workload: CompactionWorkload, w1_bytes: int) -> tuple[ReplayReport, int]:
    """The replay topic: one partition merged in steps of what a W1 step holds of one
    partition, read from the start. Returns the replay and the L1 segment size."""
    segment = w1_segment_bytes(workload.settings, w1_bytes / workload.appends, workload.partitions)
    items = max(1, round(segment / _MIB))
    topic = "w1.replay"
    start = bench.clock.elapsed() - bench.origin + 1
    gap = 1.0
    bench.at(start)
    values_per_append = _MIB // RECORD_BYTES
    with bench.run.recorder.paused():
        bench.engine.create_topic(topic, partitions=1)
        for n in range(workload.replay_appends):
            bench.at(start + n * gap)
            values = make_values(values_per_append, RECORD_BYTES - 16, 1_000_000 + n)
            bench.engine.append(
                topic,
                [
                    Record(key=f"r{n:06d}-{i:07d}".encode()[:16], value=v, partition=0)
                    for i, v in enumerate(values)
                ],
            )
        # The tail is never merged: one small record, so that the replay reads L1.
        bench.engine.append(topic, [Record(key=b"tail", value=b"tail", partition=0)])
        now = start + workload.replay_appends * gap + PRODUCER_EXPIRATION_MS / 1000 + 60
        compactor = Compactor(
            bench.engine.context,
            bench.engine.gc,
            replace(workload.settings, max_merge_items=items),
        )
        # A merge moves the chain start at most once per grace period (ADR 0013, 4).
        for _ in range(workload.replay_appends):
            bench.at(now)
            if not any(step.segments_merged for step in run_topic(compactor, topic)):
                break
            now += DEFAULT_GRACE_MS / 1000 + 60
    return bench.replay(topic, 0), round(items * _MIB)


def w1_segment_bytes(settings: CompactionSettings, append_bytes: float, partitions: int) -> float:
    """Record bytes of each L1 segment a merge step of a W1-like topic writes per partition:
    its share of the step (`CompactionSettings.max_merge_items` appends of
    ``append_bytes``, at most `CompactionSettings.max_merge_bytes`), at most the target."""
    step = min(settings.max_merge_items * append_bytes, settings.max_merge_bytes)
    return min(settings.target_l1_bytes, step / partitions)


# A month of W1 with the compactor -------------------------------------------------------
@dataclass(frozen=True, slots=True)
class W1Shape:
    """W1 as the cost benchmark runs it, and the compactor's schedule over it."""

    mib_per_s: float = W1_MIB_PER_S
    appends_per_s: float = W1_APPENDS_PER_S
    partitions: int = W1_PARTITIONS
    retention_days: float = 7.0
    pass_every_s: float = 300.0
    grace_s: float = DEFAULT_GRACE_MS / 1000
    full_gc_every_s: float | None = DAY_S
    """How often a pass runs the full gc (its own schedule, ``compactor_full_gc_schedule``:
    daily), the 5-minute passes running the light one and the truncation deleting the L0
    segments of the items it deletes. None: every pass's collect runs the full gc and
    nothing else deletes segments (before ADR 0013 5.5's change)."""

    @property
    def gib_per_month(self) -> float:
        """Record GiB appended (and merged) a month."""
        return self.mib_per_s * _MIB * MONTH_S / GIB

    @property
    def merge_every_s(self) -> float:
        """A merge moves the chain start at most once per grace period; the first pass
        after it merges again (ADR 0013, 4)."""
        return self.grace_s + self.pass_every_s

    @property
    def chain_hold_s(self) -> float:
        """How long an item (and its L0 segment) is stored on average: a day, half a merge
        interval waiting for the next merge, then a grace period and a pass until the
        truncation deletes it and gc its segment."""
        return PRODUCER_EXPIRATION_MS / 1000 + self.merge_every_s / 2 + self.merge_every_s

    @property
    def passes_per_month(self) -> float:
        """Compactor passes a month on the 5-minute schedule."""
        return MONTH_S / self.pass_every_s

    @property
    def full_gc_per_month(self) -> float:
        """Passes a month that run the full gc: those of its own schedule, or every pass."""
        if self.full_gc_every_s is None:
            return self.passes_per_month
        return MONTH_S / self.full_gc_every_s

    @property
    def light_passes_per_month(self) -> float:
        """Passes a month whose collect is light (none when every pass runs the full gc)."""
        return 0.0 if self.full_gc_every_s is None else self.passes_per_month

    @property
    def merges_per_month(self) -> float:
        """Pass in which the W1 topic has work (a merge and a truncation)."""
        return MONTH_S / self.merge_every_s


@dataclass(frozen=True, slots=True)
class W1Compaction:
    """USD a month the compactor adds to W1, by part, and the usage behind it."""

    merge_storage: float
    """S3 requests and DynamoDB units of the compact tasks (merge, truncation)."""
    merge_lambda: float
    """Compact tasks: Lambda requests and GB-seconds."""
    gc_storage: float
    """The collects: the full gc's LISTs and reads of every chain item and entry, the
    light collects' reads of each topic's tail, and the truncation's reads of the items it
    deletes (to delete their L0 segments)."""
    list_storage: float
    """Every pass's ``topics_needing_work`` queries."""
    pass_lambda: float
    """The list and collect tasks of every pass: Lambda requests and GB-seconds."""
    express: float
    """Step Functions Express: one execution a pass (5-minute and full gc), requests and
    duration."""
    storage_change: float
    """S3 and DynamoDB storage with the compactor minus W1's as priced (negative: saved)."""
    usage: dict[str, float]

    @property
    def total(self) -> float:
        """Every part."""
        return (
            self.merge_storage
            + self.merge_lambda
            + self.gc_storage
            + self.list_storage
            + self.pass_lambda
            + self.express
            + self.storage_change
        )


def _lambda_cost(duration_s: float, memory_mb: int) -> float:

    return LAMBDA_REQUEST + duration_s * memory_mb / 1024 * LAMBDA_ARM_GB_SECOND


def _task_cost(task: TaskRun, memory_mb: int) -> float:
    return _lambda_cost(task.duration_s(memory_mb), memory_mb)


@dataclass(frozen=True, slots=True)
class GcScan:
    """What one collect pass reads in W1's steady state, scaled from the measured one."""

    objects: float
    chain_items: float
    entries: float
    list_requests: float
    read_units: float
    queries: float
    cpu_s: float

    @property
    def io_s(self) -> float:
        """Modeled wait: each LIST and Query one after another (`benchmarks.simulation`)."""

        return self.list_requests * S3_GET_S + self.queries * DDB_READ_S

    def duration_s(self, memory_mb: int) -> float:
        """Lambda duration of the scan."""
        return lambda_duration(self.cpu_s, self.io_s, memory_mb)


DYNAMODB_PAGE_BYTES: Final = 1 << 20
"""Bytes one Query page returns at most."""
LIST_PAGE_OBJECTS: Final = 1000
"""Keys one ListObjectsV2 request returns at most."""


def gc_scan(report: CompactionReport, shape: W1Shape) -> GcScan:
    """The collect of one pass over W1 in steady state.

    gc lists every segment of the topic and, when any is older than the grace period (in
    W1 there always is), reads every chain item and every L1 entry (ADR 0013, 3.3). In
    steady state W1 stores `W1Shape.chain_hold_s` of chain items and L0 segments, and its
    retention of merged records in L1 entries (1 MiB row groups) and segments. CPU is the
    measured CPU per item and object of the early pass (which read every item of the
    W1-like topic) over the idle pass (which read almost none).
    """
    items = shape.appends_per_s * shape.chain_hold_s
    l1_record_bytes = shape.mib_per_s * _MIB * (shape.retention_days * DAY_S - shape.chain_hold_s)
    segment = w1_segment_bytes(
        report.workload.settings, report.record_bytes / report.workload.appends, shape.partitions
    )
    l1_objects = l1_record_bytes / segment
    entries = l1_record_bytes / merge_module.L1_ROW_GROUP_BYTES + l1_objects
    objects = items + l1_objects
    chain_bytes = items * report.chain_item_bytes
    entry_bytes = entries * report.entry_bytes
    measured_things = 2 * (report.chain_items_before - report.chain_items_after)
    cpu_per_thing = max(0.0, report.early.collect.cpu_s - report.idle.collect.cpu_s) / max(
        1, measured_things
    )
    return GcScan(
        objects=objects,
        chain_items=items,
        entries=entries,
        list_requests=math.ceil(objects / LIST_PAGE_OBJECTS),
        read_units=math.ceil((chain_bytes + entry_bytes) / 4096),
        queries=math.ceil(chain_bytes / DYNAMODB_PAGE_BYTES)
        + shape.partitions * math.ceil(entry_bytes / shape.partitions / DYNAMODB_PAGE_BYTES),
        cpu_s=cpu_per_thing * (items + entries + objects),
    )


def compact_gb_seconds_per_gib(report: CompactionReport, memory_mb: int) -> float:
    """Lambda GB-seconds of the compact tasks (merge and truncation) per GiB merged."""
    tasks = (*report.merge.compact, *report.truncate.compact)
    seconds = sum(task.duration_s(memory_mb) for task in tasks)
    return seconds * memory_mb / 1024 * GIB / report.record_bytes


@dataclass(frozen=True, slots=True)
class MergeUnits:
    """What the compact tasks spend per unit of work, measured (merge, then truncation)."""

    gets_per_segment: float
    """S3 GETs per L0 segment merged."""
    wru_per_item: float
    """Write units per chain item deleted."""
    wru_per_entry: float
    """Write units per L1 entry put."""
    puts_per_segment: float
    """S3 PUTs per L1 segment written."""
    per_merge: float
    """USD of everything else (queries, meta updates) per merge and truncation."""


def merge_units(report: CompactionReport) -> MergeUnits:
    """The compact tasks' usage of the merge and truncation passes, per unit of work."""
    merge, truncate = report.merge, report.truncate
    calls = [c for task in merge.compact for c in task.calls]
    entry_puts = [
        c
        for c in calls
        if c.operation == "PutItem" and str(c.params.get("Item", {}).get("pk", {})).find("p#") >= 0
    ]
    l1_puts = [c for c in calls if c.operation == "PutObject"]
    gets = [c for c in calls if c.operation == "GetObject"]
    deletes = [
        c for task in truncate.compact for c in task.calls if c.operation == "BatchWriteItem"
    ]
    units = MergeUnits(
        gets_per_segment=len(gets) / max(1, merge.segments_merged),
        wru_per_item=sum(c.write_units for c in deletes) / max(1, truncate.items_removed),
        wru_per_entry=sum(c.write_units for c in entry_puts) / max(1, len(entry_puts)),
        puts_per_segment=1.0,
        per_merge=0.0,
    )
    total = sum(_storage_cost(task) for task in (*merge.compact, *truncate.compact))
    counted = (
        len(gets) * S3_GET_REQUEST
        + len(l1_puts) * S3_PUT_REQUEST
        + sum(c.write_units for c in (*deletes, *entry_puts)) * DYNAMODB_WRITE_UNIT
    )
    return replace(units, per_merge=max(0.0, total - counted))


def compact_storage_per_gib(report: CompactionReport) -> float:
    """S3 requests and DynamoDB units (USD) of the compact tasks per GiB merged, as
    measured (small segments: more PUTs and entries per GiB than W1's)."""
    tasks = (*report.merge.compact, *report.truncate.compact)
    return sum(_storage_cost(task) for task in tasks) * GIB / report.record_bytes


def merge_storage_month(report: CompactionReport, shape: W1Shape) -> float:
    """S3 requests and DynamoDB units of a month of W1's merges and truncations: the
    measured units per L0 segment, chain item, L1 segment and entry, times W1's."""
    units = merge_units(report)
    segment = w1_segment_bytes(
        report.workload.settings, report.record_bytes / report.workload.appends, shape.partitions
    )
    items = shape.appends_per_s * MONTH_S
    record_bytes = shape.gib_per_month * GIB
    l1_segments = record_bytes / segment
    entries = record_bytes / merge_module.L1_ROW_GROUP_BYTES + l1_segments
    return (
        items * units.gets_per_segment * S3_GET_REQUEST
        + items * units.wru_per_item * DYNAMODB_WRITE_UNIT
        + l1_segments * units.puts_per_segment * S3_PUT_REQUEST
        + entries * units.wru_per_entry * DYNAMODB_WRITE_UNIT
        + shape.merges_per_month * units.per_merge
    )


def truncation_read_units(report: CompactionReport, shape: W1Shape) -> float:
    """RRU a W1 merge interval's truncation spends reading the items it deletes (their
    segment ids) and the page of items from the chain start (`Compactor._l0_segments_of`):
    strongly consistent Queries of `CompactionSettings.max_items_per_step` items."""
    page = report.workload.settings.max_items_per_step
    items = shape.appends_per_s * shape.merge_every_s
    per_query = math.ceil(page * report.chain_item_bytes / 4096)
    return (math.ceil(items / page) + 1) * per_query


def left_to_full_gc(report: CompactionReport, shape: W1Shape) -> float:
    """Share of W1's L0 segments the truncation leaves to the full gc: those uploaded less
    than `SHARED_SEGMENT_MS` before the last item of the page it reads from the chain
    start (the page spans ``max_items_per_step`` appends)."""
    page_s = report.workload.settings.max_items_per_step / shape.appends_per_s
    window_s = max(0.0, SHARED_SEGMENT_MS / 1000 - page_s)
    return min(1.0, window_s / shape.merge_every_s)


def price_w1(
    report: CompactionReport, memory_mb: int, shape: W1Shape | None = None
) -> W1Compaction:
    """What running the compactor every 5 minutes adds to a month of W1.

    Parameters
    ----------
    report
        The measurements of `run_compaction`.
    memory_mb
        Memory of the compact task (the list and collect tasks are priced at it too).
    shape
        W1 and the schedule (`W1Shape` defaults when None).
    """
    shape = shape or W1Shape()
    scan = gc_scan(report, shape)
    merges = shape.merges_per_month
    light, full = shape.light_passes_per_month, shape.full_gc_per_month
    passes = light + full
    listing = report.idle.listing
    listing_s = listing.duration_s(memory_mb)
    light_collect = report.idle.collect
    """A light collect reads the catalog and each topic's tail (measured)."""
    collect_s = full * scan.duration_s(memory_mb) + light * light_collect.duration_s(memory_mb)
    compact_s = (
        compact_gb_seconds_per_gib(report, memory_mb) * shape.gib_per_month / (memory_mb / 1024)
    )
    execution_s = listing_s + collect_s / passes + 2 * STATE_OVERHEAD_S
    express = (passes - merges) * express_execution_cost(execution_s) + merges * (
        express_execution_cost(execution_s + compact_s / merges + STATE_OVERHEAD_S)
    )
    scan_cost = scan.list_requests * S3_PUT_REQUEST + scan.read_units * DYNAMODB_READ_UNIT
    gc_storage = full * scan_cost + light * _storage_cost(light_collect)
    if shape.full_gc_every_s is not None:
        gc_storage += merges * truncation_read_units(report, shape) * DYNAMODB_READ_UNIT
    s3_before, s3_after, ddb_before, ddb_after = _stored_gib(report, shape, scan)
    usage = {
        "compact_gb_s": compact_s * memory_mb / 1024,
        "compact_invocations": merges,
        "gc_objects": scan.objects,
        "gc_items": scan.chain_items + scan.entries,
        "gc_list": scan.list_requests * full,
        "gc_rru": scan.read_units * full,
        "full_gc_passes": full,
        "truncation_rru": truncation_read_units(report, shape),
        "left_to_full_gc": left_to_full_gc(report, shape),
        "gc_scan_s": scan.duration_s(memory_mb),
        "execution_s": execution_s,
        "s3_gib_before": s3_before,
        "s3_gib_after": s3_after,
    }
    return W1Compaction(
        merge_storage=merge_storage_month(report, shape),
        merge_lambda=merges * LAMBDA_REQUEST + compact_s * memory_mb / 1024 * LAMBDA_ARM_GB_SECOND,
        gc_storage=gc_storage,
        list_storage=passes * _storage_cost(listing),
        pass_lambda=2 * passes * LAMBDA_REQUEST
        + (passes * listing_s + collect_s) * memory_mb / 1024 * LAMBDA_ARM_GB_SECOND,
        express=express,
        storage_change=(s3_after - s3_before) * S3_STORAGE_GB_MONTH
        + (ddb_after - ddb_before) * DYNAMODB_STORAGE_GB_MONTH,
        usage=usage,
    )


def _stored_gib(
    report: CompactionReport, shape: W1Shape, scan: GcScan
) -> tuple[float, float, float, float]:
    """GiB stored in S3 and DynamoDB without the compactor (W1 as the cost benchmark prices
    it: L0 segments and chain items for the whole retention) and with it (L0 and chain
    items for `W1Shape.chain_hold_s`, then L1 segments and entries; the L0 segments the
    truncation leaves to the full gc, `left_to_full_gc`, half a full gc interval more)."""
    l0_ratio = report.before.l0_bytes / report.record_bytes
    l1_ratio = report.after.l1_bytes / max(1, report.record_bytes - _tail_bytes(report))
    retention_s = shape.retention_days * DAY_S
    held_s = shape.chain_hold_s
    left_s = 0.0
    if shape.full_gc_every_s is not None:
        left_s = left_to_full_gc(report, shape) * shape.full_gc_every_s / 2
    bytes_per_s = shape.mib_per_s * _MIB
    item_bytes = report.chain_item_bytes + DYNAMODB_ITEM_OVERHEAD_BYTES
    return (
        bytes_per_s * retention_s * l0_ratio / GIB,
        bytes_per_s * ((held_s + left_s) * l0_ratio + (retention_s - held_s) * l1_ratio) / GIB,
        shape.appends_per_s * retention_s * item_bytes / GIB,
        (
            shape.appends_per_s * held_s * item_bytes
            + scan.entries * (report.entry_bytes + DYNAMODB_ITEM_OVERHEAD_BYTES)
        )
        / GIB,
    )


def _tail_bytes(report: CompactionReport) -> int:
    """Record bytes of the W1-like topic's last append (the tail is never merged)."""
    return report.record_bytes // report.workload.appends


LAMBDA_BASE_MB: Final = 200
"""Resident memory of a compact task before it merges (Python, boto3, pyarrow)."""


def required_memory_mb(report: CompactionReport, shape: W1Shape | None = None) -> float:
    """Memory a W1 merge step needs: the base plus the measured peak per MiB times the
    step's record MiB."""
    shape = shape or W1Shape()
    settings = report.workload.settings
    step = min(
        settings.max_merge_items * report.record_bytes / report.workload.appends,
        settings.max_merge_bytes,
    )
    return LAMBDA_BASE_MB + report.peak_mib_per_mib * step / _MIB


def choose_memory(report: CompactionReport, margin: float = 1.25) -> int:
    """The cheapest of ``workload.memory_mb`` with ``margin`` over `required_memory_mb`
    (the largest when none has)."""
    fits = [m for m in report.workload.memory_mb if m >= margin * required_memory_mb(report)]
    if not fits:
        return max(report.workload.memory_mb)
    return min(fits, key=lambda m: (compact_gb_seconds_per_gib(report, m), m))


@dataclass(frozen=True, slots=True)
class DayReplay:
    """The replay of one day of one W1 partition after the merge, scaled from the
    measured replay (one GET per L1 segment, one API request per 3 MiB)."""

    record_gib: float
    gets: float
    api_requests: float
    queries: float
    modeled_s: float
    record_mib_per_get: float
    s3_mib_per_get: float


def replay_day(report: CompactionReport, shape: W1Shape | None = None) -> DayReplay:
    """One day of one W1 partition replayed from L1: the measured replay (whose records
    all come from L1 but one tiny tail record) scaled by record bytes."""
    shape = shape or W1Shape()
    replay = report.replay
    day_bytes = shape.mib_per_s * _MIB * DAY_S / shape.partitions
    scale = day_bytes / replay.record_bytes
    gets = max(1, replay.l1_gets)
    return DayReplay(
        record_gib=day_bytes / GIB,
        gets=gets * scale,
        api_requests=replay.api_requests * scale,
        queries=replay.queries * scale,
        modeled_s=replay.modeled_s * scale,
        record_mib_per_get=replay.record_bytes / gets / _MIB,
        s3_mib_per_get=replay.get_bytes / gets / _MIB,
    )

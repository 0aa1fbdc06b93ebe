"""The dispatcher: delivers a topic's records to subscribed functions (ADR 0015 §2, §3).

Each (subscription, partition) is delivered by at most one dispatcher at a time, under the
lease of the subscription's consumer group (ADR 0009): read from the committed offset,
build Lambda's self-managed Kafka event, invoke through the injected `Invoker`, commit
the next offset at the lease's epoch. Failures are retried with backoff (the delivery
state item, `lakelog.storage.delivery`), bisected, resumed from a partial failure's first
failed offset, and finally sent with their error context to the on-failure destination.

Two triggers: `Dispatcher.on_appended` (the ledger stream named topics with new chain
items) and `Dispatcher.resume_due` (the schedule: one query of the due states).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import functools
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Final

from lakelog.errors import (
    LakelogError,
    LeaseFencedError,
    OffsetOutOfRangeError,
    TopicNotFoundError,
)
from lakelog.limits import MAX_FETCH_BYTES, MAX_RECORD_BYTES
from lakelog.service.context import TOPIC_CACHE_SECONDS
from lakelog.service.engine import Engine
from lakelog.service.groups import GroupView
from lakelog.service.invoke import InvokeOutcome, Invoker, QueueSender
from lakelog.storage.delivery import DeliveryState, DeliveryStateStore, RunGuard
from lakelog.storage.ports import LeaseRecord, MemberRecord, TopicRecord
from lakelog.types import FetchResult, OffsetCommit, Record, StoredRecord, Subscription

__all__ = [
    "BACKOFF_BASE_MS",
    "BACKOFF_MAX_MS",
    "DEFAULT_SESSION_MS",
    "DELIVERY_MEMORY_MB",
    "INLINE_WINDOW_MS",
    "MAX_CONCURRENT_DELIVERIES",
    "MAX_EVENT_BYTES",
    "SQS_MESSAGE_BYTES",
    "DispatchReport",
    "Dispatcher",
    "ListSubscriptions",
    "backoff_ms",
    "deliveries_for_memory",
    "failure_offset",
    "kafka_event",
    "kafka_record",
]

log = logging.getLogger(__name__)

MAX_EVENT_BYTES: Final = 6 * 1024 * 1024
"""Bytes of one event's JSON at most: Lambda's payload limit of a synchronous invoke."""
SQS_MESSAGE_BYTES: Final = 256 * 1024
"""Bytes of one SQS message at most (an on-failure record sent to a queue)."""
DEFAULT_SESSION_MS: Final = 330_000
"""The dispatching member's session: longer than the dispatcher function's own timeout and
the invoke's read timeout (300 s, `lakelog.service.invokers`), so no second dispatcher takes
a partition whose delivery is still waiting on its function (ADR 0015 §2)."""
BACKOFF_BASE_MS: Final = 1_000
"""Wait before the first retry of a failed batch; each later retry waits twice as long."""
BACKOFF_MAX_MS: Final = 60_000
"""The longest wait between two attempts of one batch."""
INLINE_WINDOW_MS: Final = 1_000
"""A batching window ending at most this far ahead is waited for in the delivery itself
(then the batch goes out at once); a later one is left to the schedule (ADR 0015 §2)."""
MAX_BATCHES_PER_DELIVERY: Final = 100
"""Batches one delivery sends before it leaves the rest to the schedule (due at once)."""

MAX_CONCURRENT_DELIVERIES: Final = 16
"""Deliveries one trigger runs at once, each in a thread of its own: a delivery mostly waits
(on its function's Invoke and on DynamoDB), so a trigger's partitions go out together and the
trigger lasts about as long as its longest delivery, not the sum of them (ADR 0015 §2)."""

DELIVERY_MEMORY_MB: Final = 32
"""Memory one delivery may hold at worst: an event of `MAX_EVENT_BYTES` (6 MB of JSON),
its records and their base64, about three times that."""
_RUNTIME_MEMORY_MB: Final = 192
"""Memory of the dispatcher function's runtime and caches (64 MB of segment bytes)."""


def deliveries_for_memory(memory_mb: int) -> int:
    """Concurrent deliveries a dispatcher function of ``memory_mb`` can hold at worst
    (`DELIVERY_MEMORY_MB` each beyond its runtime), 1 to `MAX_CONCURRENT_DELIVERIES`."""
    room = (memory_mb - _RUNTIME_MEMORY_MB) // DELIVERY_MEMORY_MB
    return max(1, min(MAX_CONCURRENT_DELIVERIES, room))


ListSubscriptions = Callable[[str], Sequence[Subscription]]
"""The subscription store's read port: the subscriptions of a topic, by topic name."""

_ENVELOPE_BYTES: Final = 4096
"""Room kept in an event for everything but its records (names, bootstrap servers)."""

_Work = Callable[["DispatchReport"], None]
"""One delivery of a (subscription, partition), adding what it did to a report."""
_Plan = Callable[[], dict[tuple[str, int], _Work]]
"""Finds deliveries to run, by (group, partition)."""


def _threads(workers: int) -> Executor:
    """The default executor of a trigger's deliveries: that many threads."""
    return ThreadPoolExecutor(workers, thread_name_prefix="lakelog-delivery")


def backoff_ms(attempts: int) -> int:
    """Wait after the ``attempts``-th failure of a batch: 1 s doubling, at most 60 s."""
    return int(min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** min(max(attempts - 1, 0), 16)))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def kafka_record(topic: str, record: StoredRecord) -> dict[str, Any]:
    """One record as Lambda's Kafka event source writes it (ADR 0015 §3).

    ``key`` and ``value`` are base64, left out when absent (no key, a tombstone);
    headers are one-entry objects of byte integers, in record order.
    """
    item: dict[str, Any] = {
        "topic": topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp_ms,
        "timestampType": "CREATE_TIME",
    }
    if record.key is not None:
        item["key"] = _b64(record.key)
    if record.value is not None:
        item["value"] = _b64(record.value)
    item["headers"] = [{name: list(value or b"")} for name, value in record.headers]
    return item


def kafka_event(
    topic: str, partition: int, records: Sequence[StoredRecord], bootstrap_servers: str
) -> dict[str, Any]:
    """The self-managed Kafka event of one partition's ``records``."""
    return {
        "eventSource": "SelfManagedKafka",
        "bootstrapServers": bootstrap_servers,
        "records": {f"{topic}-{partition}": [kafka_record(topic, r) for r in records]},
    }


def _json_size(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


def failure_offset(
    payload: object, topic: str, partition: int, records: Sequence[StoredRecord]
) -> int | None:
    """Where a ``batchItemFailures`` reply says the batch failed first.

    None: every record succeeded (no reply, no failures). The lowest failed offset of a
    well-formed reply; the batch's first offset when the reply is malformed (not a list,
    an identifier that is not ``{partition: "topic-p", offset}`` of a record of the
    batch), which fails the whole batch as Lambda does.
    """
    if payload is None or (isinstance(payload, Mapping) and "batchItemFailures" not in payload):
        return None
    whole = records[0].offset
    failures = payload.get("batchItemFailures") if isinstance(payload, Mapping) else None
    if failures is None:
        return None if isinstance(payload, Mapping) else whole
    if not isinstance(failures, list):
        return whole
    offsets = {record.offset for record in records}
    found: list[int] = []
    for failure in failures:
        ident = failure.get("itemIdentifier") if isinstance(failure, Mapping) else None
        if not isinstance(ident, Mapping):
            return whole
        offset = ident.get("offset")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset not in offsets:
            return whole
        if ident.get("partition") != f"{topic}-{partition}":
            return whole
        found.append(offset)
    return min(found) if found else None


@dataclass
class DispatchReport:
    """What one trigger did: invocations, records acknowledged by the functions, failed
    invocations, records sent to on-failure destinations (or skipped without one)."""

    invocations: int = 0
    records_delivered: int = 0
    failures: int = 0
    records_failed: int = 0

    def add(self, other: DispatchReport) -> None:
        """Count ``other``'s deliveries in this report too."""
        self.invocations += other.invocations
        self.records_delivered += other.records_delivered
        self.failures += other.failures
        self.records_failed += other.records_failed


class _LeaseLost(Exception):  # noqa: N818 - a signal within this module
    """The delivery's commit was fenced: another member holds the lease now."""


@dataclass
class _Delivery:
    """One delivery under way: the subscription, the partition and the lease held."""

    sub: Subscription
    topic: TopicRecord
    partition: int
    lease: LeaseRecord
    state: DeliveryState
    stored: bool = True
    """Whether the state has an item (else the run guard covers the delivery)."""

    @property
    def key(self) -> str:
        return f"{self.topic.name}-{self.partition}"


@dataclass
class _Batch:
    """Records read for one invocation: from ``start``; ``end`` is where the next read
    starts (past gaps that key compaction left); ``full`` when no window should wait."""

    start: int
    records: list[StoredRecord]
    end: int
    cursor: str | None
    full: bool


class Dispatcher:
    """Delivers records of subscribed topics to their functions (ADR 0015 §2).

    Parameters
    ----------
    engine
        The engine whose topics, fetcher, appender and group store deliveries use.
    subscriptions
        The subscriptions of a topic, by topic name (the subscription store's read port).
    invoker, queue_sender
        Invoke a function; send an on-failure record to an SQS queue.
    states
        The delivery states (retries, batching windows, running deliveries).
    bootstrap_servers
        The events' ``bootstrapServers``: comma-separated ``host:port`` of the Kafka
        gateway, or whatever names the deployment.
    session_ms
        The dispatching member's session; must exceed the functions' timeout.
    max_batches
        Batches one delivery sends before it leaves the rest to the schedule.
    inline_window_ms
        The longest batching window a delivery waits for itself, with ``sleep``.
    sleep
        Sleeps that many seconds (injected for tests, with the engine's fake clock).
    max_concurrent_deliveries
        Deliveries of one trigger that run at once, each in its own thread (different
        partitions or subscriptions; one partition is never delivered twice at once). 1
        delivers one after another in the calling thread.
    executor
        Makes the executor of a trigger's deliveries, given the number of workers
        (threads by default; the benchmark meters each one). Used only when more than one
        delivery may run at once; shut down at the end of the trigger.

    One trigger runs at a time per dispatcher: its member id holds the leases.
    """

    def __init__(
        self,
        engine: Engine,
        subscriptions: ListSubscriptions,
        invoker: Invoker,
        queue_sender: QueueSender,
        *,
        states: DeliveryStateStore,
        bootstrap_servers: str,
        session_ms: int = DEFAULT_SESSION_MS,
        max_batches: int = MAX_BATCHES_PER_DELIVERY,
        inline_window_ms: int = INLINE_WINDOW_MS,
        sleep: Callable[[float], None] = time.sleep,
        max_concurrent_deliveries: int = MAX_CONCURRENT_DELIVERIES,
        executor: Callable[[int], Executor] = _threads,
    ) -> None:
        if max_concurrent_deliveries < 1:
            raise ValueError(f"max_concurrent_deliveries must be >= 1: {max_concurrent_deliveries}")
        self._engine = engine
        self._ctx = engine.context
        self._groups = engine.groups.store
        self._subscriptions = subscriptions
        self._invoker = invoker
        self._queues = queue_sender
        self._states = states
        self._servers = bootstrap_servers
        self._session_ms = session_ms
        self._max_batches = max_batches
        self._inline_window_ms = inline_window_ms
        self._sleep = sleep
        self._concurrency = max_concurrent_deliveries
        self._executor = executor
        self.member_id = f"dispatcher-{uuid.uuid4().hex}"
        self._joined: dict[str, int] = {}  # group -> when its member item was put
        self._joined_lock = threading.Lock()
        self._names: dict[str, str] = {}  # topic id -> name
        self._names_ms = -1

    # Triggers ---------------------------------------------------------------------------
    def on_appended(self, topic_ids: Iterable[str]) -> DispatchReport:
        """Deliver, for each subscription of the topics with these ids, every partition
        with records past its committed offset (the ledger stream's trigger)."""
        ids = list(dict.fromkeys(topic_ids))
        return self._run_all([], self._plans(ids), ids)

    def resume_due(self) -> DispatchReport:
        """Resume the deliveries whose retry, batching window or stall guard is due, and
        the topics of runs whose guard is due (they failed or crashed): the schedule's
        trigger, one query of the delivery states; nothing else when idle."""
        states, guards = self._states.due_work(self._ctx.clock_ms())
        ids = list(dict.fromkeys(topic_id for guard in guards for topic_id in guard.topic_ids))
        resumed = [functools.partial(self._resume, state) for state in states]
        return self._run_all(resumed, self._plans(ids), ids, [g.run_id for g in guards])

    def _plans(self, topic_ids: list[str]) -> list[_Plan]:
        """The deliveries of every subscription of the topics with ``topic_ids``."""
        names = self._topic_names(topic_ids)
        return [
            functools.partial(self._deliveries_of, sub)
            for name in names
            for sub in self._subscriptions(name)
        ]

    def _run_all(
        self,
        resumed: Sequence[_Plan],
        plans: Sequence[_Plan],
        topic_ids: Sequence[str],
        lapsed: Sequence[str] = (),
    ) -> DispatchReport:
        """Plan the deliveries in this thread (join each group, find the partitions; a
        partition with a due state once), guard those of ``plans`` (and the topics of a
        plan that failed) with one run guard of ``topic_ids``, delete the ``lapsed``
        guards it replaces, run the deliveries (at most ``max_concurrent_deliveries`` at
        once), leave the groups, then raise the first failure. Every delivery runs even
        when another failed: the trigger is retried (the stream) or runs again (the
        schedule), and the run guard (kept when a delivery failed) or the failed
        delivery's own state resumes it meanwhile."""
        report = DispatchReport()
        errors: list[LakelogError] = []
        try:
            work: dict[tuple[str, int], _Work] = {}
            self._plan(resumed, work, errors)
            stated, failed = len(work), len(errors)
            self._plan(plans, work, errors)
            # A plan failed: the lapsed guards stay (due: the next schedule tries again),
            # and they cover this run's deliveries, which are of their topics.
            kept = bool(errors) and bool(lapsed)
            guard = None
            if (len(work) > stated or len(errors) > failed) and not kept:
                due = self._ctx.clock_ms() + self._session_ms
                guard = RunGuard(uuid.uuid4().hex, tuple(topic_ids), due)
                self._states.put_guard(guard)
            if not errors:  # every lapsed topic was planned (and guarded when needed)
                for run_id in lapsed:
                    self._states.delete_guard(run_id)
            errors.extend(self._deliver_all(list(work.values()), report))
            if guard is not None and not errors:
                self._states.delete_guard(guard.run_id)
        finally:
            self._leave()
        if errors:
            raise errors[0]
        return report

    @staticmethod
    def _plan(
        plans: Sequence[_Plan], work: dict[tuple[str, int], _Work], errors: list[LakelogError]
    ) -> None:
        """Add the deliveries ``plans`` find to ``work`` (one per partition: the first)."""
        for plan in plans:
            try:
                found = plan()
            except LakelogError as error:
                log.warning("delivery failed: %s", error)
                errors.append(error)
                continue
            for key, deliver in found.items():
                work.setdefault(key, deliver)

    def _deliver_all(self, work: Sequence[_Work], report: DispatchReport) -> list[LakelogError]:
        """Run each delivery (each its own report, added to ``report``); the failures, in
        the order of ``work``. Another exception is raised once every delivery ended."""
        workers = min(self._concurrency, len(work))
        if workers <= 1:
            return [e for deliver in work if (e := self._one(deliver, report)) is not None]
        reports = [DispatchReport() for _ in work]
        with self._executor(workers) as pool:
            futures = [pool.submit(self._one, d, r) for d, r in zip(work, reports, strict=True)]
        errors = [e for future in futures if (e := future.result()) is not None]
        for each in reports:
            report.add(each)
        return errors

    @staticmethod
    def _one(deliver: _Work, report: DispatchReport) -> LakelogError | None:
        try:
            deliver(report)
        except LakelogError as error:
            log.warning("delivery failed: %s", error)
            return error
        return None

    # Which partitions ---------------------------------------------------------------------
    def _topic_names(self, topic_ids: Iterable[str]) -> list[str]:
        """The names of the topics with ``topic_ids`` (the catalog listed at most once per
        `TOPIC_CACHE_SECONDS`, and again for an id not known yet); unknown ids are left out."""
        wanted = list(topic_ids)
        now = self._ctx.clock_ms()
        stale = not 0 <= now - self._names_ms < TOPIC_CACHE_SECONDS * 1000
        if wanted and (stale or any(i not in self._names for i in wanted)):
            self._names = {t.topic_id: t.name for t in self._ctx.catalog.list_topics()}
            self._names_ms = now
        return [self._names[i] for i in wanted if i in self._names]

    def _topic_of(self, sub: Subscription) -> TopicRecord | None:
        """The topic ``sub`` delivers, None when it is gone (or re-created since)."""
        try:
            topic = self._ctx.caches.topics.get(sub.topic)
        except TopicNotFoundError:
            return None
        if sub.topic_id and sub.topic_id != topic.topic_id:
            return None
        return topic

    def _deliveries_of(self, sub: Subscription) -> dict[tuple[str, int], _Work]:
        """The deliveries of ``sub``: each partition with records past its commit."""
        topic = self._topic_of(sub)
        if topic is None:
            return {}
        view = self._join(sub.group, topic.name)
        bounds = self._ctx.topic_state(topic)
        work: dict[tuple[str, int], _Work] = {}
        for partition in range(topic.partitions):
            committed = view.committed(view.lease(topic.name, partition), topic)
            start = max(sub.start_offset(partition, committed), bounds.log_start_offset(partition))
            if bounds.high_watermark(partition) > start:
                deliver = functools.partial(self._deliver, sub, topic, partition, view, None)
                work[(sub.group, partition)] = deliver
        return work

    def _resume(self, state: DeliveryState) -> dict[tuple[str, int], _Work]:
        subs = [s for s in self._subscriptions(state.topic) if s.name == state.name]
        topic = self._topic_of(subs[0]) if subs else None
        if not subs or topic is None or subs[0].group != state.group:
            self._states.delete(state.group, state.partition)
            return {}
        view = self._join(state.group, topic.name)
        deliver = functools.partial(self._deliver, subs[0], topic, state.partition, view, state)
        return {(state.group, state.partition): deliver}

    # Membership and lease ----------------------------------------------------------------
    def _join(self, group: str, topic: str) -> GroupView:
        """Put (or renew) the dispatcher's member item in ``group``; the group read after."""
        now = self._ctx.clock_ms()
        member = MemberRecord(self.member_id, (topic,), self._session_ms, now + self._session_ms)
        self._groups.put_member(group, member)
        with self._joined_lock:
            self._joined[group] = now
        return GroupView.of(self._groups.read_group(group), now)

    def _renew(self, group: str, topic: str) -> None:
        """Renew the member item once a third of its session has passed."""
        now = self._ctx.clock_ms()
        with self._joined_lock:
            joined = self._joined.get(group, now)
        if now - joined >= self._session_ms // 3:
            self._join(group, topic)

    def _leave(self) -> None:
        with self._joined_lock:
            groups, self._joined = list(self._joined), {}
        for group in groups:
            self._groups.delete_member(group, self.member_id)

    def _take(
        self, sub: Subscription, topic: TopicRecord, partition: int, view: GroupView
    ) -> LeaseRecord | None:
        seen = view.lease(topic.name, partition)
        owner = view.owner(seen, topic)
        if owner == self.member_id:
            return seen
        if owner is not None:
            return None
        return self._groups.take_lease(sub.group, seen, self.member_id, topic.topic_id)

    # One delivery --------------------------------------------------------------------------
    def _deliver(
        self,
        sub: Subscription,
        topic: TopicRecord,
        partition: int,
        view: GroupView,
        due: DeliveryState | None,
        report: DispatchReport,
    ) -> None:
        now = self._ctx.clock_ms()
        state = due or self._states.get(sub.group, partition)
        if state is not None and state.attempts and state.due_ms > now:
            return  # a retry's backoff stands
        lease = self._take(sub, topic, partition, view)
        if lease is None:  # another delivery runs: leave the records to it
            self._states.wake(DeliveryState(sub.group, topic.name, sub.name, partition, now))
            return
        guard = now + self._session_ms
        stored = state is not None
        if state is None:
            state = DeliveryState(sub.group, topic.name, sub.name, partition, guard)
        state = replace(state, due_ms=guard, woken=False)
        if stored:  # its item becomes the stall guard; without one, the run guard is it
            self._states.put(state)
        delivery = _Delivery(sub, topic, partition, lease, state, stored)
        with contextlib.suppress(_LeaseLost):
            self._run(delivery, report)
        # The lease stays with this member: its next delivery of the partition takes no
        # lease write, and `_leave` (deleting the member item) frees it for the others.

    def _run(self, d: _Delivery, report: DispatchReport) -> None:
        offset = d.sub.start_offset(d.partition, d.lease.committed_offset)
        cursor: str | None = None
        for _ in range(self._max_batches):
            batch = self._read(d, offset, self._limit(d, offset), cursor)
            offset, cursor, records = batch.start, batch.cursor, batch.records
            if not records:
                if batch.end > offset:  # only a gap key compaction left
                    offset = self._commit(d, batch.end)
                    continue
                if self._finish(d):
                    return
                d.state = replace(d.state, woken=False)  # woken meanwhile: read again
                self._store(d, d.state)
                continue
            now = self._ctx.clock_ms()
            if not batch.full and not d.state.attempts and d.state.bisect_end is None:
                window = d.sub.max_batching_window_ms
                ends = min(records[0].timestamp_ms + window, now + window)
                if now < ends and ends - now > self._inline_window_ms:
                    self._store(d, replace(d.state, due_ms=ends, woken=False))
                    return
                if now < ends:  # a short window: wait here, then read what it gathered
                    self._sleep((ends - now) / 1000)
                    continue
            expired = self._expired(d.sub, records, now)
            if expired:
                self._fail(d, expired, "RecordAgeExceeded", "record age exceeded", report)
                offset, cursor = self._commit(d, expired[-1].offset + 1), None
                continue
            after = self._invoke(d, batch, report)
            if after is None:
                return  # retry later
            if after != batch.end:
                cursor = None
            offset = after
        self._store(d, replace(d.state, due_ms=self._ctx.clock_ms()))

    def _store(self, d: _Delivery, state: DeliveryState) -> None:
        """Put ``state`` (from now on the delivery's stall guard is its own item)."""
        self._states.put(state)
        d.stored = True

    def _finish(self, d: _Delivery) -> bool:
        """Caught up: end the delivery (True) unless its state was woken meanwhile. An
        item of its own is deleted unless woken; without one, a strongly consistent read
        tells whether a wake created one."""
        if d.stored:
            return self._states.finish(d.sub.group, d.partition)
        return self._states.get(d.sub.group, d.partition) is None

    @staticmethod
    def _limit(d: _Delivery, offset: int) -> int:
        """Records the next batch may hold: the batch size, or less while a split batch
        is retried in parts (ADR 0015 §2, bisect)."""
        end, size = d.state.bisect_end, d.state.bisect_size
        if end is not None and offset >= end:
            d.state = replace(d.state, bisect_end=None, bisect_size=None)
            end = size = None
        if end is None or size is None:
            return d.sub.batch_size
        return max(1, min(d.sub.batch_size, size, end - offset))

    def _read(self, d: _Delivery, offset: int, limit: int, cursor: str | None) -> _Batch:
        """Up to ``limit`` records from ``offset`` (the log start when below it), cut
        before the event would exceed `MAX_EVENT_BYTES`; fetches again while a fetch
        stopped short of ``limit`` with records behind it."""
        batch = _Batch(offset, [], offset, cursor, full=False)
        size = _ENVELOPE_BYTES + _json_size(self._servers)
        while True:
            result = self._fetch(d, batch, limit - len(batch.records))
            if not batch.records:  # the fetch moved past records below the log start
                batch.start = batch.end
            for record in result.records:
                size += _json_size(kafka_record(d.topic.name, record)) + 1
                if batch.records and size > MAX_EVENT_BYTES:
                    batch.end, batch.cursor, batch.full = batch.records[-1].offset + 1, None, True
                    return batch
                batch.records.append(record)
            batch.end, batch.cursor = result.next_offset, result.cursor
            if len(batch.records) >= limit:
                batch.full = True
                return batch
            if not result.records or result.next_offset >= result.high_watermark:
                return batch

    def _fetch(self, d: _Delivery, batch: _Batch, limit: int) -> FetchResult:
        """One fetch from ``batch.end``; records below the log start are skipped (gone)."""
        fetch = self._engine.fetcher.fetch
        try:
            return fetch(d.topic.name, d.partition, batch.end, limit, MAX_FETCH_BYTES, batch.cursor)
        except OffsetOutOfRangeError:
            start = self._ctx.topic_state(d.topic).log_start_offset(d.partition)
            if start <= batch.end:
                raise
            batch.end = start
            return fetch(d.topic.name, d.partition, start, limit, MAX_FETCH_BYTES)

    @staticmethod
    def _expired(sub: Subscription, records: list[StoredRecord], now: int) -> list[StoredRecord]:
        """The leading records older than the subscription's record age limit."""
        if sub.maximum_record_age_ms < 0:
            return []
        cut = now - sub.maximum_record_age_ms
        expired: list[StoredRecord] = []
        for record in records:
            if record.timestamp_ms >= cut:
                break
            expired.append(record)
        return expired

    def _invoke(self, d: _Delivery, batch: _Batch, report: DispatchReport) -> int | None:
        """Send one batch and act on the outcome; the next offset to read, or None when
        the delivery ends (a retry is scheduled)."""
        self._renew(d.sub.group, d.topic.name)
        records = batch.records
        event = kafka_event(d.topic.name, d.partition, records, self._servers)
        outcome = self._invoker.invoke(d.sub.function_arn, event)
        report.invocations += 1
        first = records[0].offset
        failed_from, error = self._failed_from(d, outcome, records)
        if failed_from is None:
            report.records_delivered += len(records)
            d.state = replace(d.state, attempts=0, throttles=0, error=None)
            return self._commit(d, batch.end)
        report.failures += 1
        if failed_from > first:
            report.records_delivered += failed_from - first
            d.state = replace(d.state, attempts=0, throttles=0, error=None)
            self._commit(d, failed_from)
        failed = [record for record in records if record.offset >= failed_from]
        function_error = not outcome.ok and not outcome.throttled
        if function_error and d.sub.bisect_batch_on_function_error and len(failed) > 1:
            d.state = replace(
                d.state, bisect_end=failed[-1].offset + 1, bisect_size=math.ceil(len(failed) / 2)
            )
            self._store(d, d.state)
            return failed_from
        attempts = d.state.attempts + 1
        throttles = d.state.throttles + outcome.throttled
        now = self._ctx.clock_ms()
        retries = d.sub.maximum_retry_attempts
        age = d.sub.maximum_record_age_ms
        if age >= 0 and failed[0].timestamp_ms < now - age:
            condition = "RecordAgeExceeded"
        elif retries >= 0 and attempts - throttles > retries:
            condition = "RetryAttemptsExhausted"
        else:
            d.state = replace(
                d.state,
                attempts=attempts,
                throttles=throttles,
                error=error,
                due_ms=now + backoff_ms(attempts),
            )
            self._store(d, d.state)
            return None
        d.state = replace(d.state, attempts=attempts, throttles=throttles, error=error)
        self._fail(d, failed, condition, error, report)
        d.state = replace(d.state, attempts=0, throttles=0, error=None)
        return self._commit(d, failed[-1].offset + 1)

    @staticmethod
    def _failed_from(
        d: _Delivery, outcome: InvokeOutcome, records: list[StoredRecord]
    ) -> tuple[int | None, str]:
        """The first failed offset of the batch (None: all acknowledged) and the error."""
        if not outcome.ok:
            return records[0].offset, outcome.error or "function error"
        if not d.sub.report_batch_item_failures:
            return None, ""
        found = failure_offset(outcome.payload, d.topic.name, d.partition, records)
        return found, "batchItemFailures"

    def _commit(self, d: _Delivery, offset: int) -> int:
        """Commit ``offset`` at the lease's epoch; `_LeaseLost` when fenced."""
        commit = OffsetCommit(d.topic.name, d.partition, offset, d.lease.lease_epoch)
        try:
            self._groups.commit(d.sub.group, self.member_id, [commit], self._ctx.clock_ms())
        except LeaseFencedError:
            raise _LeaseLost from None
        return offset

    # On-failure destinations ---------------------------------------------------------------
    def _fail(
        self,
        d: _Delivery,
        records: list[StoredRecord],
        condition: str,
        error: str,
        report: DispatchReport,
    ) -> None:
        """Send ``records`` with their error context to the on-failure destination (or
        log them when there is none); raises when the destination refuses them."""
        report.records_failed += len(records)
        destination = d.sub.on_failure
        if destination is None or not (destination.topic or destination.sqs_arn):
            log.warning(
                "subscription %s of %s: offsets %d-%d of partition %d skipped (%s: %s), "
                "no on-failure destination",
                d.sub.name,
                d.topic.name,
                records[0].offset,
                records[-1].offset,
                d.partition,
                condition,
                error,
            )
            return
        limit = SQS_MESSAGE_BYTES if destination.sqs_arn else MAX_RECORD_BYTES
        body = self.failure_record(
            d.sub,
            d.topic.name,
            d.partition,
            records,
            condition,
            error,
            d.state.attempts - d.state.throttles,
            limit,
        )
        if destination.sqs_arn:
            self._queues.send(destination.sqs_arn, body)
        elif destination.topic:
            record = Record(value=body.encode(), key=d.key.encode())
            self._engine.append(destination.topic, [record])

    def failure_record(
        self,
        sub: Subscription,
        topic: str,
        partition: int,
        records: Sequence[StoredRecord],
        condition: str,
        error: str,
        attempts: int,
        limit: int,
    ) -> str:
        """The on-failure record of ``records`` (ADR 0015 §2), JSON within ``limit``
        bytes: the event's records as many as fit, in offset order."""
        now = self._ctx.clock_ms()
        body: dict[str, Any] = {
            "version": "1.0",
            "timestamp": datetime.datetime.fromtimestamp(now / 1000, datetime.UTC).isoformat(),
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": sub.function_arn,
                "condition": condition,
                "approximateInvokeCount": attempts,
            },
            "responseContext": {"functionError": error},
            "KafkaBatchInfo": {
                "batchSize": len(records),
                "bootstrapServers": self._servers,
                "topic": topic,
                "partition": partition,
                "firstOffset": records[0].offset,
                "lastOffset": records[-1].offset,
                "firstRecordTimestamp": records[0].timestamp_ms,
                "lastRecordTimestamp": records[-1].timestamp_ms,
            },
            "subscription": {"name": sub.name, "topic": sub.topic, "group": sub.group},
        }
        room = limit - _json_size(body) - 256
        kept: list[dict[str, Any]] = []
        for record in records:
            item = kafka_record(topic, record)
            room -= _json_size(item) + 1
            if room < 0:
                break
            kept.append(item)
        body["payload"] = {
            "eventSource": "SelfManagedKafka",
            "bootstrapServers": self._servers,
            "records": {f"{topic}-{partition}": kept},
        }
        if len(kept) < len(records):
            body["payloadOmitted"] = len(records) - len(kept)
        return json.dumps(body, separators=(",", ":"))

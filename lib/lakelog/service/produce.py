"""Append: records -> one segment PUT -> one conditional chain item (ADR 0012, 1.3).

An append routes its records (explicit partition, key hash, or the request's sticky
partition), encodes them as one segment with one row group per partition, PUTs it once,
and makes it visible by putting chain item ``tail.seq + 1`` (with the producer's state in
the same transaction when idempotent). The request is atomic: one item whatever the
partitions it touches. A retry of an idempotent request is answered from the chain item
that holds the original, whoever chose its partitions (ADR 0012, 2.4).
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

from lakelog.config import TopicConfig
from lakelog.errors import (
    CorruptLedgerError,
    CorruptSegmentError,
    InvalidRequestError,
    OutOfOrderSequenceError,
    PayloadTooLargeError,
    ThrottledError,
    UnavailableError,
)
from lakelog.limits import MAX_APPEND_BYTES, MAX_APPEND_RECORDS, validate_record
from lakelog.log.chain import (
    ROW_GROUPS_START,
    check_producer,
    is_sealed,
    new_segment_id,
    plan_append,
    producer_update,
    request_digest,
)
from lakelog.log.codec import EncodedSegment, SegmentBuilder
from lakelog.log.partitioner import StickyPartitioner, partition_for_key
from lakelog.log.records import (
    BatchRef,
    ChainItem,
    ProducerRequest,
    ProducerStamp,
    TopicProducerState,
)
from lakelog.service.context import EngineContext, retry_if_stale
from lakelog.service.producers import DIRECT_PRINCIPAL, ProducerIds, partition_lane
from lakelog.storage.keys import chain_pk, l0_segment_key_from_id
from lakelog.storage.ports import ChainConflict, LedgerStore, TopicRecord
from lakelog.types import ProducerBatch, Record, RecordMetadata

__all__ = ["MAX_UPLOAD_AGE_MS", "PREDECESSOR_WAIT_MS", "AppendRetryPolicy", "Appender", "route"]


MAX_UPLOAD_AGE_MS: Final = 5 * 60 * 1000
"""Longest time between a segment's PUT and the chain item that references it: well
inside gc's grace period, so gc never deletes a segment an append is about to commit."""

CACHED_TAIL_MS: Final = 15 * 60 * 1000
"""How long after writing it a process plans its next append after its own last item
without reading the tail. The compactor deletes only items appended more than a day ago
(ADR 0013, 3.1), so a put after a cached tail can never land on a seq it deleted."""

PREDECESSOR_WAIT_MS: Final = 1000
"""How long an idempotent request waits for its producer's previous request to commit
(two in flight, the second first) before it is refused with `OutOfOrderSequenceError`."""

PRODUCER_STATES_KEPT: Final = 10_000
"""Producer states an appender remembers, (topic, producer) pairs, least recently used
forgotten first (at most ~1 KB each): a hint that saves the strongly consistent read of
the common case."""


@dataclass(frozen=True, slots=True)
class AppendRetryPolicy:
    """Jittered exponential backoff for chain conflicts and throttles (full jitter).

    A conflict means another append to the topic won, so the log is progressing; an
    append gives up only after ``max_attempts`` or ``deadline_seconds`` (on the engine's
    clock), whichever first.
    """

    max_attempts: int = 1000
    deadline_seconds: float = 15.0
    base_seconds: float = 0.005
    cap_seconds: float = 0.4

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to sleep before attempt ``attempt + 1``."""
        return rng.uniform(0.0, min(self.cap_seconds, self.base_seconds * 2 ** min(attempt, 32)))


def route(records: Sequence[Record], partitions: int, sticky: int | None) -> dict[int, list[int]]:
    """The positions of ``records`` per partition, partitions ascending (row-group order).

    An explicit partition wins; a key goes to ``murmur2(key) % partitions``; keyless
    records go to ``sticky``. The same request routed with the partition count and sticky
    partition a chain item recorded lands where that item's append put it (ADR 0012, 2.4).

    Raises
    ------
    ValueError
        A keyless record and no ``sticky`` partition.
    """
    routes: dict[int, list[int]] = {}
    for position, record in enumerate(records):
        if record.partition is not None:
            partition = record.partition
        elif record.key is not None:
            partition = partition_for_key(bytes(record.key), partitions)
        elif sticky is not None:
            partition = sticky
        else:
            raise ValueError(f"record {position} has no key and no sticky partition was chosen")
        routes.setdefault(partition, []).append(position)
    return dict(sorted(routes.items()))


@dataclass(frozen=True, slots=True)
class _Upload:
    """The request's segment, stored: what its chain item references."""

    segment_id: bytes
    size: int
    footer_offset: int
    batches: tuple[BatchRef, ...]
    uploaded_ms: int


@dataclass
class _Request:
    """One append request while it is being committed."""

    topic: TopicRecord
    records: Sequence[Record]
    routes: dict[int, list[int]]
    sizes: list[int]
    append_time_ms: int
    sticky: int | None
    stamp: ProducerStamp | None
    state: TopicProducerState | None = None
    decided_ms: int = 0

    @property
    def producer_id(self) -> int:
        """The idempotent request's producer id."""
        assert self.stamp is not None
        return self.stamp.producer_id


def _sequence_of(producer: ProducerBatch) -> int:
    """The request's one sequence in the topic; validates the producer's identity.

    ``sequences`` (the per-partition map of ledger v1) is accepted with exactly one entry.
    """
    for name in ("producer_id", "epoch"):
        value = getattr(producer, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidRequestError(f"producer {name} must be a non-negative integer")
    sequences = dict(producer.sequences)
    if len(sequences) > 1:
        raise InvalidRequestError("one sequence per topic since ledger v2")
    if producer.sequence is not None and sequences:
        raise InvalidRequestError("give the producer's sequence once: sequence or sequences")
    sequence = (
        producer.sequence if producer.sequence is not None else next(iter(sequences.values()), None)
    )
    if sequence is None:
        raise InvalidRequestError("an idempotent append needs the producer's sequence")
    if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0:
        raise InvalidRequestError("producer sequence must be a non-negative integer")
    return sequence


def _state_id(producer: ProducerBatch, records: Sequence[Record]) -> int:
    """The id the producer's state is kept under: its own, or with ``partition`` set the
    lane of that partition (ADR 0016, 3), once every record is checked to go there."""
    partition = producer.partition
    if partition is None:
        return producer.producer_id
    if isinstance(partition, bool) or not isinstance(partition, int) or partition < 0:
        raise InvalidRequestError("producer partition must be a non-negative integer")
    for position, record in enumerate(records):
        if record.partition != partition:
            raise InvalidRequestError(
                f"record {position} is not for partition {partition}, which the producer's "
                "sequence numbers"
            )
    return partition_lane(producer.producer_id, partition)


class _ProducerStates:
    """The last producer state this process saw per (topic id, producer id), LRU-bounded."""

    def __init__(self, capacity: int = PRODUCER_STATES_KEPT) -> None:
        self._capacity = capacity
        self._states: OrderedDict[tuple[str, int], TopicProducerState] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, topic_id: str, producer_id: int) -> TopicProducerState | None:
        with self._lock:
            state = self._states.get((topic_id, producer_id))
            if state is not None:
                self._states.move_to_end((topic_id, producer_id))
            return state

    def put(self, topic_id: str, producer_id: int, state: TopicProducerState | None) -> None:
        with self._lock:
            if state is None:
                self._states.pop((topic_id, producer_id), None)
                return
            self._states[(topic_id, producer_id)] = state
            self._states.move_to_end((topic_id, producer_id))
            while len(self._states) > self._capacity:
                self._states.popitem(last=False)


AppendHook = Callable[[str], None]
"""Told the topic id after each append whose chain item is committed (ADR 0015 §4): the dev
server's dispatcher queues the topic. It must return at once; what it raises is logged and
ignored, since the append is committed and acknowledged either way."""

_log = logging.getLogger(__name__)


class Appender:
    """The append use case (ADR 0012, 1.3).

    Within one appender, planning and writing are serialized per topic (a lock per topic),
    so two requests in flight in this process never race each other for one chain seq;
    their segment PUTs still overlap. The appender remembers the last chain item it wrote
    per topic (planned on next, without a read) and the producers' states it saw.

    Parameters
    ----------
    context
        Stores, caches and clock; its ledger holds each topic's chain (ADR 0012).
    retry
        Backoff for chain conflicts and throttles.
    sleep
        Injected for tests; `time.sleep` by default.
    seed
        Seeds the backoff jitter and the sticky partitioner.
    producers
        Which principal holds each producer id (shared with `TopicAdmin`, which issues them).
    on_append
        Called with the topic id once an append's chain item is committed (`AppendHook`).
    """

    def __init__(
        self,
        context: EngineContext,
        retry: AppendRetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
        producers: ProducerIds | None = None,
        on_append: AppendHook | None = None,
    ) -> None:
        self._ctx = context
        self._producers = producers or ProducerIds(context.catalog, context.clock_ms)
        self._retry = retry or AppendRetryPolicy()
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._sticky = StickyPartitioner(seed)
        self._tails: dict[str, ChainItem] = {}
        self._states = _ProducerStates()
        self._topic_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._on_append = on_append
        self._watchers: dict[int, AppendHook] = {}
        self._watch_ids = itertools.count()

    @property
    def _ledger(self) -> LedgerStore:
        """The ledger: each topic's chain, meta item and producer states (ADR 0012)."""
        return self._ctx.ledger

    @retry_if_stale
    def append(
        self,
        topic_name: str,
        records: Sequence[Record],
        producer: ProducerBatch | None = None,
        *,
        principal: str = DIRECT_PRINCIPAL,
    ) -> list[RecordMetadata]:
        """Append ``records`` and return where each landed, in request order.

        The request is all-or-nothing, one chain item whatever the partitions it touches;
        each partition's records form one batch at dense offsets. An idempotent append
        (``producer`` given, with one sequence for the topic) is accepted only from the
        ``principal`` that obtained its producer id; its retry is answered with the
        original results.

        Raises
        ------
        InvalidRequestError, PayloadTooLargeError
            Bad input; nothing was written.
        TopicNotFoundError
            The topic does not exist (or was deleted).
        ProducerFencedError, OutOfOrderSequenceError
            The idempotent producer is stale or skipped sequences; nothing was written.
        UnknownProducerError
            ``principal`` does not hold the producer id; nothing was written.
        ThrottledError, UnavailableError
            The chain could not be moved; nothing acknowledged (retry idempotently).
        """
        if not isinstance(records, Sequence) or isinstance(records, str | bytes):
            raise InvalidRequestError("records must be a list")
        explicit = [r.partition for r in records if isinstance(r, Record)]
        highest = max((p for p in explicit if isinstance(p, int)), default=-1)
        topic = self._ctx.caches.topics.get(topic_name, min_partitions=highest + 1)
        config = TopicConfig.parse(topic.config)
        sizes = self._validate(topic, records, config)
        sequence = None if producer is None else _sequence_of(producer)
        if producer is not None:
            self._producers.check(producer.producer_id, principal)
        keyless = any(r.partition is None and r.key is None for r in records)
        sticky = self._sticky.next_partition(topic.name, topic.partitions) if keyless else None
        request = _Request(
            topic=topic,
            records=records,
            routes=route(records, topic.partitions, sticky),
            sizes=sizes,
            append_time_ms=self._ctx.clock_ms(),
            sticky=sticky,
            stamp=None,
        )
        if producer is not None and sequence is not None:
            request.stamp = ProducerStamp(
                _state_id(producer, records),
                producer.epoch,
                sequence,
                len(records),
                request_digest(records),
            )
            original = self._decide(request)
            if original is not None:
                return self._answer(request, original)
        upload = self._upload(request, config.compression)
        written = self._commit(request, upload)
        self._notify(request.topic.topic_id)
        if isinstance(written, ProducerRequest):
            return self._answer(request, written)
        return self._reply(request, written)

    def watch(self, hook: AppendHook) -> Callable[[], None]:
        """Call ``hook`` too after each committed append of this appender, until the
        returned function is called (the Kafka gateway wakes its waiting fetches so).

        ``hook`` runs on the appending thread and must return at once, as `AppendHook`
        says; what it raises is logged and ignored.
        """
        with self._guard:
            key = next(self._watch_ids)
            self._watchers[key] = hook

        def unwatch() -> None:
            with self._guard:
                self._watchers.pop(key, None)

        return unwatch

    def _notify(self, topic_id: str) -> None:
        """Tell the append hook and the watchers that ``topic_id``'s chain has a new item."""
        with self._guard:
            hooks = list(self._watchers.values())
        if self._on_append is not None:
            hooks.insert(0, self._on_append)
        for hook in hooks:
            try:
                hook(topic_id)
            except Exception:  # the append is committed: a hook never fails it
                _log.exception("the append hook failed for topic %s", topic_id)

    def _validate(
        self, topic: TopicRecord, records: Sequence[Record], config: TopicConfig
    ) -> list[int]:
        """Check every record and the request's limits; each record's size in bytes.

        A topic with ``cleanup_policy = "compact"`` takes keyed records only (as Kafka's
        ``INVALID_RECORD``; ADR 0013, 6).
        """
        if not records:
            raise InvalidRequestError("an append needs at least one record")
        if len(records) > MAX_APPEND_RECORDS:
            raise PayloadTooLargeError(
                f"{len(records)} records in one append; the limit is {MAX_APPEND_RECORDS}"
            )
        sizes = []
        for position, record in enumerate(records):
            sizes.append(validate_record(record, position, config.max_record_bytes))
            if record.key is None and config.cleanup_policy == "compact":
                raise InvalidRequestError(
                    f"record {position} has no key; topic {topic.name} has "
                    "cleanup_policy=compact, which keeps the latest record per key"
                )
            if record.partition is not None:
                self._ctx.check_partition(topic, record.partition)
        total = sum(sizes)
        if total > MAX_APPEND_BYTES:
            raise PayloadTooLargeError(
                f"append of {total} bytes; the limit is {MAX_APPEND_BYTES} bytes per request"
            )
        return sizes

    # --- idempotence -------------------------------------------------------------------------

    def _decide(self, request: _Request) -> ProducerRequest | None:
        """Whether the idempotent request is new (None) or a duplicate (ADR 0012, 2.2).

        The cached state decides alone only when the request continues it exactly; any
        other outcome is decided on a strongly consistent read. A request whose
        predecessor has not committed yet (`OutOfOrderSequenceError`) goes on: its write
        waits for the predecessor (`_await_predecessor`).
        """
        stamp, topic_id = request.stamp, request.topic.topic_id
        assert stamp is not None
        cached = self._states.get(topic_id, stamp.producer_id)
        now = self._ctx.clock_ms()
        if (
            cached is not None
            and cached.epoch == stamp.epoch
            and cached.last_sequence == stamp.first_sequence - 1
            and cached.expires_ms >= now
        ):
            request.state = cached
            return None
        request.state = self._read_state(topic_id, stamp.producer_id)
        try:
            return self._check(request, now)
        except OutOfOrderSequenceError:
            return None

    def _read_state(self, topic_id: str, producer_id: int) -> TopicProducerState | None:
        state = self._ledger.read_producer(topic_id, producer_id)
        self._states.put(topic_id, producer_id, state)
        return state

    @staticmethod
    def _check(request: _Request, now_ms: int) -> ProducerRequest | None:
        stamp = request.stamp
        assert stamp is not None
        return check_producer(
            request.state,
            producer_id=stamp.producer_id,
            epoch=stamp.epoch,
            first_sequence=stamp.first_sequence,
            record_count=stamp.record_count,
            digest=stamp.digest,
            now_ms=now_ms,
        )

    def _await_predecessor(self, request: _Request) -> ProducerRequest | None:
        """Decide the request on its state, waiting for a predecessor still in flight.

        Re-reads the state with backoff while the request does not continue it because
        an earlier sequence is missing, for up to `PREDECESSOR_WAIT_MS` (and at most the
        retry policy's attempts); then `OutOfOrderSequenceError` is the answer. Returns
        the original when another attempt of this very request committed meanwhile.
        """
        started = self._ctx.clock_ms()
        attempt = 0
        while True:
            request.decided_ms = self._ctx.clock_ms()
            try:
                return self._check(request, request.decided_ms)
            except OutOfOrderSequenceError:
                waited = request.decided_ms - started
                if waited >= PREDECESSOR_WAIT_MS or attempt + 1 >= self._retry.max_attempts:
                    raise
            self._sleep(self._retry.delay(attempt, self._rng))
            attempt += 1
            request.state = self._read_state(request.topic.topic_id, request.producer_id)

    def _answer(self, request: _Request, original: ProducerRequest) -> list[RecordMetadata]:
        """The original results of a retried request, from its chain item (ADR 0012, 2.4).

        Given only while the topic is live, read after the item: a retry that reaches a
        process caching a deleted topic's id is never answered with that topic's offsets
        (`StaleTopicError` sends it to the topic now under the name).
        """
        item = self._ledger.get_item(request.topic.topic_id, original.seq)
        if item is None:
            raise UnavailableError(
                f"the chain item {original.seq} that holds this request is gone; "
                "nothing was written"
            )
        if item.producer != request.stamp:
            # Never acknowledge a retry with another request's records.
            raise CorruptLedgerError(
                f"{chain_pk(request.topic.topic_id)} seq {item.seq}",
                "the producer state names an item another request wrote",
            )
        # Answer only while the topic is live: a process caching a deleted topic's id
        # must not acknowledge offsets its re-created successor never had.
        self._ctx.topic_state(request.topic)
        return self._reply(request, item)

    def _reply(self, request: _Request, item: ChainItem) -> list[RecordMetadata]:
        """Where each record of ``request`` landed in ``item``, in request order.

        The routing is recomputed with the item's partition count and sticky partition
        (unless the request routed with the same), so a retry's reply matches the
        original's whoever chose the partitions.
        """
        where = f"{chain_pk(request.topic.topic_id)} seq {item.seq}"
        routes = request.routes
        if (item.partitions, item.sticky) != (request.topic.partitions, request.sticky):
            try:
                routes = route(request.records, item.partitions, item.sticky)
            except ValueError as exc:
                raise CorruptLedgerError(where, str(exc)) from None
        if len(routes) != len(item.batches):
            raise CorruptLedgerError(where, "the item holds other partitions than this request")
        results: list[RecordMetadata | None] = [None] * len(request.records)
        for partition, positions in routes.items():
            batch = item.batch(partition)
            if batch is None or batch.record_count != len(positions):
                raise CorruptLedgerError(
                    where, f"partition {partition} does not hold this request's records"
                )
            base = item.base_offset(partition)
            for index, position in enumerate(positions):
                timestamp = request.records[position].timestamp_ms
                results[position] = RecordMetadata(
                    request.topic.name,
                    partition,
                    base + index,
                    item.append_time_ms if timestamp is None else timestamp,
                )
        return [result for result in results if result is not None]

    # --- segment ------------------------------------------------------------------------------

    def _upload(self, request: _Request, compression: str) -> _Upload:
        """Encode the request as one segment, one row group per partition, and PUT it once."""
        topic_id = request.topic.topic_id
        builder = SegmentBuilder(topic_id, compression)
        for partition, positions in request.routes.items():
            chosen = [request.records[i] for i in positions]
            builder.add_batch(
                partition,
                [
                    request.append_time_ms if r.timestamp_ms is None else r.timestamp_ms
                    for r in chosen
                ],
                [None if r.key is None else bytes(r.key) for r in chosen],
                [None if r.value is None else bytes(r.value) for r in chosen],
                [
                    tuple((name, None if data is None else bytes(data)) for name, data in r.headers)
                    for r in chosen
                ],
            )
        segment = builder.build()
        uploaded_ms = self._ctx.clock_ms()
        segment_id = new_segment_id(uploaded_ms)
        key = l0_segment_key_from_id(topic_id, segment_id)
        batches = self._batches(request, segment, key)
        self._ctx.objects.put(key, segment.body)
        return _Upload(segment_id, segment.size, segment.footer_offset, batches, uploaded_ms)

    @staticmethod
    def _batches(request: _Request, segment: EncodedSegment, key: str) -> tuple[BatchRef, ...]:
        """The chain item's batches, checking the layout readers rely on: row groups
        contiguous from byte 4 in partition order, the footer right after them."""
        batches = []
        position = ROW_GROUPS_START
        for location in segment.row_groups:
            if location.byte_offset != position:
                raise CorruptSegmentError(
                    key, f"row group {location.row_group} starts at {location.byte_offset}"
                )
            position += location.byte_length
            batches.append(
                BatchRef(
                    partition=location.partition,
                    record_count=location.rows,
                    byte_length=location.byte_length,
                    record_bytes=sum(request.sizes[i] for i in request.routes[location.partition]),
                    max_timestamp=location.max_timestamp,
                )
            )
        if segment.footer_offset != position:
            raise CorruptSegmentError(key, f"the footer starts at {segment.footer_offset}")
        return tuple(batches)

    # --- the chain ----------------------------------------------------------------------------

    @contextmanager
    def _planning(self, topic_id: str) -> Iterator[None]:
        """Hold the topic's lock: one plan-and-write at a time per topic in this process."""
        with self._guard:
            lock = self._topic_locks.setdefault(topic_id, threading.Lock())
        with lock:
            yield

    def _cached_tail(self, topic_id: str) -> ChainItem | None:
        """The item this process wrote last in the topic, if written in the last
        `CACHED_TAIL_MS` (by its append time)."""
        tail = self._tails.get(topic_id)
        if tail is None or self._ctx.clock_ms() - tail.append_time_ms > CACHED_TAIL_MS:
            return None
        return tail

    def _read_tail(self, topic: TopicRecord) -> ChainItem:
        """The chain's last item read strongly; `StaleTopicError` once the topic is sealed."""
        found = self._ledger.read_tail(topic.topic_id)
        if found is None or found[1].sealed_ms is not None:
            raise self._ctx.stale(topic)
        return found[0]

    def _commit(self, request: _Request, upload: _Upload) -> ChainItem | ProducerRequest:
        """Put the request's chain item after the tail, re-planning on conflicts.

        Returns the item written, or the original request when the producer state shows
        this request committed already (another attempt of it won).
        """
        topic = request.topic
        deadline_ms = self._ctx.clock_ms() + self._retry.deadline_seconds * 1000
        tail: ChainItem | None = None  # None: the item this process wrote last, or a read
        conflicts = 0
        attempt = 0
        for attempt in range(self._retry.max_attempts):
            if request.stamp is not None:
                original = self._await_predecessor(request)
                if original is not None:
                    return original
            self._check_segment_still_safe(upload)
            with self._planning(topic.topic_id):
                if tail is None:
                    tail = self._cached_tail(topic.topic_id) or self._read_tail(topic)
                item, failure = self._write(request, upload, tail)
            if failure is None:
                return item
            if isinstance(failure, ThrottledError):
                if attempt + 1 == self._retry.max_attempts or self._ctx.clock_ms() > deadline_ms:
                    raise failure
            elif not failure.retryable:
                if failure.producer_failed:
                    request.state = failure.producer
                    self._states.put(topic.topic_id, request.producer_id, failure.producer)
                if failure.current is not None or not failure.producer_failed:
                    # The seq is taken: plan after the item there, and from the second
                    # conflict on after the tail read afresh instead of walking the chain.
                    conflicts += 1
                    tail = failure.current if conflicts == 1 else None
            if self._ctx.clock_ms() > deadline_ms:
                break
            self._sleep(self._retry.delay(attempt, self._rng))
        raise UnavailableError(
            f"append to {topic.name!r} kept conflicting with other appends for "
            f"{attempt + 1} attempts; nothing was written, retry later"
        )

    def _write(
        self, request: _Request, upload: _Upload, tail: ChainItem
    ) -> tuple[ChainItem, ChainConflict | ThrottledError | None]:
        """Plan the item after ``tail`` and put it (under the topic's lock); the item and
        the failure, if it was refused."""
        topic_id = request.topic.topic_id
        if is_sealed(tail):
            self._tails.pop(topic_id, None)
            raise self._ctx.stale(request.topic)
        item = plan_append(
            tail,
            upload.batches,
            segment_id=upload.segment_id,
            segment_size=upload.size,
            footer_offset=upload.footer_offset,
            append_time_ms=request.append_time_ms,
            partitions=request.topic.partitions,
            sticky=request.sticky,
            producer=request.stamp,
        )
        stamp = request.stamp
        update = None
        if stamp is not None:
            update = producer_update(request.state, stamp, item.seq, request.decided_ms)
        try:
            self._ledger.put_item(topic_id, item, update)
        except (ChainConflict, ThrottledError) as failure:
            self._tails.pop(topic_id, None)
            return item, failure
        self._tails[topic_id] = item
        if update is not None:
            self._states.put(topic_id, update.state.producer_id, update.state)
        return item, None

    def _check_segment_still_safe(self, upload: _Upload) -> None:
        """Refuse to reference a segment gc may already consider an orphan.

        gc deletes unreferenced segments older than its grace period (an hour by default);
        an append that stalled (a paused process, a suspended laptop) for longer than
        `MAX_UPLOAD_AGE_MS` after its PUT gives up instead of committing a dangling item.
        """
        age = self._ctx.clock_ms() - upload.uploaded_ms
        if age > MAX_UPLOAD_AGE_MS:
            raise UnavailableError(
                f"append stalled {age} ms after uploading its segment; nothing was written, "
                "retry the append"
            )

"""Invariants 1, 2, 4 and 5 under crashes: a fault at each fail point of an append."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lakelog import Engine, ProducerBatch, Record, ResourceNames, StoredRecord
from lakelog.errors import LakelogError, ThrottledError, UnavailableError
from lakelog.log.partitioner import partition_for_key
from lakelog.service.gc import DEFAULT_GRACE_MS
from lakelog.service.produce import MAX_UPLOAD_AGE_MS, AppendRetryPolicy
from lakelog.storage import (
    DynamoCatalogStore,
    DynamoGroupStore,
    DynamoLedgerStore,
    S3ObjectStore,
)
from lakelog.storage.faults import (
    FailPoint,
    FaultInjector,
    FaultyLedgerStore,
    InjectedFaultError,
)
from lakelog.storage.keys import l0_segment_key_from_id
from tests.conftest import MakeFaulty, new_client
from tests.contract.backends import Backend, MemoryBackend
from tests.integration.group_support import Clock

TOPIC = "faults"


def _objects(backend: Backend) -> set[str]:
    objects, *_ = backend.stores()
    return {info.key for info in objects.list("")}


def _log(engine: Engine, partition: int = 0) -> list[StoredRecord]:
    records: list[StoredRecord] = []
    while True:
        result = engine.fetch(TOPIC, partition, len(records), max_records=10_000)
        if not result.records:
            return records
        records.extend(result.records)


def _batch(*values: bytes) -> list[Record]:
    return [Record(value=value, partition=0) for value in values]


@pytest.mark.parametrize(
    "point", [FailPoint.BEFORE_PUT, FailPoint.AFTER_PUT, FailPoint.BEFORE_LEDGER]
)
def test_crash_before_the_ledger_leaves_nothing_visible_and_a_retry_appends_once(
    make_faulty: MakeFaulty,
    make_engine: Callable[..., Engine],
    backend: Backend,
    point: FailPoint,
) -> None:
    # Given a partition holding one batch
    engine, injector = make_faulty()
    engine.create_topic(TOPIC)
    engine.append(TOPIC, _batch(b"a"))
    before = _objects(backend)

    # When the next append crashes at the fail point
    injector.arm(point)
    with pytest.raises(InjectedFaultError):
        engine.append(TOPIC, _batch(b"b", b"c"))

    # Then no reader sees any of it, from this process or another
    for reader in (engine, make_engine()):
        assert [r.value for r in _log(reader)] == [b"a"]
        assert reader.list_offset(TOPIC, 0, "latest") == 1
    orphaned = _objects(backend) - before
    assert len(orphaned) == (0 if point is FailPoint.BEFORE_PUT else 1)

    # And a retry appends the batch exactly once, at the next offsets
    acks = engine.append(TOPIC, _batch(b"b", b"c"))
    assert [a.offset for a in acks] == [1, 2]
    assert [r.value for r in _log(make_engine())] == [b"a", b"b", b"c"]


def test_crash_after_put_leaves_an_orphan_segment_that_gc_finds_and_removes(
    make_faulty: MakeFaulty, backend: Backend
) -> None:
    # Given an append that crashed between its PUT and its ledger transaction
    engine, injector = make_faulty(grace_ms=0)
    engine.create_topic(TOPIC)
    engine.append(TOPIC, _batch(b"kept"))
    before = _objects(backend)
    injector.arm(FailPoint.AFTER_PUT)
    with pytest.raises(InjectedFaultError):
        engine.append(TOPIC, _batch(b"lost"))
    (orphan,) = _objects(backend) - before

    # When gc looks for segments no chain item references
    found = engine.gc.orphan_segments(TOPIC)

    # Then it finds exactly the orphan, deletes it, and the log is intact
    assert found == [orphan]
    assert engine.gc.collect_topic(TOPIC) == [orphan]
    assert _objects(backend) == before
    assert [r.value for r in _log(engine)] == [b"kept"]


def test_gc_keeps_orphans_younger_than_the_grace_period(
    make_faulty: MakeFaulty,
) -> None:
    # Given a crashed append and the default grace period (an append may still be running)
    engine, injector = make_faulty()
    engine.create_topic(TOPIC)
    injector.arm(FailPoint.AFTER_PUT)
    with pytest.raises(InjectedFaultError):
        engine.append(TOPIC, _batch(b"in-flight"))

    # Then gc does not consider the young segment an orphan yet
    assert engine.gc.orphan_segments(TOPIC) == []


@pytest.mark.parametrize("fresh_process", [False, True], ids=["same-engine", "new-engine"])
def test_idempotent_retry_after_crash_after_ledger_returns_original_offsets(
    make_faulty: MakeFaulty, make_engine: Callable[..., Engine], fresh_process: bool
) -> None:
    # Given an idempotent producer whose append committed but whose reply was lost
    engine, injector = make_faulty()
    engine.create_topic(TOPIC)
    pid = engine.init_producer_id()
    engine.append(TOPIC, _batch(b"x"), ProducerBatch(pid, 0, sequence=0))
    injector.arm(FailPoint.AFTER_LEDGER)
    with pytest.raises(InjectedFaultError):
        engine.append(TOPIC, _batch(b"y", b"z"), ProducerBatch(pid, 0, sequence=1))
    assert [r.value for r in _log(make_engine())] == [b"x", b"y", b"z"]

    # When it retries the same batch (same id, epoch and sequence)
    retrier = make_engine() if fresh_process else engine
    acks = retrier.append(TOPIC, _batch(b"y", b"z"), ProducerBatch(pid, 0, sequence=1))

    # Then it gets the original offsets and the log holds the batch once
    assert [a.offset for a in acks] == [1, 2]
    assert [r.value for r in _log(make_engine())] == [b"x", b"y", b"z"]
    # And the producer continues where it left off
    more = retrier.append(TOPIC, _batch(b"w"), ProducerBatch(pid, 0, sequence=3))
    assert [a.offset for a in more] == [3]


def test_ledger_conflicts_are_retried_without_a_second_upload(
    make_faulty: MakeFaulty, backend: Backend
) -> None:
    # Given a ledger that reports a conflict three times in a row
    engine, injector = make_faulty()
    engine.create_topic(TOPIC)
    before = _objects(backend)
    injector.arm(FailPoint.CONFLICT, times=3)

    # When an append goes through
    acks = engine.append(TOPIC, _batch(b"a", b"b"))

    # Then it was retried and uploaded its segment exactly once
    assert injector.hits[FailPoint.CONFLICT] == 3
    assert [a.offset for a in acks] == [0, 1]
    assert len(_objects(backend) - before) == 1


def test_throttled_ledger_transactions_are_retried_without_a_second_upload(
    make_faulty: MakeFaulty, backend: Backend
) -> None:
    engine, injector = make_faulty()
    engine.create_topic(TOPIC)
    before = _objects(backend)
    injector.arm(FailPoint.THROTTLE, times=2)

    acks = engine.append(TOPIC, _batch(b"a"))

    assert injector.hits[FailPoint.THROTTLE] == 2
    assert [a.offset for a in acks] == [0]
    assert len(_objects(backend) - before) == 1


def test_throttling_that_outlasts_the_retry_budget_is_reported_and_writes_nothing(
    make_faulty: MakeFaulty,
) -> None:
    engine, injector = make_faulty(retry=AppendRetryPolicy(max_attempts=3))
    engine.create_topic(TOPIC)
    injector.arm(FailPoint.THROTTLE, times=3)

    with pytest.raises(ThrottledError):
        engine.append(TOPIC, _batch(b"a"))

    assert engine.list_offset(TOPIC, 0, "latest") == 0


def test_fetch_timeout_surfaces_as_unavailable_and_a_retry_reads_the_records(
    make_faulty: MakeFaulty,
) -> None:
    engine, injector = make_faulty()
    engine.create_topic(TOPIC)
    engine.append(TOPIC, _batch(b"a"))
    injector.arm(FailPoint.GET_TIMEOUT)

    with pytest.raises(UnavailableError):
        _log(engine)

    assert [r.value for r in _log(engine)] == [b"a"]


def _request(rng: random.Random, request: int) -> list[Record]:
    """Records of one request: on partition 0, 1 or both, keyed, or keyless."""
    count = rng.randint(1, 4)
    kind = rng.choice(["partition", "partitions", "keyed", "keyless"])
    if kind == "partition":
        partition = rng.randint(0, 1)
        return [Record(value=f"{request}:{i}".encode(), partition=partition) for i in range(count)]
    if kind == "partitions":
        return [Record(value=f"{request}:{i}".encode(), partition=i % 2) for i in range(count + 1)]
    if kind == "keyed":
        return [
            Record(value=f"{request}:{i}".encode(), key=f"k{rng.randint(0, 9)}".encode())
            for i in range(count)
        ]
    return [Record(value=f"{request}:{i}".encode()) for i in range(count)]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_faults_with_idempotent_retries_never_lose_or_duplicate(
    make_faulty: MakeFaulty, make_engine: Callable[..., Engine], seed: int
) -> None:
    # Given faults at every fail point with a fixed seed, over two partitions, in two engines
    setup = make_engine()
    setup.create_topic(TOPIC, partitions=2)
    pid = setup.init_producer_id()
    engines = [_faulty(make_faulty, seed), _faulty(make_faulty, seed + 100)]
    rng = random.Random(seed)
    sequence = 0
    acknowledged: dict[tuple[int, int], bytes] = {}
    hits = 0

    # When an idempotent producer sends 40 requests (one partition, both, keyed or keyless),
    # each through either engine and retried, from either or a new one, until acknowledged
    for request in range(40):
        records = _request(rng, request)
        producer = ProducerBatch(pid, 0, sequence=sequence)
        index = rng.randint(0, 1)
        for _attempt in range(50):
            try:
                acks = engines[index][0].append(TOPIC, records, producer)
                break
            except (UnavailableError, ThrottledError):
                index = rng.randint(0, 1)
                if rng.random() < 0.3:  # sometimes the retry comes from a new process
                    hits += sum(engines[index][1].hits.values())
                    engines[index] = _faulty(make_faulty, seed + 1000 * index + request)
        else:  # pragma: no cover
            pytest.fail("append never succeeded")
        sequence += len(records)
        # Each record is acknowledged where the request routes it: its own partition, its
        # key's, and one sticky partition for the keyless ones
        for record, ack in zip(records, acks, strict=True):
            if record.partition is not None:
                assert ack.partition == record.partition
            elif record.key is not None:
                assert ack.partition == partition_for_key(record.key, 2)
            assert (ack.partition, ack.offset) not in acknowledged
            acknowledged[(ack.partition, ack.offset)] = record.value or b""
        keyless = [
            a for r, a in zip(records, acks, strict=True) if r.partition is None and r.key is None
        ]
        assert len({a.partition for a in keyless}) <= 1

    # Then each partition holds exactly what was acknowledged, once, densely, in order
    for _engine, injector in engines:
        hits += sum(injector.hits.values())
        injector.disarm()
    reader = make_engine()
    for p in (0, 1):
        log = _log(reader, p)
        assert [r.offset for r in log] == list(range(len(log)))
        assert [(p, r.offset, r.value) for r in log] == [
            (p, offset, value) for (q, offset), value in sorted(acknowledged.items()) if q == p
        ]
    assert sum(len(_log(reader, p)) for p in (0, 1)) == sequence
    assert hits > 0


def _faulty(make_faulty: MakeFaulty, seed: int) -> tuple[Engine, FaultInjector]:
    """An engine whose every fail point fails with probability 0.15."""
    engine, injector = make_faulty(seed=seed)
    for point in FailPoint:
        injector.set_probability(point, 0.15)
    return engine, injector


class _ClockJumpingStore:
    """An object store after whose every PUT the clock jumps forward (a stalled append)."""

    def __init__(self, inner: Any, now: list[int], jump_ms: int) -> None:
        self.inner, self.now, self.jump_ms = inner, now, jump_ms

    def put(self, key: str, body: bytes) -> None:
        self.inner.put(key, body)
        self.now[0] += self.jump_ms

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_an_append_that_stalls_after_its_upload_gives_up_instead_of_committing(
    resources: ResourceNames,
) -> None:
    # Given an append whose upload is followed by a stall longer than MAX_UPLOAD_AGE_MS
    now = [1_000_000]
    dynamodb = new_client("dynamodb")
    engine = Engine(
        _ClockJumpingStore(
            S3ObjectStore(new_client("s3"), resources.bucket), now, MAX_UPLOAD_AGE_MS + 1
        ),
        DynamoLedgerStore(dynamodb, resources.ledger_table),
        DynamoCatalogStore(dynamodb, resources.catalog_table),
        DynamoGroupStore(dynamodb, resources.catalog_table),
        clock_ms=lambda: now[0],
    )
    engine.create_topic("t")

    # When it goes on, then it refuses to commit the old upload and nothing is visible
    with pytest.raises(UnavailableError, match="stalled"):
        engine.append("t", [Record(value=b"late")])
    assert engine.list_offset("t", 0, "latest") == 0


class _CancellingDynamoDB:
    """A DynamoDB client whose transactions DynamoDB cancels for ``reason`` on the chain
    put (``ValidationError``: what it answers for an item over 400 KB)."""

    def __init__(self, inner: Any, reason: str) -> None:
        self.inner, self.reason, self.transactions = inner, reason, 0

    def transact_write_items(self, **_request: Any) -> None:
        self.transactions += 1
        raise ClientError(
            {
                "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                "CancellationReasons": [
                    {"Code": self.reason, "Message": "Item size to update has exceeded"},
                    {"Code": "None"},
                ],
            },
            "TransactWriteItems",
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize(
    ("reason", "error"),
    [("ItemCollectionSizeLimitExceeded", UnavailableError), ("ValidationError", LakelogError)],
)
def test_a_ledger_transaction_cancelled_for_another_reason_than_a_conflict_is_not_retried(
    resources: ResourceNames, reason: str, error: type[LakelogError]
) -> None:
    # Given an idempotent append whose chain transaction DynamoDB cancels for ``reason``
    dynamodb = new_client("dynamodb")
    cancelling = _CancellingDynamoDB(dynamodb, reason)
    engine = Engine(
        S3ObjectStore(new_client("s3"), resources.bucket),
        DynamoLedgerStore(cancelling, resources.ledger_table),  # type: ignore[arg-type]
        DynamoCatalogStore(dynamodb, resources.catalog_table),
        DynamoGroupStore(dynamodb, resources.catalog_table),
        sleep=lambda _s: None,
    )
    engine.create_topic("t")
    pid = engine.init_producer_id()

    # When it is sent, then it is not a lost race: refused at once, not retried
    with pytest.raises(error) as refused:
        engine.append("t", [Record(value=b"a")], ProducerBatch(pid, 0, sequence=0))
    assert cancelling.transactions == 1
    # An item too large is refused again if resent: not reported as retryable
    assert isinstance(refused.value, UnavailableError) == (error is UnavailableError)
    assert engine.list_offset("t", 0, "latest") == 0


def test_gc_keeps_every_segment_a_chain_item_references(
    make_faulty: MakeFaulty, make_engine: Callable[..., Engine], backend: Backend
) -> None:
    # Given a topic's appends of every shape and one that crashed after its PUT, all
    # stamped (keys and objects) by one fake clock
    assert isinstance(backend, MemoryBackend)
    clock = Clock()
    backend.storage.clock_ms = clock
    engine, injector = make_faulty(clock_ms=clock)
    topic_id = engine.create_topic(TOPIC, partitions=3).topic_id
    appended = [
        [Record(value=b"explicit", partition=0)],
        [Record(key=b"k%d" % n, value=b"keyed-%d" % n) for n in range(12)],
        [Record(value=b"keyless")],
    ]
    for records in appended:
        engine.append(TOPIC, records)
    before = _objects(backend)
    injector.arm(FailPoint.AFTER_PUT)
    with pytest.raises(InjectedFaultError):
        engine.append(TOPIC, _batch(b"lost"))
    (orphan,) = _objects(backend) - before

    # When the grace period has passed and another process's gc runs while an append is
    # between its PUT and its chain write
    clock.advance(DEFAULT_GRACE_MS + 1)
    collector = make_engine(clock_ms=clock)
    collected: list[str] = []
    chains = engine.context.ledger
    assert isinstance(chains, FaultyLedgerStore)

    def collect_once(_item: object) -> None:
        chains.on_put = None
        collected.extend(collector.gc.collect_topic(TOPIC))

    chains.on_put = collect_once
    appended.append([Record(value=b"during-gc", partition=1)])
    engine.append(TOPIC, appended[-1])

    # Then gc removed the orphan alone: every segment a chain item references is there
    assert collected == [orphan]
    items = list(collector.context.ledger.chain(topic_id))
    referenced = {
        l0_segment_key_from_id(topic_id, item.segment_id)
        for item in items
        if item.segment_id is not None
    }
    assert len(referenced) == len(appended)
    assert _objects(backend) == referenced
    # And every acknowledged record reads back, and a second pass finds nothing to remove
    stored = [
        r.value for p in range(3) for r in collector.fetch(TOPIC, p, 0, max_records=100).records
    ]
    assert sorted(stored) == sorted(r.value for records in appended for r in records)
    assert collector.gc.collect_topic(TOPIC) == []

"""Appends on the ledger v2 chain (ADR 0012, 1.3 and 2): one item per request, dense offsets,
idempotent retries answered from the original item, conflicts re-planned without a second
upload. Results are checked on the chain itself (`LedgerStore.chain`, `get_item`).

Tests run in memory; those marked ``moto`` run on the DynamoDB and S3 adapters."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest

from lakelog import Engine, ProducerBatch, Record, RecordMetadata
from lakelog.errors import (
    CorruptLedgerError,
    InvalidRequestError,
    OutOfOrderSequenceError,
    ThrottledError,
    TopicNotFoundError,
    UnavailableError,
    UnknownProducerError,
)
from lakelog.log.chain import (
    chain_run,
    plan_append,
    producer_update,
    request_digest,
    seal_after,
)
from lakelog.log.partitioner import partition_for_key
from lakelog.log.records import BatchRef, ChainItem, ProducerStamp
from lakelog.service.produce import MAX_UPLOAD_AGE_MS, AppendRetryPolicy
from lakelog.storage.faults import FailPoint, FaultyLedgerStore, InjectedFaultError
from lakelog.storage.keys import l0_segment_key_from_id, topic_segments_prefix
from lakelog.storage.ports import ChainConflict, LedgerStore
from tests.conftest import MakeFaulty
from tests.support import run_in_threads

TOPIC = "chain"
NOW = 1_700_000_000_000
WAIT_S = 60.0
"""Longest a thread waits for another's progress: a backstop only a hang reaches (a loaded
machine may stall a thread for seconds)."""


def chains(engine: Engine) -> LedgerStore:
    return engine.context.ledger


def topic_id(engine: Engine, name: str = TOPIC) -> str:
    topic = engine.context.catalog.get_topic(name)
    assert topic is not None
    return topic.topic_id


def appends(engine: Engine, name: str = TOPIC) -> list[ChainItem]:
    """Every append item of the topic's chain, checked to form one consecutive run."""
    items = list(chains(engine).chain(topic_id(engine, name)))
    partitions = range(max(len(i.snapshot) for i in items))
    assert chain_run(items, 0, partitions) == items
    return [item for item in items if item.kind == "append"]


def segments(engine: Engine, name: str = TOPIC) -> list[str]:
    prefix = topic_segments_prefix(topic_id(engine, name))
    return [info.key for info in engine.context.objects.list(prefix)]


def assert_acks_in(acks: list[RecordMetadata], item: ChainItem) -> None:
    """Each ack points into the item's batch of its partition, densely in request order."""
    per_partition: dict[int, list[int]] = {}
    for ack in acks:
        per_partition.setdefault(ack.partition, []).append(ack.offset)
    assert sorted(per_partition) == [batch.partition for batch in item.batches]
    for partition, offsets in per_partition.items():
        base = item.base_offset(partition)
        assert offsets == list(range(base, item.mark(partition).high_watermark))


def counting_puts(engine: Engine) -> list[ChainItem]:
    """The items ``engine`` tries to put, in order (a faulty engine's chain store)."""
    store = chains(engine)
    assert isinstance(store, FaultyLedgerStore)
    attempts: list[ChainItem] = []
    store.on_put = attempts.append
    return attempts


def keyed(count: int, prefix: str = "k") -> list[Record]:
    return [Record(value=b"v%d" % i, key=f"{prefix}{i}".encode()) for i in range(count)]


def keyless(*values: bytes) -> list[Record]:
    return [Record(value=value) for value in values]


class FakeClock:
    """The engine's clock, moved only by the engine's sleeps (and by tests)."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += int(seconds * 1000) + 1


# --- one item per append, dense offsets ------------------------------------------------------


def test_a_keyed_append_over_twelve_partitions_is_one_chain_item_at_dense_offsets(
    make_faulty: MakeFaulty,
) -> None:
    engine, _ = make_faulty()
    engine.create_topic(TOPIC, partitions=12)
    puts = counting_puts(engine)

    replies = [engine.append(TOPIC, keyed(120, prefix=f"r{n}-")) for n in range(3)]

    items = appends(engine)
    assert len(items) == 3 and len(puts) == 3
    assert all(len(item.batches) == 12 for item in items)
    for reply, item in zip(replies, items, strict=True):
        assert_acks_in(reply, item)
    offsets = Counter((ack.partition, ack.offset) for reply in replies for ack in reply)
    assert max(offsets.values()) == 1
    for partition in range(12):
        mine = sorted(o for p, o in offsets if p == partition)
        assert mine == list(range(len(mine)))
        assert items[-1].mark(partition).high_watermark == len(mine)
    assert len(segments(engine)) == 3


def test_records_keep_request_order_within_each_partition(engine: Engine) -> None:
    engine.create_topic(TOPIC, partitions=3)
    records = [Record(value=b"%d" % i, partition=i % 3) for i in range(9)]
    acks = engine.append(TOPIC, records)
    assert [(a.partition, a.offset) for a in acks] == [(i % 3, i // 3) for i in range(9)]
    (item,) = appends(engine)
    assert [b.record_count for b in item.batches] == [3, 3, 3]


def test_the_chain_item_points_at_its_segment_with_contiguous_row_groups(engine: Engine) -> None:
    engine.create_topic(TOPIC, partitions=4)
    engine.append(TOPIC, keyed(40))
    (item,) = appends(engine)
    assert item.segment_id is not None
    key = l0_segment_key_from_id(topic_id(engine), item.segment_id)
    assert segments(engine) == [key]
    body = engine.context.objects.get_range(key, 0, item.segment_size)
    assert len(body) == item.segment_size and body[:4] == b"PAR1"
    assert item.footer_offset == 4 + sum(b.byte_length for b in item.batches)


def test_a_partition_that_does_not_exist_is_refused_and_nothing_is_stored(engine: Engine) -> None:
    engine.create_topic(TOPIC, partitions=2)
    with pytest.raises(InvalidRequestError, match="partition 5 does not exist"):
        engine.append(TOPIC, [Record(b"a", partition=0), Record(b"b", partition=5)])
    assert appends(engine) == [] and segments(engine) == []


def test_an_append_after_the_seal_is_refused_as_a_deleted_topic(engine: Engine) -> None:
    engine.create_topic(TOPIC)
    engine.append(TOPIC, keyless(b"a"))
    store, tid = chains(engine), topic_id(engine)
    found = store.read_tail(tid)
    assert found is not None
    store.put_item(tid, seal_after(found[0], NOW))

    with pytest.raises(TopicNotFoundError):
        engine.append(TOPIC, keyless(b"b"))
    assert len(appends(engine)) == 1


# --- idempotent retries ----------------------------------------------------------------------


def test_a_keyless_retry_lands_once_although_the_sticky_partition_moved(engine: Engine) -> None:
    engine.create_topic(TOPIC, partitions=4)
    producer = ProducerBatch(engine.init_producer_id(), 0, sequence=0)
    records = keyless(b"a", b"b", b"c")

    replies = [engine.append(TOPIC, records, producer) for _ in range(3)]

    assert replies[0] == replies[1] == replies[2]
    (item,) = appends(engine)
    assert {ack.partition for ack in replies[0]} == {item.sticky}
    assert_acks_in(replies[0], item)
    # The sticky partition moved with every request: a fresh keyless append goes elsewhere.
    (moved,) = {ack.partition for ack in engine.append(TOPIC, keyless(b"d"))}
    assert moved != item.sticky


@pytest.mark.moto  # on DynamoDB's conditions as moto emulates them
def test_a_keyed_retry_after_partitions_were_added_lands_once_on_the_original_partitions(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(sleep=lambda _s: None)
    engine.create_topic(TOPIC, partitions=2)
    records = keyed(20)
    assert any(
        partition_for_key(r.key or b"", 2) != partition_for_key(r.key or b"", 7) for r in records
    )
    producer = ProducerBatch(engine.init_producer_id(), 0, sequence=0)
    first = engine.append(TOPIC, records, producer)
    engine.alter_topic(TOPIC, partitions=7)

    retry = make_engine(sleep=lambda _s: None)  # a process that knows 7 partitions
    again = retry.append(TOPIC, records, producer)

    assert again == first
    (item,) = appends(engine)
    assert item.partitions == 2
    assert {ack.partition for ack in again} <= {0, 1}


def test_a_retry_with_other_records_under_the_same_sequence_is_rejected(engine: Engine) -> None:
    engine.create_topic(TOPIC)
    producer = ProducerBatch(engine.init_producer_id(), 0, sequence=0)
    engine.append(TOPIC, keyless(b"a", b"b"), producer)

    with pytest.raises(InvalidRequestError, match="sequence 0 was used for different records"):
        engine.append(TOPIC, keyless(b"a", b"X"), producer)
    with pytest.raises(InvalidRequestError, match="the original request had 2"):
        engine.append(TOPIC, keyless(b"a"), producer)
    assert len(appends(engine)) == 1


def test_one_sequence_counts_a_requests_records_whatever_their_partitions(
    engine: Engine,
) -> None:
    engine.create_topic(TOPIC, partitions=6)
    pid = engine.init_producer_id()
    engine.append(TOPIC, keyed(30), ProducerBatch(pid, 0, sequence=0))
    engine.append(TOPIC, keyed(5, "x"), ProducerBatch(pid, 0, sequence=30))

    with pytest.raises(OutOfOrderSequenceError, match="to this topic; expected 35"):
        engine.append(TOPIC, keyed(5, "y"), ProducerBatch(pid, 0, sequence=36))
    state = chains(engine).read_producer(topic_id(engine), pid)
    assert state is not None and state.last_sequence == 34
    assert [r.seq for r in state.requests] == [item.seq for item in appends(engine)]


def test_per_partition_sequences_for_several_partitions_are_rejected(engine: Engine) -> None:
    engine.create_topic(TOPIC, partitions=2)
    pid = engine.init_producer_id()
    records = [Record(b"a", partition=0), Record(b"b", partition=1)]
    with pytest.raises(InvalidRequestError, match="one sequence per topic since ledger v2"):
        engine.append(TOPIC, records, ProducerBatch(pid, 0, sequences={0: 0, 1: 0}))
    acks = engine.append(TOPIC, records, ProducerBatch(pid, 0, sequences={1: 0}))
    assert [a.offset for a in acks] == [0, 0]
    with pytest.raises(InvalidRequestError, match="needs the producer's sequence"):
        engine.append(TOPIC, records, ProducerBatch(pid, 0))
    assert segments(engine) == [
        l0_segment_key_from_id(topic_id(engine), item.segment_id or b"") for item in appends(engine)
    ]


def test_a_producer_of_another_principal_is_forbidden_and_nothing_is_written(
    engine: Engine,
) -> None:
    engine.create_topic(TOPIC)
    pid = engine.init_producer_id("alice")
    with pytest.raises(UnknownProducerError):
        engine.append(TOPIC, keyless(b"a"), ProducerBatch(pid, 0, sequence=0), principal="bob")
    assert appends(engine) == [] and segments(engine) == []
    assert chains(engine).read_producer(topic_id(engine), pid) is None


def test_a_request_whose_predecessor_never_commits_is_out_of_order_and_writes_nothing(
    make_faulty: MakeFaulty,
) -> None:
    clock = FakeClock()
    engine, _ = make_faulty(clock_ms=clock, sleep=clock.sleep)
    engine.create_topic(TOPIC, partitions=3)
    pid = engine.init_producer_id()
    store = chains(engine)
    assert isinstance(store, FaultyLedgerStore)
    reached, release = threading.Event(), threading.Event()

    def hold(item: ChainItem) -> None:
        if item.seq == 1:
            reached.set()
            assert release.wait(WAIT_S)

    store.on_put = hold
    first_acks: list[RecordMetadata] = []
    first = threading.Thread(
        target=lambda: first_acks.extend(
            engine.append(TOPIC, keyed(3), ProducerBatch(pid, 0, sequence=0))
        )
    )
    first.start()
    try:
        assert reached.wait(WAIT_S)
        # The second request of the producer comes while the first is held before its write.
        with pytest.raises(OutOfOrderSequenceError, match="sequence 3 to this topic; expected 0"):
            engine.append(TOPIC, keyed(2, "b"), ProducerBatch(pid, 0, sequence=3))
    finally:
        release.set()
        first.join()
    assert len(appends(engine)) == 1

    # The SDK resends it after the first's ack: both land once, in sequence order.
    second_acks = engine.append(TOPIC, keyed(2, "b"), ProducerBatch(pid, 0, sequence=3))
    first_item, second_item = appends(engine)
    assert_acks_in(first_acks, first_item)
    assert_acks_in(second_acks, second_item)


def test_a_request_waits_in_place_for_its_predecessor_to_commit(
    make_faulty: MakeFaulty,
) -> None:
    clock = FakeClock()
    engine, _ = make_faulty(clock_ms=clock)
    engine.create_topic(TOPIC, partitions=3)
    pid = engine.init_producer_id()
    store = chains(engine)
    assert isinstance(store, FaultyLedgerStore)
    reached, release, done = threading.Event(), threading.Event(), threading.Event()
    puts: list[ChainItem] = []

    def hold(item: ChainItem) -> None:
        puts.append(item)
        if len(puts) == 1:
            reached.set()
            assert release.wait(WAIT_S)

    def sleep(seconds: float) -> None:
        # The second request backs off while the first is held: let the first commit.
        release.set()
        assert done.wait(WAIT_S)
        clock.sleep(seconds)

    store.on_put = hold
    engine.appender._sleep = sleep
    first_acks: list[RecordMetadata] = []

    def first_request() -> None:
        first_acks.extend(engine.append(TOPIC, keyed(3), ProducerBatch(pid, 0, sequence=0)))
        done.set()

    first = threading.Thread(target=first_request)
    first.start()
    assert reached.wait(WAIT_S)
    second_acks = engine.append(TOPIC, keyed(2, "b"), ProducerBatch(pid, 0, sequence=3))
    first.join()

    first_item, second_item = appends(engine)
    assert_acks_in(first_acks, first_item)
    assert_acks_in(second_acks, second_item)
    assert len(puts) == 2 and len(segments(engine)) == 2


@pytest.mark.moto  # on DynamoDB's conditions as moto emulates them
def test_a_request_and_its_retry_racing_in_two_engines_land_once(
    make_faulty: MakeFaulty,
) -> None:
    one, _ = make_faulty()
    other, _ = make_faulty()
    one.create_topic(TOPIC, partitions=4)
    producer = ProducerBatch(one.init_producer_id(), 0, sequence=0)
    records = keyed(8)
    barrier = threading.Barrier(2)
    for engine in (one, other):
        store = chains(engine)
        assert isinstance(store, FaultyLedgerStore)
        store.on_put = lambda item: item.seq == 1 and barrier.wait(WAIT_S) and None
    replies: dict[int, list[RecordMetadata]] = {}

    def send(index: int) -> None:
        replies[index] = (one, other)[index].append(TOPIC, records, producer)

    run_in_threads(2, send)

    assert replies[0] == replies[1]
    (item,) = appends(one)
    assert_acks_in(replies[0], item)


def test_a_thousand_producers_never_make_a_topic_unwritable(engine: Engine) -> None:
    engine.create_topic(TOPIC, partitions=2)
    for _ in range(1000):
        producer = ProducerBatch(engine.init_producer_id(), 0, sequence=0)
        engine.append(TOPIC, keyless(b"x"), producer)
    acks = engine.append(TOPIC, keyless(b"last"))
    items = appends(engine)
    assert len(items) == 1001
    assert sum(items[-1].mark(p).high_watermark for p in range(2)) == 1001
    assert acks[0].offset == items[-1].base_offset(acks[0].partition)


# --- contention and failures -----------------------------------------------------------------


def test_racing_appenders_get_dense_offsets_exactly_once(
    make_engine: Callable[..., Engine],
) -> None:
    engines = [make_engine(sleep=lambda _s: None, seed=n) for n in range(4)]
    engines[0].create_topic(TOPIC, partitions=5)
    replies: dict[tuple[int, int], list[RecordMetadata]] = {}

    def work(index: int) -> None:
        for n in range(6):
            records = keyed(7, prefix=f"{index}-{n}-")
            replies[(index, n)] = engines[index].append(TOPIC, records)

    run_in_threads(4, work)

    items = appends(engines[0])
    assert len(items) == 24
    seen = Counter((ack.partition, ack.offset) for reply in replies.values() for ack in reply)
    assert max(seen.values()) == 1
    for partition in range(5):
        offsets = sorted(o for p, o in seen if p == partition)
        assert offsets == list(range(items[-1].mark(partition).high_watermark))
    by_segment = {item.segment_id: item for item in items}
    assert len(by_segment) == 24


def test_racing_requests_of_one_appender_never_race_for_a_seq(make_faulty: MakeFaulty) -> None:
    engine, _ = make_faulty()
    engine.create_topic(TOPIC, partitions=3)
    puts = counting_puts(engine)
    run_in_threads(8, lambda index: engine.append(TOPIC, keyed(3, prefix=f"{index}-")))
    assert len(appends(engine)) == 8
    # None missed: each request planned on the item the one before it wrote.
    assert len(puts) == 8


@pytest.mark.moto  # on DynamoDB's conditions as moto emulates them
def test_a_writer_many_items_behind_reads_the_tail_instead_of_walking(
    make_faulty: MakeFaulty, make_engine: Callable[..., Engine]
) -> None:
    behind, _ = make_faulty()
    behind.create_topic(TOPIC, partitions=2)
    behind.append(TOPIC, keyless(b"first"))
    ahead = make_engine(sleep=lambda _s: None)
    for n in range(20):
        ahead.append(TOPIC, keyless(b"%d" % n))
    puts = counting_puts(behind)

    behind.append(TOPIC, keyless(b"late"))

    # Its cached tail (seq 1) is 20 items old: one conflict returns item 2, the second
    # conflict makes it read the tail, and the third put lands at seq 22.
    assert [item.seq for item in puts] == [2, 3, 22]
    assert appends(behind)[-1].seq == 22


def test_a_chain_conflict_replans_on_the_returned_item_without_a_second_upload(
    make_faulty: MakeFaulty, make_engine: Callable[..., Engine]
) -> None:
    engine, _ = make_faulty()
    other = make_engine(sleep=lambda _s: None)
    engine.create_topic(TOPIC, partitions=2)
    puts = counting_puts(engine)
    store = chains(engine)
    assert isinstance(store, FaultyLedgerStore)

    def interleave(item: ChainItem) -> None:
        puts.append(item)
        if len(puts) == 1:
            other.append(TOPIC, [Record(b"other", partition=0)])

    store.on_put = interleave
    acks = engine.append(TOPIC, [Record(b"mine", partition=0)])

    assert [item.seq for item in puts] == [1, 2]
    assert acks[0].offset == 1
    assert len(segments(engine)) == 2  # one each


@pytest.mark.parametrize("point", [FailPoint.THROTTLE, FailPoint.CONFLICT])
def test_throttles_and_retryable_conflicts_are_resent_without_a_second_upload(
    make_faulty: MakeFaulty, point: FailPoint
) -> None:
    engine, injector = make_faulty()
    engine.create_topic(TOPIC, partitions=2)
    injector.arm(point, times=3)
    acks = engine.append(TOPIC, keyed(4))
    (item,) = appends(engine)
    assert_acks_in(acks, item)
    assert len(segments(engine)) == 1


def test_throttling_that_outlasts_the_retry_budget_is_reported_and_writes_nothing(
    make_faulty: MakeFaulty,
) -> None:
    engine, injector = make_faulty(retry=AppendRetryPolicy(max_attempts=4))
    engine.create_topic(TOPIC)
    injector.arm(FailPoint.THROTTLE, times=10)
    with pytest.raises(ThrottledError):
        engine.append(TOPIC, keyless(b"a"))
    assert appends(engine) == [] and len(segments(engine)) == 1


def test_an_append_that_stalls_after_its_upload_gives_up_instead_of_committing(
    make_faulty: MakeFaulty,
) -> None:
    clock = FakeClock()

    def stall(seconds: float) -> None:
        clock.now += MAX_UPLOAD_AGE_MS + 1

    engine, injector = make_faulty(clock_ms=clock, sleep=stall)
    engine.create_topic(TOPIC)
    injector.arm(FailPoint.THROTTLE)
    with pytest.raises(UnavailableError, match="stalled"):
        engine.append(TOPIC, keyless(b"a"))
    assert appends(engine) == []


def test_a_producer_state_naming_another_requests_item_is_never_acknowledged(
    engine: Engine,
) -> None:
    engine.create_topic(TOPIC)
    engine.append(TOPIC, keyless(b"someone else's"))
    pid = engine.init_producer_id()
    records = keyless(b"mine")
    store, tid = chains(engine), topic_id(engine)
    found = store.read_tail(tid)
    assert found is not None
    # A damaged state: the producer's request 0 is said to be in item 1, which it is not.
    stamp = ProducerStamp(pid, 0, 0, 1, request_digest(records))
    item = plan_append(
        found[0],
        (BatchRef(0, 1, 10, 4, NOW),),
        segment_id=bytes(24),
        segment_size=100,
        footer_offset=14,
        append_time_ms=NOW,
        partitions=1,
        sticky=0,
        producer=None,
    )
    update = producer_update(None, stamp, 1, engine.context.clock_ms())
    store.put_item(tid, item, update)

    with pytest.raises(CorruptLedgerError):
        engine.append(TOPIC, records, ProducerBatch(pid, 0, sequence=0))


def test_a_write_that_fails_otherwise_than_by_a_conflict_is_not_retried(
    make_faulty: MakeFaulty,
) -> None:
    engine, injector = make_faulty()
    engine.create_topic(TOPIC)
    puts = counting_puts(engine)
    injector.arm(FailPoint.BEFORE_LEDGER)
    with pytest.raises(InjectedFaultError):
        engine.append(TOPIC, keyless(b"a"))
    assert puts == [] and appends(engine) == []

    # The orphan stays behind; the retry uploads again and lands once.
    acks = engine.append(TOPIC, keyless(b"a"))
    (item,) = appends(engine)
    assert_acks_in(acks, item)
    assert len(segments(engine)) == 2


class _UnreadableConflicts:
    """A chain store whose first puts are refused without the item at the seq (as when
    the adapter could not read it back), counting tail reads."""

    def __init__(self, inner: LedgerStore, refusals: int) -> None:
        self.inner = inner
        self.refusals = refusals
        self.tail_reads = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def read_tail(self, topic_id: str) -> object:
        self.tail_reads += 1
        return self.inner.read_tail(topic_id)

    def put_item(self, topic_id: str, item: ChainItem, producer: object = None) -> None:
        if self.refusals:
            self.refusals -= 1
            raise ChainConflict()
        self.inner.put_item(topic_id, item, producer)  # type: ignore[arg-type]


def test_a_conflict_without_the_item_at_the_seq_reads_the_tail(engine: Engine) -> None:
    engine.create_topic(TOPIC)
    engine.append(TOPIC, keyless(b"a"))
    store = _UnreadableConflicts(engine.context.ledger, refusals=1)
    engine.context.ledger = store  # type: ignore[assignment]

    acks = engine.append(TOPIC, keyless(b"b"))

    assert store.tail_reads == 1
    assert acks[0].offset == 1
    assert [item.seq for item in appends(engine)] == [1, 2]


def test_racing_idempotent_producers_with_retries_land_each_request_once(
    make_engine: Callable[..., Engine],
) -> None:
    engines = [make_engine(sleep=lambda _s: None, seed=n) for n in range(3)]
    engines[0].create_topic(TOPIC, partitions=4)
    pids = [engine.init_producer_id() for engine in engines]
    replies: dict[tuple[int, int], list[RecordMetadata]] = {}

    def work(index: int) -> None:
        engine, sequence = engines[index], 0
        for n in range(5):
            records = [*keyed(3, prefix=f"{index}-{n}-"), *keyless(b"%d" % n)]
            producer = ProducerBatch(pids[index], 0, sequence=sequence)
            first = engine.append(TOPIC, records, producer)
            # A retry from another process of the same principal gets the same answer.
            again = engines[(index + 1) % 3].append(TOPIC, records, producer)
            assert again == first
            replies[(index, n)] = first
            sequence += len(records)

    run_in_threads(3, work)

    items = appends(engines[0])
    assert len(items) == 15
    assert Counter(item.producer.producer_id for item in items if item.producer) == dict.fromkeys(
        pids, 5
    )
    seen = Counter((ack.partition, ack.offset) for reply in replies.values() for ack in reply)
    assert max(seen.values()) == 1 and sum(seen.values()) == 60
    for partition in range(4):
        offsets = sorted(o for p, o in seen if p == partition)
        assert offsets == list(range(items[-1].mark(partition).high_watermark))

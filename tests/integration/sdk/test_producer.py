"""Producer: batching, partitioning, futures, retries without duplicates, limits."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, TypeVar

import pytest

from lakelog import LevelUsage, PartitionLevels, StorageLevels, TopicPartition
from lakelog.client import Client
from lakelog.client.producer import Producer
from lakelog.contract.operations import Append, Fetch, Operation
from lakelog.errors import (
    InvalidRequestError,
    PayloadTooLargeError,
    TopicNotFoundError,
)
from lakelog.log.partitioner import partition_for_key
from tests.integration.sdk.conftest import BACKSTOP_S, Wire

R = TypeVar("R")


def read_all(client: Client, topic: str) -> dict[int, list[tuple[int, bytes | None, bytes | None]]]:
    """Every record of every partition as (offset, key, value)."""
    found: dict[int, list[tuple[int, bytes | None, bytes | None]]] = {}
    for info in client.describe_topic(topic).partitions:
        offset, rows = 0, []
        while offset < info.high_watermark:
            result = client.call(Fetch(topic, info.partition, offset, 10_000, 6 << 20))
            rows += [(r.offset, r.key, r.value) for r in result.records]
            offset = result.next_offset
        found[info.partition] = rows
    return found


def test_a_thousand_small_sends_become_a_handful_of_appends(wired: tuple[Client, Wire]) -> None:
    client, wire = wired
    client.create_topic("small", partitions=4)
    with client.producer(linger_ms=50, batch_bytes=1 << 20) as producer:
        futures = [producer.send("small", value=b"v%04d" % i) for i in range(1000)]
        producer.flush()
        metrics = producer.metrics()
    assert all(f.done() for f in futures)
    assert metrics.records == 1000
    assert wire.calls["append"] == metrics.appends
    assert 1 <= metrics.appends <= 10, metrics
    values = sorted(v for rows in read_all(client, "small").values() for _, _, v in rows)
    assert values == sorted(b"v%04d" % i for i in range(1000))


def test_batch_bytes_sends_before_linger_expires(wired: tuple[Client, Wire]) -> None:
    client, wire = wired
    client.create_topic("full", partitions=1)
    with client.producer(linger_ms=3_600_000, batch_bytes=10_000) as producer:
        futures = [producer.send("full", value=bytes(1000)) for _ in range(30)]
        for future in futures[:20]:
            future.get(timeout=60)  # sent by size: linger alone would wait an hour
        producer.flush()
    assert wire.calls["append"] >= 3
    assert [f.get().offset for f in futures] == list(range(30))


def test_linger_sends_a_lone_record_without_flush(client: Client) -> None:
    client.create_topic("lone")
    producer = client.producer(linger_ms=20)
    meta = producer.send("lone", value=b"x").get(timeout=60)  # no flush: linger sends it
    assert meta == (meta.topic, 0, 0, meta.timestamp) and meta.topic == "lone"
    producer.close()


def test_keys_go_to_kafkas_partition_and_keep_order(client: Client) -> None:
    client.create_topic("keyed", partitions=6)
    keys = [b"user-%d" % (i % 17) for i in range(300)]
    with client.producer(linger_ms=5) as producer:
        futures = [
            producer.send("keyed", key=k, value=b"%d" % i, headers=[("n", b"%d" % i)])
            for i, k in enumerate(keys)
        ]
    for key, future in zip(keys, futures, strict=True):
        assert future.get().partition == partition_for_key(key, 6)
    for rows in read_all(client, "keyed").values():
        per_key: dict[bytes, list[int]] = {}
        for _, key, value in rows:
            assert key is not None and value is not None
            per_key.setdefault(key, []).append(int(value))
        assert all(seq == sorted(seq) for seq in per_key.values())


def test_keyless_records_stick_to_a_partition_per_batch(wired: tuple[Client, Wire]) -> None:
    client, _ = wired
    client.create_topic("sticky", partitions=3)
    with client.producer(linger_ms=10_000, seed=7) as producer:
        first = [producer.send("sticky", value=b"a") for _ in range(50)]
        producer.flush()
        second = [producer.send("sticky", value=b"b") for _ in range(50)]
        producer.flush()
    assert len({f.get().partition for f in first}) == 1
    assert len({f.get().partition for f in second}) == 1
    assert first[0].get().partition != second[0].get().partition


def test_explicit_partition_and_timestamp(client: Client) -> None:
    client.create_topic("explicit", partitions=2)
    with client.producer() as producer:
        meta = producer.send("explicit", value=b"v", partition=1, timestamp_ms=1234).get(10)
    assert (meta.partition, meta.offset, meta.timestamp) == (1, 0, 1234)


def test_ambiguous_failures_are_retried_without_duplicates(wired: tuple[Client, Wire]) -> None:
    client, wire = wired
    client.create_topic("retry", partitions=2)
    wire.fail_next["append"] = 3  # the appends land, but their replies are lost
    with client.producer(linger_ms=5, retry_backoff_ms=1, seed=1) as producer:
        futures = [producer.send("retry", key=b"k%d" % i, value=b"%d" % i) for i in range(200)]
        producer.flush()
        assert producer.metrics().retries == 3
    assert all(f.exception() is None for f in futures)
    rows = read_all(client, "retry")
    assert sum(len(r) for r in rows.values()) == 200  # not 200 plus resent copies
    for partition, partition_rows in rows.items():
        assert [o for o, _, _ in partition_rows] == list(range(len(partition_rows)))
        sent = [f.get() for f in futures if f.get().partition == partition]
        assert sorted(m.offset for m in sent) == list(range(len(partition_rows)))


def test_retries_give_up_and_fail_the_futures(wired: tuple[Client, Wire]) -> None:
    client, wire = wired
    client.create_topic("down")
    producer = client.producer(linger_ms=0, retries=2, retry_backoff_ms=1)
    assert producer.partitions_for("down") == {0}
    wire.cut = True
    future = producer.send("down", value=b"v")
    with pytest.raises(Exception, match="cut"):
        future.get(timeout=30)
    assert producer.metrics().errors == 1
    wire.cut = False
    assert producer.send("down", value=b"w").get(timeout=30).offset == 0
    producer.close()


def test_unknown_topic_and_partition_raise_at_send(client: Client) -> None:
    client.create_topic("two", partitions=2)
    with client.producer() as producer:
        with pytest.raises(TopicNotFoundError):
            producer.send("missing", value=b"v")
        with pytest.raises(InvalidRequestError, match="partition 5"):
            producer.send("two", value=b"v", partition=5)
        with pytest.raises(PayloadTooLargeError):
            producer.send("two", value=bytes(7 << 20))


@pytest.mark.parametrize(
    "fields",
    [
        {"value": "text"},
        {"value": 1},
        {"key": "customer-42"},
        {"headers": [("h", "text")]},
        {"headers": {"h": b"v"}},
        {"headers": 5},
        {"partition": True},
        {"partition": 1.0},
        {"timestamp_ms": True},
        {"timestamp_ms": 1.5},
        {"timestamp_ms": -1},
    ],
    ids=repr,
)
def test_a_record_of_the_wrong_types_is_refused_at_send_and_queues_nothing(
    client: Client, fields: dict[str, Any]
) -> None:
    client.create_topic("typed", partitions=2)
    with client.producer(linger_ms=0) as producer:
        with pytest.raises(InvalidRequestError):
            producer.send("typed", **{"value": b"v", **fields})
        assert producer.send("typed", value=b"ok", partition=0).get(timeout=30).offset == 0
    assert client.describe_topic("typed").partitions[1].high_watermark == 0


@pytest.mark.parametrize(
    "options",
    [
        {"linger_ms": -1},
        {"linger_ms": float("nan")},
        {"batch_bytes": 0},
        {"buffer_bytes": 0},
        {"max_block_ms": float("nan")},
    ],
    ids=repr,
)
def test_a_producer_with_options_out_of_range_is_refused(
    client: Client, options: dict[str, Any]
) -> None:
    # A nan linger compared false with everything: records waited for a flush that
    # linger never started, and send().get() timed out
    with pytest.raises(InvalidRequestError, match="linger_ms must be"):
        client.producer(**options)


def test_a_record_over_the_topics_limit_is_refused_at_send(client: Client) -> None:
    client.create_topic("strict", config={"max_record_bytes": 100})
    with client.producer() as producer:
        with pytest.raises(PayloadTooLargeError, match="max_record_bytes"):
            producer.send("strict", value=bytes(500), headers=iter([("h", b"v")]))
        ok = producer.send("strict", value=bytes(10), headers=iter([("h", b"v")]))
    assert ok.get().offset == 0
    assert client.call(Fetch("strict", 0, 0, 1, 1000)).records[0].headers == (("h", b"v"),)


def test_server_side_rejection_reaches_the_future(wired: tuple[Client, Wire]) -> None:
    client, _ = wired
    client.create_topic("shrinks", config={"max_record_bytes": 1000})
    with client.producer() as producer:
        producer.partitions_for("shrinks")  # caches the limit of 1000
        client.alter_topic("shrinks", config={"max_record_bytes": 100})
        future = producer.send("shrinks", value=bytes(500))
        producer.flush()
    with pytest.raises(PayloadTooLargeError):
        future.get()


def test_send_after_close_raises_and_close_is_idempotent(client: Client) -> None:
    client.create_topic("closed")
    producer = client.producer()
    producer.send("closed", value=b"v")
    producer.close()
    producer.close()
    with pytest.raises(InvalidRequestError, match="closed"):
        producer.send("closed", value=b"v")
    assert client.describe_topic("closed").partitions[0].high_watermark == 1


def test_a_full_buffer_blocks_send_until_space_frees(client: Client) -> None:
    client.create_topic("buffer")
    producer = client.producer(linger_ms=0, buffer_bytes=4096, max_block_ms=30_000)
    futures = [producer.send("buffer", value=bytes(1000)) for _ in range(40)]
    producer.flush()
    assert [f.get().offset for f in futures] == list(range(40))
    producer.close()


def test_a_full_buffer_times_out(wired: tuple[Client, Wire]) -> None:
    client, wire = wired
    client.create_topic("stuck")
    producer = client.producer(linger_ms=0, buffer_bytes=1000, max_block_ms=200, retries=1000)
    producer.partitions_for("stuck")
    wire.cut = True
    producer.send("stuck", value=bytes(900))
    with pytest.raises(TimeoutError):
        producer.send("stuck", value=bytes(900))
    wire.cut = False
    producer.close(timeout=30)


def test_sends_from_many_threads_are_all_acknowledged_once(client: Client) -> None:
    client.create_topic("threads", partitions=3)
    producer = client.producer(linger_ms=5)
    futures = []
    lock = threading.Lock()

    def send(worker: int) -> None:
        for i in range(100):
            future = producer.send("threads", key=b"%d" % worker, value=b"%d-%d" % (worker, i))
            with lock:
                futures.append(future)

    threads = [threading.Thread(target=send, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    producer.close()
    landed = {(f.get().partition, f.get().offset) for f in futures}
    assert len(landed) == 400
    assert producer.partitions_for("threads") == {0, 1, 2}
    assert TopicPartition("threads", 0) in {TopicPartition("threads", p) for p, _ in landed}


class _Sequences(Wire):
    """Records each append's topic, records and producer (what the SDK sends)."""

    def __init__(self, inner: Wire) -> None:
        super().__init__(inner)
        self.appends: list[Append] = []

    def call(self, op: Operation[R]) -> R:
        if isinstance(op, Append):
            self.appends.append(op)
        return super().call(op)


def test_one_sequence_per_topic_counts_each_requests_records_over_its_partitions(
    wired: tuple[Client, Wire],
) -> None:
    # ADR 0012, 2.2: a request's sequence is the topic's, whatever partitions it spans
    client, wire = wired
    client.create_topic("a", partitions=3)
    client.create_topic("b", partitions=2)
    sequences = _Sequences(wire)
    producer = Producer(sequences, linger_ms=3_600_000)
    try:
        for round_ in range(3):
            for i in range(5 + round_):
                producer.send("a", value=b"a%d-%d" % (round_, i), partition=i % 3)
            producer.send("b", value=b"b%d" % round_, partition=round_ % 2)
            producer.flush()
    finally:
        producer.close()

    sent: dict[str, list[tuple[int, int]]] = {"a": [], "b": []}
    for op in sequences.appends:
        assert op.producer is not None and op.producer.sequences == {}
        assert op.producer.sequence is not None
        sent[op.topic].append((op.producer.sequence, len(op.records)))
    for topic, requests in sent.items():
        # Each request starts where the topic's previous one ended, from 0
        assert [first for first, _ in requests] == [
            sum(count for _, count in requests[:n]) for n in range(len(requests))
        ], topic
    # Every flush sent each topic's records of all partitions in one request
    assert [count for _, count in sent["a"]] == [5, 6, 7]
    assert len({op.producer.producer_id for op in sequences.appends if op.producer}) == 1
    assert sum(len(rows) for rows in read_all(client, "a").values()) == 18


def test_describe_topic_gives_levels_only_when_asked(client: Client) -> None:
    # Given three appends to a two-partition topic
    client.create_topic("leveled", partitions=2)
    with client.producer(linger_ms=0) as producer:
        for partition in (0, 1, 1):
            producer.send("leveled", value=b"v", partition=partition).get(timeout=BACKSTOP_S)

    plain = client.describe_topic("leveled")
    described = client.describe_topic("leveled", levels=True)

    # Then only the second has levels: three L0 segments of the partitions' bytes, no L1
    assert plain.levels is None
    assert [p.levels for p in plain.partitions] == [None, None]
    assert described.levels == StorageLevels(
        l0=LevelUsage(segments=3, bytes=sum(p.bytes for p in plain.partitions)),
        l1=LevelUsage(segments=0, bytes=0),
    )
    assert [p.levels for p in described.partitions] == [
        PartitionLevels(l0_bytes=p.bytes, l1=LevelUsage(0, 0)) for p in plain.partitions
    ]
    assert [dataclasses.replace(p, levels=None) for p in described.partitions] == plain.partitions

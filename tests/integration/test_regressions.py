"""Edge cases that once escaped as the wrong error, or were silently accepted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lakelog import (
    CorruptSegmentError,
    Engine,
    InvalidRequestError,
    ProducerBatch,
    Record,
)
from lakelog.config import TopicConfig
from lakelog.errors import UnavailableError
from lakelog.limits import MAX_TIMESTAMP_MS
from lakelog.log.codec import SegmentBuilder, SegmentReader
from lakelog.log.ledger import contiguous_run
from lakelog.service.produce import MAX_UPLOAD_AGE_MS
from lakelog.storage import DynamoLedgerStore
from lakelog.storage.keys import topic_segments_prefix
from lakelog.storage.ports import Entry, ObjectInfo
from lakelog.types import TopicDescription
from tests.contract.backends import Backend


@pytest.mark.parametrize("raw", ["abc", ["x"], 5])
def test_config_that_is_not_a_mapping_raises_invalid_request(raw: Any) -> None:
    with pytest.raises(InvalidRequestError, match="must be an object"):
        TopicConfig.parse(raw)


def test_create_topic_with_a_list_config_raises_invalid_request(engine: Engine) -> None:
    with pytest.raises(InvalidRequestError):
        engine.create_topic("t", config=["retention_ms"])  # type: ignore[arg-type]


def test_headers_none_raises_invalid_request(engine: Engine) -> None:
    engine.create_topic("t")
    with pytest.raises(InvalidRequestError):
        engine.append("t", [Record(value=b"v", headers=None)])  # type: ignore[arg-type]


def test_header_name_that_is_not_utf8_encodable_raises_invalid_request(engine: Engine) -> None:
    engine.create_topic("t")
    with pytest.raises(InvalidRequestError):
        engine.append("t", [Record(value=b"v", headers=(("\udc80", b"x"),))])


def _segment_with_invalid_utf8_header_key() -> bytes:
    builder = SegmentBuilder("tid", "none")
    builder.add_batch(0, [1], [None], [b"v"], [[("KEYMARK", b"x")]])
    body = builder.build().body
    index = body.index(b"KEYMARK")
    return body[:index] + b"\xff" + body[index + 1 :]


def test_invalid_utf8_in_a_header_key_raises_corrupt_segment() -> None:
    body = _segment_with_invalid_utf8_header_key()
    with pytest.raises(CorruptSegmentError):
        SegmentReader.from_bytes("seg", body).read_all(body)


def _segment_keys(backend: Backend, topic: TopicDescription) -> list[ObjectInfo]:
    objects, *_ = backend.stores()
    return list(objects.list(topic_segments_prefix(topic.topic_id)))


def test_fetch_of_a_segment_with_invalid_utf8_header_key_raises_corrupt_segment(
    make_engine: Callable[..., Engine], backend: Backend
) -> None:
    engine = make_engine()
    topic = engine.create_topic("t", config={"compression": "none"})
    engine.append("t", [Record(value=b"v", headers=(("KEYMARK", b"x"),))])
    (info,) = _segment_keys(backend, topic)
    objects, *_ = backend.stores()
    body = objects.get_range(info.key, 0, info.size)
    index = body.index(b"KEYMARK")
    objects.put(info.key, body[:index] + b"\xff" + body[index + 1 :])
    with pytest.raises(CorruptSegmentError):
        make_engine().fetch("t", 0, 0)


@pytest.mark.parametrize("body", [b"", b"short"])
def test_fetch_of_a_truncated_segment_raises_corrupt_segment(
    make_engine: Callable[..., Engine], backend: Backend, body: bytes
) -> None:
    engine = make_engine()
    topic = engine.create_topic("t", partitions=2)
    engine.append("t", [Record(value=b"a" * 50, partition=0), Record(value=b"b", partition=1)])
    (info,) = _segment_keys(backend, topic)
    backend.stores()[0].put(info.key, body)
    with pytest.raises(CorruptSegmentError):
        make_engine().fetch("t", 1, 0)


def test_fetch_of_a_missing_segment_raises_a_lakelog_error(
    make_engine: Callable[..., Engine], backend: Backend
) -> None:
    engine = make_engine()
    topic = engine.create_topic("t")
    engine.append("t", [Record(value=b"a")])
    (info,) = _segment_keys(backend, topic)
    backend.stores()[0].delete([info.key])
    with pytest.raises(CorruptSegmentError):
        make_engine().fetch("t", 0, 0)


def test_explicit_partition_added_by_another_engine_is_accepted(
    make_engine: Callable[..., Engine],
) -> None:
    a, b = make_engine(), make_engine()
    a.create_topic("t", partitions=1)
    b.append("t", [Record(value=b"cached")])  # b now caches 1 partition for 30 s
    a.alter_topic("t", partitions=2)
    b.append("t", [Record(value=b"new", partition=1)])


def test_a_flipped_byte_in_a_data_page_fails_the_page_checksum() -> None:
    # Given an uncompressed segment whose value bytes are then altered in place
    builder = SegmentBuilder("tid", "none")
    builder.add_batch(0, [1], [None], [b"VALUEMARK" * 4], [[]])
    body = builder.build().body
    index = body.index(b"VALUEMARK")
    altered = body[:index] + b"X" + body[index + 1 :]

    # Then reading it raises a named error instead of returning other bytes
    with pytest.raises(CorruptSegmentError):
        SegmentReader.from_bytes("seg", altered).read_all(altered)


def test_an_empty_batch_cannot_be_encoded() -> None:
    with pytest.raises(ValueError, match="at least one record"):
        SegmentBuilder("tid").add_batch(0, [], [], [], [])


@pytest.mark.parametrize("timestamp", [MAX_TIMESTAMP_MS + 1, 2**63 - 1])
def test_timestamps_beyond_year_9999_are_rejected(engine: Engine, timestamp: int) -> None:
    engine.create_topic("t")
    with pytest.raises(InvalidRequestError, match="timestamp_ms"):
        engine.append("t", [Record(value=b"v", timestamp_ms=timestamp)])
    engine.append("t", [Record(value=b"v", timestamp_ms=MAX_TIMESTAMP_MS)])


def _entry(base: int, last: int) -> Entry:
    return Entry(base, last, "k", 0, 0, 1, 10, 5, 0, 0, 0, 1)


def test_contiguous_run_stops_at_an_overlapping_entry() -> None:
    entries = [_entry(0, 4), _entry(3, 6), _entry(7, 9)]
    assert contiguous_run(entries, 2) == [entries[0]]


def test_retry_with_a_different_record_count_is_named_as_such(engine: Engine) -> None:
    engine.create_topic("t")
    pid = engine.init_producer_id()
    engine.append("t", [Record(value=b"a"), Record(value=b"b")], ProducerBatch(pid, 0, {0: 0}))
    with pytest.raises(InvalidRequestError, match="original batch had 2"):
        engine.append("t", [Record(value=b"a")], ProducerBatch(pid, 0, {0: 0}))


def test_config_values_of_the_wrong_type_are_not_coerced() -> None:
    for raw in ({"retention_ms": "1000"}, {"max_record_bytes": True}, {"retention_bytes": 1.0}):
        with pytest.raises(InvalidRequestError):
            TopicConfig.parse(raw)


def test_idempotent_producer_moving_between_processes_is_not_rejected_on_a_stale_cache(
    make_engine: Callable[..., Engine],
) -> None:
    # Given process A cached the head after the producer's first batch
    a, b = make_engine(), make_engine()
    a.create_topic("t")
    pid = a.init_producer_id()
    a.append("t", [Record(value=b"0")], ProducerBatch(pid, 0, {0: 0}))
    # And the producer's next batch went through process B
    b.append("t", [Record(value=b"1")], ProducerBatch(pid, 0, {0: 1}))

    # When its third batch reaches A again, and then B retries its batch through A
    third = a.append("t", [Record(value=b"2")], ProducerBatch(pid, 0, {0: 2}))
    retried = a.append("t", [Record(value=b"1")], ProducerBatch(pid, 0, {0: 1}))

    # Then A confirms against the ledger instead of trusting its stale head
    assert [m.offset for m in third] == [2]
    assert [m.offset for m in retried] == [1]
    assert [r.value for r in a.fetch("t", 0, 0).records] == [b"0", b"1", b"2"]


def test_fetch_of_many_small_batches_fills_max_records_in_one_call(engine: Engine) -> None:
    engine.create_topic("t")
    for i in range(25):
        engine.append("t", [Record(value=str(i).encode())])

    result = engine.fetch("t", 0, 0, max_records=22)

    assert [r.offset for r in result.records] == list(range(22))
    assert result.next_offset == 22


class _ClockBumpingStore:
    """An object store that lets time jump forward right after each PUT (a stalled append)."""

    def __init__(self, inner: Any, now: list[int], jump_ms: int) -> None:
        self.inner, self.now, self.jump_ms = inner, now, jump_ms

    def put(self, key: str, body: bytes) -> None:
        self.inner.put(key, body)
        self.now[0] += self.jump_ms

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_an_append_that_stalls_after_its_upload_gives_up_instead_of_committing(
    backend: Backend,
) -> None:

    now = [1_000_000]
    objects, ledger, catalog, groups = backend.stores()
    engine = Engine(
        _ClockBumpingStore(objects, now, MAX_UPLOAD_AGE_MS + 1),
        ledger,
        catalog,
        groups,
        clock_ms=lambda: now[0],
    )
    engine.create_topic("t")

    with pytest.raises(UnavailableError, match="stalled"):
        engine.append("t", [Record(value=b"late")])

    assert engine.list_offset("t", 0, "latest") == 0


def test_a_transaction_cancelled_for_another_reason_is_reported_not_retried() -> None:

    error = ClientError(
        {
            "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
            "CancellationReasons": [{"Code": "ValidationError"}, {"Code": "None"}],
        },
        "TransactWriteItems",
    )
    assert isinstance(DynamoLedgerStore._conflict([], error), UnavailableError)

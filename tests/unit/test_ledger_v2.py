"""The ledger v2 protocol without storage: planning chain items, named invariants, reading
runs, binary search, producer rules and the request digest (ADR 0012)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from lakelog.errors import (
    CorruptSegmentError,
    InvalidRequestError,
    OutOfOrderSequenceError,
    ProducerFencedError,
)
from lakelog.log.chain import (
    PRODUCER_EXPIRATION_MS,
    PRODUCER_REQUESTS_KEPT,
    InvariantViolation,
    chain_run,
    check_append,
    check_footer,
    check_producer,
    check_sequence,
    first_seq,
    genesis,
    is_sealed,
    new_segment_id,
    plan_append,
    producer_update,
    request_digest,
    row_group_starts,
    seal_after,
)
from lakelog.log.records import (
    BatchRef,
    ChainItem,
    PartitionMark,
    ProducerRequest,
    ProducerStamp,
    TopicProducerState,
)
from lakelog.storage.keys import (
    l0_segment_key_from_id,
    l1_entries_pk,
    l1_segment_key,
    segment_created_ms,
)
from lakelog.types import Record

NOW = 1_700_000_000_000
PRODUCER = 17
SEGMENT = bytes(24)


def batch(partition: int, count: int = 2, length: int = 100, max_ts: int = 500) -> BatchRef:
    return BatchRef(
        partition=partition,
        record_count=count,
        byte_length=length,
        record_bytes=count * 10,
        max_timestamp=max_ts,
    )


def append(
    tail: ChainItem,
    *batches: BatchRef,
    partitions: int | None = None,
    producer: ProducerStamp | None = None,
) -> ChainItem:
    return plan_append(
        tail,
        batches,
        segment_id=SEGMENT,
        segment_size=1_000,
        footer_offset=4 + sum(b.byte_length for b in batches),
        append_time_ms=NOW,
        partitions=tail.partitions if partitions is None else partitions,
        sticky=None,
        producer=producer,
    )


def violated(tail: ChainItem, item: ChainItem) -> str:
    with pytest.raises(InvariantViolation) as caught:
        check_append(tail, item)
    return caught.value.invariant


# --- planning ---------------------------------------------------------------------------------


def test_genesis_is_seq_0_with_every_partition_empty() -> None:
    item = genesis(3, NOW)
    assert (item.seq, item.kind, item.max_timestamp, item.partitions) == (0, "genesis", -1, 3)
    assert item.snapshot == (PartitionMark(0, 0),) * 3
    assert item.batches == () and item.segment_id is None


def test_plan_append_moves_touched_partitions_and_copies_the_others() -> None:
    first = append(genesis(4, NOW), batch(1, count=3, length=70, max_ts=10))
    second = append(first, batch(0, 1, 5, 20), batch(1, 2, 30, 5), batch(3, 4, 9, 7))
    assert first.seq == 1 and second.seq == 2
    assert first.snapshot == (
        PartitionMark(0, 0),
        PartitionMark(3, 70),
        PartitionMark(0, 0),
        PartitionMark(0, 0),
    )
    assert second.snapshot == (
        PartitionMark(1, 5),
        PartitionMark(5, 100),
        PartitionMark(0, 0),
        PartitionMark(4, 9),
    )
    assert [second.base_offset(p) for p in range(4)] == [0, 3, 0, 0]
    assert second.max_timestamp == 20
    assert (second.kind, second.segment_id, second.segment_size) == ("append", SEGMENT, 1_000)


def test_max_timestamp_is_cumulative() -> None:
    first = append(genesis(1, NOW), batch(0, max_ts=900))
    assert append(first, batch(0, max_ts=100)).max_timestamp == 900


def test_snapshot_never_shrinks_after_partitions_are_added() -> None:
    tail = append(genesis(2, NOW), batch(1, count=3))
    grown = append(tail, batch(4, count=1), partitions=6)
    assert len(grown.snapshot) == 6
    assert grown.mark(1) == tail.mark(1) and grown.mark(4).high_watermark == 1
    # A writer whose cached count is older routes over fewer: the snapshot keeps 6.
    stale = append(grown, batch(0, count=1), partitions=2)
    assert len(stale.snapshot) == 6 and stale.mark(4) == grown.mark(4)
    shrunk = replace(stale, snapshot=stale.snapshot[:2])
    assert violated(grown, shrunk) == "SNAPSHOT"


def test_an_untouched_partition_changing_violates_snapshot() -> None:
    tail = append(genesis(3, NOW), batch(0), batch(2))
    item = append(tail, batch(1))
    moved = list(item.snapshot)
    moved[2] = PartitionMark(moved[2].high_watermark + 1, moved[2].cumulative_bytes)
    assert violated(tail, replace(item, snapshot=tuple(moved))) == "SNAPSHOT"
    check_append(tail, item)


def test_touched_bytes_that_do_not_add_up_violate_snapshot() -> None:
    tail = genesis(1, NOW)
    item = append(tail, batch(0, length=10))
    wrong = replace(item, snapshot=(PartitionMark(2, 11),))
    assert violated(tail, wrong) == "SNAPSHOT"


def test_a_seq_that_does_not_follow_the_tail_violates_snapshot() -> None:
    tail = genesis(1, NOW)
    item = append(tail, batch(0))
    assert violated(tail, replace(item, seq=2)) == "SNAPSHOT"


def test_a_batch_beyond_the_snapshot_violates_snapshot() -> None:
    with pytest.raises(InvariantViolation) as caught:
        append(genesis(2, NOW), batch(2))
    assert caught.value.invariant == "SNAPSHOT"


@pytest.mark.parametrize(
    ("mark", "count"),
    [
        pytest.param(PartitionMark(3, 10), 2, id="starts-past-the-high-watermark"),
        pytest.param(PartitionMark(1, 10), 2, id="overlaps-the-previous-batch"),
        pytest.param(PartitionMark(0, 10), 0, id="empty"),
    ],
)
def test_a_batch_that_does_not_start_at_the_high_watermark_violates_dense(
    mark: PartitionMark, count: int
) -> None:
    tail = genesis(1, NOW)
    item = replace(append(tail, batch(0, count=2, length=10)), snapshot=(mark,))
    item = replace(item, batches=(batch(0, count=count, length=10),))
    assert violated(tail, item) == "DENSE"


def test_an_empty_batch_is_refused_when_planned() -> None:
    with pytest.raises(InvariantViolation) as caught:
        append(genesis(1, NOW), batch(0, count=0))
    assert caught.value.invariant == "DENSE"


@pytest.mark.parametrize("order", [(1, 0), (0, 0)], ids=["descending", "repeated"])
def test_batches_out_of_partition_order_violate_dense(order: tuple[int, int]) -> None:
    with pytest.raises(InvariantViolation) as caught:
        append(genesis(2, NOW), *(batch(p) for p in order))
    assert caught.value.invariant == "DENSE"


def test_a_max_timestamp_going_back_violates_monotone_time() -> None:
    tail = append(genesis(1, NOW), batch(0, max_ts=900))
    item = append(tail, batch(0, max_ts=100))
    assert violated(tail, replace(item, max_timestamp=800)) == "MONOTONE_TIME"
    check_append(tail, replace(item, max_timestamp=901))


def test_a_max_timestamp_below_a_batch_violates_monotone_time() -> None:
    tail = genesis(1, NOW)
    item = append(tail, batch(0, max_ts=100))
    assert violated(tail, replace(item, max_timestamp=99)) == "MONOTONE_TIME"


def test_nothing_is_planned_after_a_seal() -> None:
    tail = append(genesis(1, NOW), batch(0))
    seal = seal_after(tail, NOW + 5)
    assert is_sealed(seal) and not is_sealed(tail)
    assert (seal.seq, seal.kind, seal.snapshot, seal.append_time_ms) == (
        2,
        "seal",
        tail.snapshot,
        NOW + 5,
    )
    with pytest.raises(InvariantViolation) as caught:
        append(seal, batch(0))
    assert caught.value.invariant == "SEALED"


def test_invariant_violation_is_never_mistaken_for_bad_input() -> None:
    # A broken invariant is a bug in lakelog, not a 4xx: it is not a LakelogError
    violation = InvariantViolation("DENSE", "detail")

    assert not isinstance(violation, InvalidRequestError)
    assert str(violation) == "DENSE: detail"


# --- reading runs -------------------------------------------------------------------------------


def chain(length: int, partitions: int = 2) -> list[ChainItem]:
    items = [genesis(partitions, NOW)]
    for index in range(1, length):
        items.append(append(items[-1], batch(index % partitions, count=index)))
    return items


def test_chain_run_keeps_a_consecutive_continuing_run() -> None:
    items = chain(6)
    assert chain_run(items[2:], 2, [0, 1]) == items[2:]


def test_chain_run_stops_at_a_seq_gap() -> None:
    items = chain(6)
    seen = [items[1], items[2], items[4], items[5]]
    assert chain_run(seen, 1, [0, 1]) == items[1:3]
    assert chain_run(items[2:], 1, [0, 1]) == []


def test_chain_run_stops_when_a_partition_does_not_continue() -> None:
    items = chain(5)
    # Item 3 as another writer planned it against an older tail: its seq follows, its
    # batch of partition 1 does not start where item 2 left partition 1.
    forged = append(items[0], batch(1, count=7))
    forged = replace(forged, seq=3, snapshot=(items[2].mark(0), forged.mark(1)))
    assert chain_run([items[1], items[2], forged], 1, [1]) == items[1:3]
    # Partition 0 is requested only: item 3 left it unchanged, so it continues there.
    assert chain_run([items[1], items[2], forged], 1, [0]) == [items[1], items[2], forged]


def test_chain_run_stops_when_an_untouched_partition_moved() -> None:
    items = chain(4)
    moved = replace(items[3], batches=())
    assert chain_run(items[1:], 1, [1]) == items[1:]
    assert chain_run([items[1], items[2], moved], 1, [1]) == items[1:3]


def test_chain_run_ends_with_a_seal() -> None:
    items = chain(3)
    seal = seal_after(items[-1], NOW)
    after = replace(append(items[-1], batch(0)), seq=seal.seq + 1)
    assert chain_run([*items, seal, after], 0, [0, 1]) == [*items, seal]


# --- binary search ------------------------------------------------------------------------------


def probe_of(
    items: list[ChainItem], start: int = 0
) -> tuple[list[int], Callable[[int], ChainItem | None]]:
    probed: list[int] = []

    def probe(seq: int) -> ChainItem | None:
        probed.append(seq)
        return items[seq] if start <= seq < len(items) else None

    return probed, probe


@pytest.mark.parametrize("offset", range(-1, 16))
def test_first_seq_finds_the_first_item_past_an_offset(offset: int) -> None:
    items = chain(10, partitions=1)
    probed, probe = probe_of(items)
    found = first_seq(0, 9, probe, lambda item: item.mark(0).high_watermark > offset)
    expected = next((i.seq for i in items if i.mark(0).high_watermark > offset), None)
    assert found == expected
    assert len(probed) <= 4


def test_first_seq_treats_missing_items_as_before_the_chain_start() -> None:
    items = chain(10, partitions=1)
    _, probe = probe_of(items, start=6)
    assert first_seq(0, 9, probe, lambda item: item.mark(0).high_watermark > 0) == 6
    _, nothing = probe_of([])
    assert first_seq(0, 9, nothing, lambda item: True) is None


def test_first_seq_by_time() -> None:
    items = [genesis(1, NOW)]
    for ts in (10, 30, 20, 50):
        items.append(append(items[-1], batch(0, max_ts=ts)))
    _, probe = probe_of(items)
    assert first_seq(0, 4, probe, lambda item: item.max_timestamp >= 25) == 2
    assert first_seq(0, 4, probe, lambda item: item.max_timestamp >= 51) is None


# --- segments -----------------------------------------------------------------------------------


def test_row_groups_start_after_the_magic_and_the_footer_after_them() -> None:
    item = append(genesis(3, NOW), batch(0, length=10), batch(1, length=20), batch(2, length=5))
    assert row_group_starts(item) == [4, 14, 34]
    check_footer(item)
    with pytest.raises(CorruptSegmentError, match="footer at 40"):
        check_footer(replace(item, footer_offset=40), "segments/t/L0/x.parquet")


def test_a_segment_id_names_its_time_and_gives_the_v1_key_format() -> None:
    first, second = new_segment_id(NOW), new_segment_id(NOW)
    assert len(first) == 24 and first != second and first[:8] == NOW.to_bytes(8, "big")
    key = l0_segment_key_from_id("ab" * 16, first)
    assert key == f"segments/{'ab' * 16}/L0/{NOW:013d}-{first[8:].hex()}.parquet"
    assert segment_created_ms(key) == NOW
    with pytest.raises(ValueError, match="24 bytes"):
        l0_segment_key_from_id("ab" * 16, first[:23])


def test_an_l1_key_names_its_partition_and_base_offset_and_no_creation_time() -> None:
    first, second = l1_segment_key("ab" * 16, 7, 1234), l1_segment_key("ab" * 16, 7, 1234)
    assert first != second
    assert first.startswith(f"segments/{'ab' * 16}/L1/7/{1234:020d}-")
    assert first.endswith(".parquet")
    # gc must not read an offset as a creation time: an L1 key's age is its object's
    assert segment_created_ms(first) is None
    assert l1_entries_pk("ab" * 16, 7) == f"p#{'ab' * 16}#7"


# --- producers ----------------------------------------------------------------------------------

DIGEST = b"d" * 8


def state(
    epoch: int = 1,
    last: int = 9,
    requests: tuple[tuple[int, int, int], ...] = ((0, 5, 1), (5, 5, 2)),
    expires_ms: int = NOW + 1,
) -> TopicProducerState:
    return TopicProducerState(
        producer_id=PRODUCER,
        epoch=epoch,
        last_sequence=last,
        requests=tuple(ProducerRequest(f, c, s, DIGEST) for f, c, s in requests),
        expires_ms=expires_ms,
    )


def decide(
    current: TopicProducerState | None,
    epoch: int = 1,
    first: int = 10,
    count: int = 5,
    digest: bytes = DIGEST,
) -> ProducerRequest | None:
    return check_producer(
        current,
        producer_id=PRODUCER,
        epoch=epoch,
        first_sequence=first,
        record_count=count,
        digest=digest,
        now_ms=NOW,
    )


EXPIRED = state(expires_ms=NOW - 1)


@pytest.mark.parametrize(
    "current",
    [None, EXPIRED, state(epoch=0)],
    ids=["none", "expired", "older-epoch"],
)
def test_a_first_request_at_sequence_0_is_new(current: TopicProducerState | None) -> None:
    assert decide(current, first=0) is None


@pytest.mark.parametrize(
    "current",
    [None, EXPIRED, state(epoch=0)],
    ids=["none", "expired", "older-epoch"],
)
def test_a_first_request_past_sequence_0_is_out_of_order(
    current: TopicProducerState | None,
) -> None:
    with pytest.raises(OutOfOrderSequenceError) as caught:
        decide(current, first=3)
    assert (caught.value.partition, caught.value.sequence, caught.value.expected) == (-1, 3, 0)
    assert "this topic" in caught.value.message and "partition" not in caught.value.message


def test_a_state_expiring_exactly_now_is_still_live() -> None:
    assert decide(state(expires_ms=NOW)) is None


@pytest.mark.parametrize("first", [0, 10, 99])
def test_an_older_epoch_is_fenced(first: int) -> None:
    with pytest.raises(ProducerFencedError) as caught:
        decide(state(epoch=2), epoch=1, first=first)
    assert (caught.value.epoch, caught.value.current_epoch) == (1, 2)


@pytest.mark.parametrize(("first", "seq"), [(0, 1), (5, 2)])
def test_a_remembered_request_with_the_same_digest_is_a_duplicate(first: int, seq: int) -> None:
    assert decide(state(), first=first) == ProducerRequest(first, 5, seq, DIGEST)


def test_every_remembered_request_is_answered_as_a_duplicate() -> None:
    requests = tuple((5 * i, 5, 1 + i) for i in range(PRODUCER_REQUESTS_KEPT))
    full = state(last=5 * PRODUCER_REQUESTS_KEPT - 1, requests=requests)

    for first, count, seq in requests:
        assert decide(full, first=first, count=count) == ProducerRequest(first, count, seq, DIGEST)


def test_a_remembered_sequence_with_other_records_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="sequence 5 was used for different records"):
        decide(state(), first=5, digest=b"x" * 8)


def test_a_remembered_sequence_with_another_count_names_both_counts() -> None:
    with pytest.raises(InvalidRequestError, match="with 3 records; the original request had 5"):
        decide(state(), first=5, count=3)


def test_the_next_sequence_is_new() -> None:
    assert decide(state(), first=10) is None


def test_an_older_sequence_than_the_remembered_requests_is_refused() -> None:
    older = state(requests=((5, 5, 2),))
    with pytest.raises(InvalidRequestError, match="duplicate older than the last 5 requests"):
        decide(older, first=0)
    with pytest.raises(InvalidRequestError, match="duplicate older"):
        decide(older, first=7)


def test_a_sequence_past_the_next_is_out_of_order() -> None:
    with pytest.raises(OutOfOrderSequenceError) as caught:
        decide(state(), first=11)
    assert (caught.value.sequence, caught.value.expected) == (11, 10)


def stamp(epoch: int = 1, first: int = 10, count: int = 5) -> ProducerStamp:
    return ProducerStamp(PRODUCER, epoch, first, count, DIGEST)


@pytest.mark.parametrize(
    ("current", "request_stamp"),
    [
        (None, stamp(first=0)),
        (EXPIRED, stamp(first=0)),
        (state(epoch=0), stamp(first=0)),
        (state(), stamp(first=10)),
    ],
    ids=["first", "after-expiry", "new-epoch", "next"],
)
def test_a_continuing_stamp_keeps_sequence(
    current: TopicProducerState | None, request_stamp: ProducerStamp
) -> None:
    check_sequence(current, request_stamp, NOW)


@pytest.mark.parametrize(
    ("current", "request_stamp"),
    [
        (None, stamp(first=10)),
        (EXPIRED, stamp(first=10)),
        (state(), stamp(first=0)),
        (state(), stamp(first=11)),
        (state(), stamp(first=9)),
        (state(epoch=2), stamp(first=10)),
        (state(epoch=0), stamp(first=10)),
    ],
    ids=["absent", "expired", "restart-same-epoch", "gap", "overlap", "fenced", "newer-epoch"],
)
def test_a_stamp_that_does_not_continue_violates_sequence(
    current: TopicProducerState | None, request_stamp: ProducerStamp
) -> None:
    with pytest.raises(InvariantViolation) as caught:
        check_sequence(current, request_stamp, NOW)
    assert caught.value.invariant == "SEQUENCE"


def test_check_sequence_without_a_time_takes_the_state_as_live() -> None:
    check_sequence(EXPIRED, stamp(first=10))


def test_producer_update_of_a_first_request() -> None:
    update = producer_update(None, stamp(epoch=3, first=0, count=4), 7, NOW)
    assert not update.continues and update.now_ms == NOW
    assert update.state == TopicProducerState(
        producer_id=PRODUCER,
        epoch=3,
        last_sequence=3,
        requests=(ProducerRequest(0, 4, 7, DIGEST),),
        expires_ms=NOW + PRODUCER_EXPIRATION_MS,
    )


def test_producer_update_keeps_the_last_requests_newest_last() -> None:
    current: TopicProducerState | None = None
    for index in range(PRODUCER_REQUESTS_KEPT + 2):
        update = producer_update(current, stamp(first=index * 2, count=2), index + 1, NOW)
        current = update.state
        assert update.continues == (index > 0)
    assert current is not None
    assert [r.seq for r in current.requests] == [3, 4, 5, 6, 7]
    assert current.last_sequence == 13


def test_producer_update_of_a_new_epoch_forgets_the_old_requests() -> None:
    update = producer_update(state(), stamp(epoch=2, first=0, count=1), 9, NOW)
    assert update.state.requests == (ProducerRequest(0, 1, 9, DIGEST),)


def test_producer_update_refuses_a_stamp_that_does_not_continue() -> None:
    with pytest.raises(InvariantViolation, match="SEQUENCE"):
        producer_update(state(), stamp(first=12), 9, NOW)


# --- digest -------------------------------------------------------------------------------------


def test_the_digest_is_eight_bytes_and_stable() -> None:
    records = [Record(b"v", b"k", (("h", b"x"),), 2, 1_000)]
    assert len(request_digest(records)) == 8
    assert request_digest(records) == request_digest(list(records))


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ([Record(b"ab", b"c")], [Record(b"b", b"ac")]),
        ([Record(b"")], [Record(None)]),
        ([Record(b"v", None)], [Record(b"v", b"")]),
        ([Record(b"v", partition=0)], [Record(b"v")]),
        ([Record(b"v", timestamp_ms=0)], [Record(b"v")]),
        ([Record(b"v", headers=(("a", b"b"),))], [Record(b"v", headers=(("ab", b""),))]),
        ([Record(b"v", headers=(("a", None),))], [Record(b"v", headers=(("a", b""),))]),
        ([Record(b"v", headers=(("a", b"b"),))], [Record(b"v", headers=(("a", b"c"),))]),
        ([Record(b"a"), Record(b"b")], [Record(b"b"), Record(b"a")]),
        ([Record(b"a")], [Record(b"a"), Record(b"a")]),
        ([Record(b"v", headers=(("a", b""),) * 2)], [Record(b"v", headers=(("a", b""),))]),
    ],
    ids=[
        "key-value-boundary",
        "empty-vs-null-value",
        "null-vs-empty-key",
        "explicit-partition",
        "timestamp",
        "header-name-boundary",
        "null-header-value",
        "header-value",
        "order",
        "count",
        "header-count",
    ],
)
def test_different_requests_have_different_digests(left: list[Record], right: list[Record]) -> None:
    assert request_digest(left) != request_digest(right)

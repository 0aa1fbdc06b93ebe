"""The consumer's fetches: one request per poll for all its partitions, idle backoff up to
`IDLE_BACKOFF_MAX_S`, heartbeats carried in the fetch, and cursors sent back.

Time is a fake clock (`Clock`) given to the consumer as ``_fetch_clock`` (idle pauses) and,
in a group, as ``_clock`` too; `ParkedClock` keeps the background heartbeat thread parked,
so every heartbeat a test sees comes from a poll. Polls use ``timeout_ms=0``: nothing
sleeps.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from lakelog.client import Client, Consumer
from lakelog.client.fetcher import IDLE_BACKOFF_MAX_S
from lakelog.client.transport import Transport
from lakelog.contract.operations import Append, FetchMany, JoinGroup, Operation
from lakelog.errors import (
    InvalidRequestError,
    LakelogError,
    ThrottledError,
    TopicNotFoundError,
)
from lakelog.types import FetchManyResult, FetchResult, Record, TopicPartition
from tests.integration.group_support import Clock
from tests.integration.sdk.conftest import Wire

R = TypeVar("R")
MakeClient = Callable[[], tuple[Client, Wire]]
SESSION_MS = 1500
HEARTBEAT_MS = SESSION_MS // 3
WAIT_MS = 500
"""``fetch_max_wait_ms`` of the consumers: the first idle pause."""


class Parked:
    """``clock``'s time, with waits that last until their event is set: the heartbeat
    thread of a consumer on it never runs a round, so heartbeats come only from polls."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def monotonic(self) -> float:
        return self.clock.monotonic()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        del seconds
        event.wait()
        return True


class Spy:
    """A transport in front of another that keeps every operation sent, and may change the
    results of fetches (``edit``) or refuse the next fetch (``refuse_next``)."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.sent: list[Operation[Any]] = []
        self.edit: Callable[[FetchResult], FetchResult] | None = None
        self.refuse_next: InvalidRequestError | None = None
        self.member_error: LakelogError | None = None

    def call(self, op: Operation[R]) -> R:
        self.sent.append(op)
        if isinstance(op, FetchMany) and self.refuse_next is not None:
            error, self.refuse_next = self.refuse_next, None
            raise error
        result = self.inner.call(op)
        if isinstance(result, FetchManyResult) and self.member_error is not None:
            error, self.member_error = self.member_error, None
            result = dataclasses.replace(result, member=error)  # type: ignore[assignment]
        if isinstance(result, FetchManyResult) and self.edit is not None:
            edit = self.edit
            parts = [p if isinstance(p, Exception) else edit(p) for p in result.partitions]
            return dataclasses.replace(result, partitions=parts)  # type: ignore[return-value]
        return result

    def fetches(self) -> list[FetchMany]:
        return [op for op in self.sent if isinstance(op, FetchMany)]

    def count(self, kind: type[Operation[Any]]) -> int:
        return sum(isinstance(op, kind) for op in self.sent)


def _spied(make_client: MakeClient) -> tuple[Client, Spy]:
    client, wire = make_client()
    spy = Spy(wire.inner)
    wire.inner = spy
    return client, spy


def _produce(client: Client, topic: str, partitions: int, per_partition: int = 1) -> None:
    for partition in range(partitions):
        records = [Record(value=b"%d-%d" % (partition, i)) for i in range(per_partition)]
        client.transport.call(_append(topic, partition, records))


def _append(topic: str, partition: int, records: list[Record]) -> Append:
    return Append(topic, [dataclasses.replace(r, partition=partition) for r in records])


# One request per poll -------------------------------------------------------------------------


def test_a_consumer_of_many_partitions_makes_one_request_per_poll(
    make_client: MakeClient,
) -> None:
    client, spy = _spied(make_client)
    client.create_topic("wide", partitions=12)
    _produce(client, "wide", 12, per_partition=3)
    clock = Clock()
    consumer = client.consumer("wide", auto_offset_reset="earliest", _fetch_clock=clock)
    before = len(spy.sent)

    records = consumer.poll(timeout_ms=0)

    assert len(spy.sent) - before == 1
    (fetch,) = spy.fetches()
    assert sorted((p.topic, p.partition) for p in fetch.positions) == [
        ("wide", p) for p in range(12)
    ]
    assert {tp.partition for tp in records} == set(range(12))
    assert sum(len(batch) for batch in records.values()) == 36
    # The next poll (after the pause of a fetch that read to the end) asks every
    # partition again from where each stopped, in one request
    clock.advance(500)
    consumer.poll(timeout_ms=0)
    assert len(spy.fetches()) == 2
    assert {p.offset for p in spy.fetches()[1].positions} == {3}
    consumer.close()


# Idle backoff --------------------------------------------------------------------------------


def test_idle_backoff_doubles_to_the_ceiling_and_a_record_resets_it(
    make_client: MakeClient,
) -> None:
    client, spy = _spied(make_client)
    client.create_topic("quiet", partitions=3)
    clock = Clock()
    consumer = client.consumer(
        "quiet", auto_offset_reset="earliest", fetch_max_wait_ms=WAIT_MS, _fetch_clock=clock
    )
    fetcher = consumer._fetcher

    # Each poll that finds nothing doubles the pause, up to the ceiling
    pauses = []
    for _ in range(7):
        assert consumer.poll(timeout_ms=0) == {}
        pauses.append(fetcher.idle_wait)
        # Within the pause, a poll sends nothing
        sent = len(spy.fetches())
        clock.advance(round(fetcher.idle_wait * 1000) - 1)
        assert consumer.poll(timeout_ms=0) == {}
        assert len(spy.fetches()) == sent
        clock.advance(1)
    assert IDLE_BACKOFF_MAX_S == 5.0  # the documented ceiling
    assert pauses == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]

    # A record resets the doubling; having read to the end of every partition, the
    # consumer waits fetch_max_wait_ms before it fetches again
    _produce(client, "quiet", 1)
    assert [r.value for r in consumer.poll(timeout_ms=0)[TopicPartition("quiet", 0)]] == [b"0-0"]
    assert fetcher.idle_wait == 0.0
    sent = len(spy.fetches())
    clock.advance(WAIT_MS - 1)
    assert consumer.poll(timeout_ms=0) == {}
    assert len(spy.fetches()) == sent
    clock.advance(1)
    assert consumer.poll(timeout_ms=0) == {}
    assert len(spy.fetches()) == sent + 1
    assert fetcher.idle_wait == WAIT_MS / 1000
    consumer.close()


def test_a_fetch_that_stops_short_of_the_end_is_followed_by_the_next_at_once(
    make_client: MakeClient,
) -> None:
    # Given a backlog larger than one fetch's budget
    client, spy = _spied(make_client)
    client.create_topic("backlog", partitions=1)
    _produce(client, "backlog", 1, per_partition=6)
    clock = Clock()
    consumer = client.consumer(
        "backlog",
        auto_offset_reset="earliest",
        max_poll_records=2,
        fetch_max_wait_ms=WAIT_MS,
        _fetch_clock=clock,
    )

    # When it polls without any time passing, each fetch that stopped short of the end is
    # followed at once by the next; the one that reaches the end starts a pause
    values = []
    for _ in range(3):
        values += [r.value for records in consumer.poll(timeout_ms=0).values() for r in records]
    assert len(values) == 6
    fetches = len(spy.fetches())
    assert consumer.poll(timeout_ms=0) == {}
    assert len(spy.fetches()) == fetches
    consumer.close()


def test_a_seek_ends_the_idle_pause(make_client: MakeClient) -> None:
    client, spy = _spied(make_client)
    client.create_topic("sought", partitions=1)
    _produce(client, "sought", 1, per_partition=2)
    consumer = client.consumer("sought", auto_offset_reset="latest", _fetch_clock=Clock())
    assert consumer.poll(timeout_ms=0) == {}  # at the end: idle now
    assert consumer.poll(timeout_ms=0) == {}
    assert len(spy.fetches()) == 1

    consumer.seek(TopicPartition("sought", 0), 0)

    assert len(consumer.poll(timeout_ms=0)[TopicPartition("sought", 0)]) == 2
    assert len(spy.fetches()) == 2
    consumer.close()


# Heartbeats ride on fetches ------------------------------------------------------------------


def _parked_member(make_timed_client: MakeClient, clock: Clock) -> tuple[Client, Spy, Consumer]:
    client, wire = make_timed_client()
    spy = Spy(wire.inner)
    wire.inner = spy
    client.create_topic("beats", partitions=3)
    parked = Parked(clock)
    consumer = client.consumer(
        "beats",
        group_id="g",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=SESSION_MS,
        _clock=parked,
        _fetch_clock=parked,
    )
    return client, spy, consumer


def test_heartbeats_ride_on_fetches_and_keep_the_session(
    make_timed_client: MakeClient, clock: Clock
) -> None:
    client, spy, consumer = _parked_member(make_timed_client, clock)
    consumer.poll(timeout_ms=0)  # joins: the only heartbeat of its own
    assert spy.count(JoinGroup) == 1
    assert len(consumer.assignment()) == 3

    for _ in range(4 * SESSION_MS // HEARTBEAT_MS):  # four sessions long
        clock.advance(HEARTBEAT_MS)
        sent = len(spy.sent)
        consumer.poll(timeout_ms=0)
        # One request: the fetch, carrying the heartbeat
        assert len(spy.sent) == sent + 1
        assert spy.fetches()[-1].member is not None

    # No heartbeat went on its own, and the member kept its session and its leases
    assert spy.count(JoinGroup) == 1
    member = spy.fetches()[-1].member
    assert member is not None
    assert (member.group, tuple(member.topics), member.session_timeout_ms) == (
        "g",
        ("beats",),
        SESSION_MS,
    )
    described = client.describe_group("g")
    assert [m.expires_ms for m in described.members] == [clock() + SESSION_MS]
    assert {p.owner for p in described.partitions} == {member.member_id}
    assert len(consumer.assignment()) == 3
    consumer.close()


def test_a_carried_heartbeat_that_fails_is_carried_again_or_sent_on_its_own(
    make_timed_client: MakeClient, clock: Clock
) -> None:
    client, spy, consumer = _parked_member(make_timed_client, clock)
    _produce(client, "beats", 3)
    consumer.poll(timeout_ms=0)  # joins, then fetches
    consumer.poll(timeout_ms=0)

    # Throttled: the records still come, and the next fetch carries the heartbeat again
    clock.advance(HEARTBEAT_MS)
    spy.member_error = ThrottledError("slow down")
    consumer.poll(timeout_ms=0)
    clock.advance(HEARTBEAT_MS // 2)  # a retry is due before a whole interval
    consumer.poll(timeout_ms=0)
    assert spy.count(JoinGroup) == 1
    assert [f.member is not None for f in spy.fetches()[-2:]] == [True, True]

    # Any other error: the next heartbeat goes on its own, at once, as it did alone
    clock.advance(HEARTBEAT_MS)
    _produce(client, "beats", 1)
    spy.member_error = TopicNotFoundError("beats")
    records = consumer.poll(timeout_ms=0)
    assert [r.value for r in records[TopicPartition("beats", 0)]] == [b"0-0"]
    consumer.poll(timeout_ms=0)
    assert spy.count(JoinGroup) == 2
    assert len(consumer.assignment()) == 3
    consumer.close()


def test_records_of_a_partition_the_carried_heartbeat_gave_up_are_dropped(
    make_timed_client: MakeClient, clock: Clock
) -> None:
    client, spy, consumer = _parked_member(make_timed_client, clock)
    consumer.poll(timeout_ms=0)  # joins and takes the three leases
    assert len(consumer.assignment()) == 3
    client.transport.call(JoinGroup("g", ["beats"], "other-1", SESSION_MS))
    _produce(client, "beats", 3)

    # The fetch that carries the heartbeat reads all three; the heartbeat gives up one
    clock.advance(HEARTBEAT_MS)
    records = consumer.poll(timeout_ms=0)

    assert {p.partition for p in spy.fetches()[-1].positions} == {0, 1, 2}
    assert consumer.assignment() == {TopicPartition("beats", 0), TopicPartition("beats", 1)}
    assert set(records) == consumer.assignment()
    consumer.close()


# Cursors -------------------------------------------------------------------------------------


def test_the_consumer_sends_back_each_partitions_cursor_and_drops_it_after_a_seek(
    make_client: MakeClient,
) -> None:
    client, spy = _spied(make_client)
    client.create_topic("cursors", partitions=2)
    _produce(client, "cursors", 2, per_partition=2)
    cursors: dict[tuple[int, int], str | None] = {}

    def remember(result: FetchResult) -> FetchResult:
        cursors[result.partition, result.next_offset] = result.cursor
        return result

    spy.edit = remember
    clock = Clock()
    consumer = client.consumer("cursors", auto_offset_reset="earliest", _fetch_clock=clock)

    consumer.poll(timeout_ms=0)
    _produce(client, "cursors", 2)
    clock.advance(500)
    consumer.poll(timeout_ms=0)
    consumer.seek(TopicPartition("cursors", 1), 0)
    consumer.poll(timeout_ms=0)

    first, second, third = ({p.partition: p.cursor for p in f.positions} for f in spy.fetches())
    assert first == {0: None, 1: None}
    assert second == {0: cursors[0, 2], 1: cursors[1, 2]}
    assert third == {0: cursors[0, 3], 1: None}
    assert all(isinstance(cursor, str) for cursor in third.values() if cursor is not None)
    consumer.close()


def test_a_refused_cursor_is_dropped_and_the_fetch_goes_by_offset(make_client: MakeClient) -> None:
    client, spy = _spied(make_client)
    client.create_topic("refused", partitions=2)
    _produce(client, "refused", 2)
    spy.edit = lambda r: dataclasses.replace(r, cursor="stale")
    clock = Clock()
    consumer = client.consumer("refused", auto_offset_reset="earliest", _fetch_clock=clock)
    consumer.poll(timeout_ms=0)
    _produce(client, "refused", 2)
    clock.advance(500)
    spy.refuse_next = InvalidRequestError("cursor is not from this topic; fetch by offset")

    records = consumer.poll(timeout_ms=0)

    refused, by_offset = spy.fetches()[-2:]
    assert {p.cursor for p in refused.positions} == {"stale"}
    assert {(p.offset, p.cursor) for p in by_offset.positions} == {(1, None)}
    assert sorted(r.value for batch in records.values() for r in batch) == [b"0-0", b"1-0"]
    consumer.close()


def test_a_deleted_topic_raises_from_poll_and_moves_no_position(make_client: MakeClient) -> None:
    client, _ = _spied(make_client)
    client.create_topic("kept", partitions=1)
    client.create_topic("gone", partitions=1)
    _produce(client, "kept", 1)
    consumer = client.consumer("kept", "gone", auto_offset_reset="earliest", _fetch_clock=Clock())
    admin, _ = make_client()
    admin.delete_topic("gone")

    with pytest.raises(TopicNotFoundError):
        consumer.poll(timeout_ms=0)

    assert consumer.position(TopicPartition("kept", 0)) == 0
    consumer.close()


def test_one_fetch_serves_several_polls_and_positions_move_only_past_what_was_handed_over(
    make_client: MakeClient,
) -> None:
    # Given 10 records and a consumer that hands over 3 per poll
    client, spy = _spied(make_client)
    client.create_topic("buffered", partitions=1)
    _produce(client, "buffered", 1, per_partition=10)
    tp = TopicPartition("buffered", 0)
    consumer = client.consumer(
        "buffered", auto_offset_reset="earliest", max_poll_records=3, _fetch_clock=Clock()
    )

    # When it polls four times
    handed = []
    positions = []
    for _ in range(4):
        handed.append([r.offset for r in consumer.poll(timeout_ms=0).get(tp, [])])
        positions.append(consumer.position(tp))

    # Then one fetch (bounded by bytes, not by max_poll_records) served all four polls,
    # and the position only ever moved past the records handed over
    assert handed == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert positions == [3, 6, 9, 10]
    assert len(spy.fetches()) == 1
    # A seek drops what the buffer still held for the partition
    consumer.seek(tp, 1)
    assert [r.offset for r in consumer.poll(timeout_ms=0)[tp]] == [1, 2, 3]
    consumer.close()

"""Consumer groups through the SDK: balance, crash takeover, fencing, exactly-once effects."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from lakelog import TopicPartition
from lakelog.client import Client, CommitFailedError, Consumer, ConsumerRecord
from tests.integration.sdk.conftest import Wire

SESSION_MS = 1500
"""Short sessions keep takeover tests quick; heartbeats go every 500 ms."""

MakeClient = Callable[[], tuple[Client, Wire]]


def wait_until(condition: Callable[[], bool], timeout: float, step: Callable[[], None]) -> None:
    """Run ``step`` until ``condition`` holds, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        step()


def member(
    make_client: MakeClient, topic: str, group: str, **options: object
) -> tuple[Consumer, Wire]:
    client, wire = make_client()
    settings: dict[str, object] = {
        "enable_auto_commit": False,
        "session_timeout_ms": SESSION_MS,
        **options,
    }
    consumer = client.consumer(topic, group_id=group, auto_offset_reset="earliest", **settings)
    return consumer, wire


def poll_all(consumers: list[Consumer], sink: list[ConsumerRecord] | None = None) -> None:
    for consumer in consumers:
        records = _flat(consumer.poll(timeout_ms=0))
        if sink is not None:
            sink.extend(records)
    time.sleep(0.05)


def test_three_members_get_two_of_six_partitions_each(make_client: MakeClient) -> None:
    client, _ = make_client()
    client.create_topic("six", partitions=6)
    members = [member(make_client, "six", "g")[0] for _ in range(3)]
    wait_until(
        lambda: [len(m.assignment()) for m in members] == [2, 2, 2], 15, lambda: poll_all(members)
    )
    owned = [tp for m in members for tp in m.assignment()]
    assert sorted(owned) == [TopicPartition("six", p) for p in range(6)]
    described = client.describe_group("g")
    assert len(described.members) == 3
    members_ids = {m._coordinator.member_id for m in members if m._coordinator}
    assert {p.owner for p in described.partitions} == members_ids
    for m in members:
        m.close()
    assert client.describe_group("g").members == ()


def test_a_silent_member_loses_its_partitions_and_cannot_commit(make_client: MakeClient) -> None:
    client, _ = make_client()
    client.create_topic("crash", partitions=6)
    members = [member(make_client, "crash", "g") for _ in range(3)]
    consumers = [c for c, _ in members]
    wait_until(
        lambda: [len(c.assignment()) for c in consumers] == [2, 2, 2],
        15,
        lambda: poll_all(consumers),
    )
    with client.producer() as producer:
        for i in range(60):
            producer.send("crash", value=b"%d" % i, partition=i % 6)
    victim, victim_wire = members[0]
    # The victim reads and commits part of its partitions, then goes silent.
    got = victim.poll(timeout_ms=5000)
    first = sorted(got)[0]
    victim.commit({first: got[first][4].offset + 1})  # committed: offsets 0..4
    lost = victim.assignment()
    victim_wire.cut = True
    survivors = consumers[1:]
    started = time.monotonic()
    taken_over: list[ConsumerRecord] = []
    wait_until(
        lambda: set().union(*(c.assignment() for c in survivors)) >= lost,
        SESSION_MS / 1000 + 5,
        lambda: poll_all(survivors, taken_over),
    )
    assert time.monotonic() - started < SESSION_MS / 1000 + 3
    assert sorted(len(c.assignment()) for c in survivors) == [3, 3]
    # The new owner starts after what the victim committed: nothing committed comes again.
    wait_until(
        lambda: sum(r.partition == first.partition for r in taken_over) >= 5,
        10,
        lambda: poll_all(survivors, taken_over),
    )
    assert [r.offset for r in taken_over if r.partition == first.partition] == [5, 6, 7, 8, 9]
    # The victim comes back: its commit for the lease it lost is fenced and changes nothing.
    victim_wire.cut = False
    with pytest.raises(CommitFailedError) as refused:
        victim.commit({first: 50})
    assert refused.value.code == "fenced" and refused.value.group == "g"
    assert (first.topic, first.partition) in refused.value.partitions
    committed = {
        (p.topic, p.partition): p.committed_offset for p in client.describe_group("g").partitions
    }
    assert committed[first] == 5
    for c in consumers:
        c.close()


class Rebalances:
    """A listener that records what it was told."""

    def __init__(self) -> None:
        self.assigned: list[set[TopicPartition]] = []
        self.revoked: list[set[TopicPartition]] = []

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned.append(assigned)

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.revoked.append(revoked)


def test_join_and_leave_rebalance_and_call_the_listener(make_client: MakeClient) -> None:
    client, _ = make_client()
    client.create_topic("moves", partitions=4)
    first_listener = Rebalances()
    first, _ = member(make_client, "moves", "g", listener=first_listener)
    wait_until(lambda: len(first.assignment()) == 4, 10, lambda: poll_all([first]))
    assert first_listener.assigned == [{TopicPartition("moves", p) for p in range(4)}]
    second, _ = member(make_client, "moves", "g")
    both = [first, second]
    wait_until(lambda: [len(c.assignment()) for c in both] == [2, 2], 15, lambda: poll_all(both))
    assert len(first_listener.revoked) >= 1
    assert set().union(*first_listener.revoked) == second.assignment()
    second.close()  # leaving releases at once: the first takes them at its next heartbeat
    started = time.monotonic()
    wait_until(lambda: len(first.assignment()) == 4, 10, lambda: poll_all([first]))
    assert time.monotonic() - started < 3 * SESSION_MS / 1000
    first.close()


def test_auto_commit_on_close_and_resume(make_client: MakeClient) -> None:
    client, _ = make_client()
    client.create_topic("auto", partitions=1)
    with client.producer() as producer:
        for i in range(10):
            producer.send("auto", value=b"%d" % i)
    first, _ = member(make_client, "auto", "g2", enable_auto_commit=True)
    records = []
    wait_until(lambda: len(records) >= 10, 10, lambda: records.extend(_flat(first.poll(100))))
    first.close()
    assert client.describe_group("g2").partitions[0].committed_offset == 10
    with client.producer() as producer:
        producer.send("auto", value=b"10")
    second, _ = member(make_client, "auto", "g2", enable_auto_commit=True)
    later: list[ConsumerRecord] = []
    wait_until(lambda: len(later) >= 1, 10, lambda: later.extend(_flat(second.poll(100))))
    assert [r.offset for r in later] == [10]
    assert second.committed(TopicPartition("auto", 0)) == 10
    second.close()
    assert client.describe_group("g2").partitions[0].lag == 0


def _flat(polled: dict[TopicPartition, list[ConsumerRecord]]) -> list[ConsumerRecord]:
    return [r for records in polled.values() for r in records]


def test_ten_thousand_records_are_processed_exactly_once_across_joins_and_leaves(
    make_client: MakeClient,
) -> None:
    """4 producers write 10,000 records; a group commits after processing while one
    member joins and one leaves midway. A batch counts as processed only if its commit
    succeeds (a fenced commit means another member will process those records)."""
    client, _ = make_client()
    client.create_topic("ledger", partitions=6)
    total = 10_000
    processed: Counter[bytes] = Counter()
    by_member: Counter[int] = Counter()
    delivered: Counter[bytes] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def produce(worker: int) -> None:
        with make_client()[0].producer(linger_ms=5) as producer:
            for i in range(total // 4):
                producer.send("ledger", key=b"%d" % (i % 50), value=b"%d-%d" % (worker, i))
                if i % 50 == 0:
                    time.sleep(0.1)  # about 5 s of production: the joins happen midway

    def consume(consumer: Consumer, until: Callable[[], bool]) -> None:
        try:
            while not until():
                batch = _flat(consumer.poll(timeout_ms=200, max_records=300))
                with lock:
                    delivered.update(r.value for r in batch)
                if not batch:
                    continue
                try:
                    consumer.commit()
                except CommitFailedError:
                    continue
                with lock:
                    processed.update(r.value for r in batch)
                    by_member[id(consumer)] += len(batch)
        finally:
            consumer.close()

    def done() -> bool:
        with lock:
            return stop.is_set() or sum(processed.values()) >= total

    producers = [threading.Thread(target=produce, args=(w,)) for w in range(4)]
    for thread in producers:
        thread.start()
    session = {"session_timeout_ms": 6000}  # rebalances by join and leave, not by lapses
    stayers = [member(make_client, "ledger", "exact", **session)[0] for _ in range(2)]
    leaver = member(make_client, "ledger", "exact", **session)[0]
    leaving = threading.Event()
    threads = [threading.Thread(target=consume, args=(c, done)) for c in stayers]
    threads.append(
        threading.Thread(target=consume, args=(leaver, lambda: leaving.is_set() or done()))
    )
    for thread in threads:
        thread.start()
    wait_until(lambda: sum(processed.values()) >= 2500, 120, lambda: time.sleep(0.05))
    joiner = member(make_client, "ledger", "exact", **session)[0]
    threads.append(threading.Thread(target=consume, args=(joiner, done)))
    threads[-1].start()
    wait_until(lambda: sum(processed.values()) >= 5000, 120, lambda: time.sleep(0.05))
    leaving.set()
    for thread in producers:
        thread.join()
    try:
        wait_until(lambda: sum(processed.values()) >= total, 120, lambda: time.sleep(0.1))
    except AssertionError:
        print("processed", sum(processed.values()), "delivered", sum(delivered.values()))
        print(client.describe_group("exact"))
        print(client.describe_topic("ledger"))
        raise
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    expected = {b"%d-%d" % (w, i) for w in range(4) for i in range(total // 4)}
    assert set(processed) == expected
    assert max(processed.values()) == 1, [v for v, n in processed.items() if n > 1][:5]
    assert by_member[id(joiner)] > 0 and by_member[id(leaver)] > 0, by_member
    duplicates = sum(delivered.values()) - total
    assert duplicates <= total // 10, duplicates  # redelivery only around the rebalances


def test_a_group_member_rides_out_an_unavailable_service(make_client: MakeClient) -> None:
    client, _ = make_client()
    client.create_topic("outage", partitions=2)
    consumer, wire = member(make_client, "outage", "g3")
    wait_until(lambda: len(consumer.assignment()) == 2, 10, lambda: poll_all([consumer]))
    wire.cut = True
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # heartbeats and fetches fail: polls return nothing
        assert consumer.poll(timeout_ms=100) == {}
    wire.cut = False
    with client.producer() as producer:
        producer.send("outage", value=b"back", partition=0)
    got: list[ConsumerRecord] = []
    wait_until(lambda: bool(got), 10, lambda: got.extend(_flat(consumer.poll(100))))
    assert [r.value for r in got] == [b"back"]
    consumer.close()

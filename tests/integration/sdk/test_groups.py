"""Consumer groups through the SDK: balance, crash takeover, fencing, exactly-once effects.

Engines and consumers share a fake clock (`make_timed_client`, ``_clock=clock``): sessions
lapse and heartbeats fall due only when a test moves time with ``tick``, which then waits
until every live member has heartbeated at the new time. No member can miss its session
because the machine was slow, and no assertion depends on how long anything took.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest

from lakelog import TopicPartition
from lakelog.client import Client, CommitFailedError, Consumer, ConsumerRecord
from tests.integration.group_support import Clock
from tests.integration.sdk.conftest import BACKSTOP_S, Wire, tick, wait_until

SESSION_MS = 1500
HEARTBEAT_MS = SESSION_MS // 3
"""The heartbeat interval the service asks for: a third of the session."""
MakeClient = Callable[[], tuple[Client, Wire]]


def member(
    make_client: MakeClient, clock: Clock, topic: str, group: str, **options: object
) -> tuple[Consumer, Wire]:
    client, wire = make_client()
    settings: dict[str, object] = {
        "enable_auto_commit": False,
        "session_timeout_ms": SESSION_MS,
        "_clock": clock,
        **options,
    }
    consumer = client.consumer(topic, group_id=group, auto_offset_reset="earliest", **settings)
    return consumer, wire


def test_three_members_get_two_of_six_partitions_each(
    make_timed_client: MakeClient, clock: Clock
) -> None:
    client, _ = make_timed_client()
    client.create_topic("six", partitions=6)
    members = [member(make_timed_client, clock, "six", "g")[0] for _ in range(3)]
    wait_until(
        lambda: [len(m.assignment()) for m in members] == [2, 2, 2],
        lambda: tick(clock, HEARTBEAT_MS, members),
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


def test_a_silent_member_loses_its_partitions_and_cannot_commit(
    make_timed_client: MakeClient, clock: Clock
) -> None:
    client, _ = make_timed_client()
    client.create_topic("crash", partitions=6)
    members = [member(make_timed_client, clock, "crash", "g") for _ in range(3)]
    consumers = [c for c, _ in members]
    wait_until(
        lambda: [len(c.assignment()) for c in consumers] == [2, 2, 2],
        lambda: tick(clock, HEARTBEAT_MS, consumers),
    )
    with client.producer() as producer:
        for i in range(60):
            producer.send("crash", value=b"%d" % i, partition=i % 6)
    victim, victim_wire = members[0]
    # The victim reads and commits part of its partitions, then goes silent.
    got: dict[TopicPartition, list[ConsumerRecord]] = {}
    wait_until(
        lambda: any(len(records) >= 5 for records in got.values()),
        lambda: got.update(victim.poll(timeout_ms=100)),
    )
    first = min(tp for tp, records in got.items() if len(records) >= 5)
    victim.commit({first: got[first][4].offset + 1})  # committed: offsets 0..4
    lost = victim.assignment()
    victim_wire.cut = True
    silent_since = clock()
    survivors = consumers[1:]
    taken_over: list[ConsumerRecord] = []
    # Within its session, the silent member keeps its leases.
    while clock() + HEARTBEAT_MS < silent_since + SESSION_MS:
        tick(clock, HEARTBEAT_MS, survivors, taken_over)
        assert not set().union(*(c.assignment() for c in survivors)) & lost
    # Once the session lapsed, the survivors take them over at their next heartbeats.
    wait_until(
        lambda: set().union(*(c.assignment() for c in survivors)) >= lost,
        lambda: tick(clock, HEARTBEAT_MS, survivors, taken_over),
    )
    assert clock() - silent_since <= SESSION_MS + 2 * HEARTBEAT_MS
    assert sorted(len(c.assignment()) for c in survivors) == [3, 3]
    # The new owner starts after what the victim committed: nothing committed comes again.
    wait_until(
        lambda: sum(r.partition == first.partition for r in taken_over) >= 5,
        lambda: taken_over.extend(r for c in survivors for r in _flat(c.poll(timeout_ms=100))),
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


def test_join_and_leave_rebalance_and_call_the_listener(
    make_timed_client: MakeClient, clock: Clock
) -> None:
    client, _ = make_timed_client()
    client.create_topic("moves", partitions=4)
    first_listener = Rebalances()
    first, _ = member(make_timed_client, clock, "moves", "g", listener=first_listener)
    wait_until(lambda: len(first.assignment()) == 4, lambda: tick(clock, HEARTBEAT_MS, [first]))
    assert first_listener.assigned == [{TopicPartition("moves", p) for p in range(4)}]
    second, _ = member(make_timed_client, clock, "moves", "g")
    both = [first, second]
    wait_until(
        lambda: [len(c.assignment()) for c in both] == [2, 2],
        lambda: tick(clock, HEARTBEAT_MS, both),
    )
    assert len(first_listener.revoked) >= 1
    assert set().union(*first_listener.revoked) == second.assignment()
    second.close()  # leaving releases at once: the first takes them at its next heartbeat
    left_at = clock()
    wait_until(lambda: len(first.assignment()) == 4, lambda: tick(clock, HEARTBEAT_MS, [first]))
    assert clock() - left_at == HEARTBEAT_MS  # not a session later
    first.close()


def test_auto_commit_on_close_and_resume(make_timed_client: MakeClient, clock: Clock) -> None:
    client, _ = make_timed_client()
    client.create_topic("auto", partitions=1)
    with client.producer() as producer:
        for i in range(10):
            producer.send("auto", value=b"%d" % i)
    first, _ = member(make_timed_client, clock, "auto", "g2", enable_auto_commit=True)
    records: list[ConsumerRecord] = []
    wait_until(lambda: len(records) >= 10, lambda: records.extend(_flat(first.poll(100))))
    first.close()
    assert client.describe_group("g2").partitions[0].committed_offset == 10
    with client.producer() as producer:
        producer.send("auto", value=b"10")
    second, _ = member(make_timed_client, clock, "auto", "g2", enable_auto_commit=True)
    later: list[ConsumerRecord] = []
    wait_until(lambda: len(later) >= 1, lambda: later.extend(_flat(second.poll(100))))
    assert [r.offset for r in later] == [10]
    assert second.committed(TopicPartition("auto", 0)) == 10
    second.close()
    assert client.describe_group("g2").partitions[0].lag == 0


def _flat(polled: dict[TopicPartition, list[ConsumerRecord]]) -> list[ConsumerRecord]:
    return [r for records in polled.values() for r in records]


def test_ten_thousand_records_are_processed_exactly_once_across_joins_and_leaves(
    make_timed_client: MakeClient, clock: Clock
) -> None:
    """4 producers write 10,000 records; a group commits after processing while one
    member joins and one leaves midway. A batch counts as processed only if its commit
    succeeds (a fenced commit means another member will process those records).

    The steps are gated, not timed: production starts once three members share the
    partitions and pauses at half until the joiner holds a partition; the leaver leaves
    only after it committed a batch and the joiner did too. Time moves only in `tick`, so
    leases move by joins and leaves, never because a session lapsed."""
    client, _ = make_timed_client()
    client.create_topic("ledger", partitions=6)
    total = 10_000
    processed: Counter[bytes] = Counter()
    by_member: Counter[int] = Counter()
    delivered: Counter[bytes] = Counter()
    committed_once: dict[int, threading.Event] = {}
    lock = threading.Lock()
    stop = threading.Event()
    halfway = threading.Barrier(5)  # the 4 producers and the test
    resume = threading.Event()

    def produce(worker: int) -> None:
        with make_timed_client()[0].producer(linger_ms=5) as producer:
            for i in range(total // 4):
                if i == total // 8:
                    producer.flush()
                    halfway.wait()
                    resume.wait()
                producer.send("ledger", key=b"%d" % (i % 50), value=b"%d-%d" % (worker, i))

    def consume(consumer: Consumer, until: Callable[[], bool]) -> None:
        try:
            while not until():
                batch = _flat(consumer.poll(timeout_ms=50, max_records=300))
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
                committed_once[id(consumer)].set()
        finally:
            consumer.close()

    def done() -> bool:
        with lock:
            return stop.is_set() or sum(processed.values()) >= total

    def count() -> int:
        with lock:
            return sum(processed.values())

    def start(consumer: Consumer, until: Callable[[], bool]) -> threading.Thread:
        committed_once[id(consumer)] = threading.Event()
        thread = threading.Thread(target=consume, args=(consumer, until))
        thread.start()
        return thread

    def started(consumer: Consumer) -> Consumer:
        consumer.poll(timeout_ms=0)  # joins
        return consumer

    stayers = [started(member(make_timed_client, clock, "ledger", "exact")[0]) for _ in range(2)]
    leaver = started(member(make_timed_client, clock, "ledger", "exact")[0])
    live = [*stayers, leaver]
    # Given three members sharing the six partitions (the test polls them until then)
    wait_until(
        lambda: [len(c.assignment()) for c in live] == [2, 2, 2],
        lambda: tick(clock, HEARTBEAT_MS, live),
    )
    producers = [threading.Thread(target=produce, args=(w,)) for w in range(4)]
    for thread in producers:
        thread.start()
    leaving = threading.Event()
    threads = [start(c, done) for c in stayers]
    threads.append(start(leaver, lambda: leaving.is_set() or done()))
    # When half is produced and a quarter processed, a fourth member joins
    halfway.wait(timeout=BACKSTOP_S)
    wait_until(lambda: count() >= total // 4)
    joiner = member(make_timed_client, clock, "ledger", "exact")[0]
    threads.append(start(joiner, done))
    live.append(joiner)
    wait_until(
        lambda: bool(joiner.assignment()), lambda: tick(clock, HEARTBEAT_MS, live, poll=False)
    )
    resume.set()
    # And once both it and the leaver have committed a batch, the leaver leaves
    wait_until(committed_once[id(joiner)].is_set)
    wait_until(committed_once[id(leaver)].is_set)
    leaving.set()
    threads[2].join(timeout=BACKSTOP_S)
    live.remove(leaver)
    for thread in producers:
        thread.join(timeout=BACKSTOP_S)
    try:  # the others take the leaver's partitions at their next heartbeats
        wait_until(lambda: count() >= total, lambda: tick(clock, HEARTBEAT_MS, live, poll=False))
    except AssertionError:
        print("processed", count(), "delivered", sum(delivered.values()))
        print(client.describe_group("exact"))
        print(client.describe_topic("ledger"))
        raise
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=BACKSTOP_S)
    # Then every record was processed exactly once, by each member that took part
    expected = {b"%d-%d" % (w, i) for w in range(4) for i in range(total // 4)}
    assert set(processed) == expected
    assert max(processed.values()) == 1, [v for v, n in processed.items() if n > 1][:5]
    assert by_member[id(joiner)] > 0 and by_member[id(leaver)] > 0, by_member
    duplicates = sum(delivered.values()) - total
    assert duplicates <= total // 10, duplicates  # redelivery only around the rebalances


def test_a_group_member_rides_out_an_unavailable_service(
    make_timed_client: MakeClient, clock: Clock
) -> None:
    client, _ = make_timed_client()
    client.create_topic("outage", partitions=2)
    consumer, wire = member(make_timed_client, clock, "outage", "g3")
    wait_until(
        lambda: len(consumer.assignment()) == 2, lambda: tick(clock, HEARTBEAT_MS, [consumer])
    )
    wire.cut = True
    for _ in range(SESSION_MS // HEARTBEAT_MS - 1):  # heartbeats and fetches fail: nothing
        clock.advance(HEARTBEAT_MS)
        assert consumer.poll(timeout_ms=100) == {}
    wire.cut = False
    with client.producer() as producer:
        producer.send("outage", value=b"back", partition=0)
    got: list[ConsumerRecord] = []
    wait_until(lambda: bool(got), lambda: got.extend(_flat(consumer.poll(100))))
    assert [r.value for r in got] == [b"back"]
    assert len(consumer.assignment()) == 2  # within its session: it kept its leases
    consumer.close()


def test_commits_send_nothing_when_no_position_moved_since_the_last_one(
    make_timed_client: MakeClient, clock: Clock
) -> None:
    # Given an auto-committing member of a topic of two partitions that read 5 records
    client, _ = make_timed_client()
    client.create_topic("quiet", partitions=2)
    with client.producer() as producer:
        for i in range(5):
            producer.send("quiet", value=b"%d" % i, partition=0)
    consumer, wire = member(
        make_timed_client,
        clock,
        "quiet",
        "g",
        enable_auto_commit=True,
        auto_commit_interval_ms=HEARTBEAT_MS,
    )
    records: list[ConsumerRecord] = []
    wait_until(lambda: len(records) >= 5, lambda: records.extend(_flat(consumer.poll(100))))
    tick(clock, HEARTBEAT_MS, [consumer])  # auto-commits both partitions' positions once
    assert wire.calls["commit_offsets"] == 1
    first, second = TopicPartition("quiet", 0), TopicPartition("quiet", 1)

    # When time passes with nothing to read, and it commits what it committed already
    heartbeats = wire.calls["join_group"]
    for _ in range(4):
        tick(clock, HEARTBEAT_MS, [consumer])
    consumer.commit()
    consumer.commit({first: 5, second: 0})

    # Then it heartbeat every interval but sent no commit
    assert wire.calls["join_group"] >= heartbeats + 4
    assert wire.calls["commit_offsets"] == 1

    # And a position that moved is committed once, by an explicit or an automatic commit
    consumer.commit({first: 3})
    assert wire.calls["commit_offsets"] == 2
    with client.producer() as producer:
        producer.send("quiet", value=b"5", partition=1)
    wait_until(lambda: len(records) >= 6, lambda: records.extend(_flat(consumer.poll(100))))
    for _ in range(2):
        tick(clock, HEARTBEAT_MS, [consumer])
    # (one request for every position that differs from the last commit: partition 1's
    # new one, and partition 0's position, 5, which the explicit commit of 3 left behind)
    assert wire.calls["commit_offsets"] == 3
    committed = {p.partition: p.committed_offset for p in client.describe_group("g").partitions}
    assert committed == {0: 5, 1: 1}
    consumer.close()
    assert wire.calls["commit_offsets"] == 3  # nothing moved since: close commits nothing

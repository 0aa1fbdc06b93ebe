"""What the consumer group tests share: a settable clock, heartbeat rounds, ownership checks."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from lakelog import Engine, Membership, TopicPartition

START_MS = 1_741_774_530_000
"""The fake clock's first instant (2025-03-12T10:15:30Z, the sample events' time)."""


class Clock:
    """Milliseconds that move only when a test says so.

    Pass it as an engine's ``clock_ms`` and as a consumer's ``_clock`` (a
    `lakelog.client.clock.GroupClock`): engines and consumers then share one time, and
    sessions lapse and heartbeats fall due only when the test calls `advance`.
    """

    def __init__(self, now_ms: int = START_MS) -> None:
        self.now_ms = now_ms
        self._moved = threading.Condition()

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        """Let ``ms`` milliseconds pass (and wake whoever waits on this clock)."""
        with self._moved:
            self.now_ms += ms
            self._moved.notify_all()

    def monotonic(self) -> float:
        """The time in seconds. Tests move it by multiples of 500 ms: those differences are
        exact in floating point, so a heartbeat interval of 500 ms falls due exactly."""
        return self.now_ms / 1000

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait until ``event`` is set or ``seconds`` passed on this clock."""
        until = self.now_ms + seconds * 1000
        with self._moved:
            while not event.is_set() and self.now_ms < until:
                self._moved.wait(0.05)  # also notices ``event``, which does not notify
        return event.is_set()


def heartbeat(
    engine: Engine,
    group: str,
    subscriptions: Mapping[str, Sequence[str]],
    rounds: int = 2,
    session_timeout_ms: int | None = None,
) -> dict[str, Membership]:
    """Heartbeat every member (member id -> topics), in id order, ``rounds`` times.

    Returns the last reply of each member.
    """
    replies: dict[str, Membership] = {}
    for _ in range(rounds):
        for member_id in sorted(subscriptions):
            replies[member_id] = engine.join_group(
                group, subscriptions[member_id], member_id, session_timeout_ms
            )
    return replies


def held(membership: Membership) -> set[TopicPartition]:
    """The partitions a reply says the member holds."""
    return {TopicPartition(a.topic, a.partition) for a in membership.assignments}


def assert_disjoint_and_complete(
    replies: Mapping[str, Membership], partitions: Iterable[TopicPartition]
) -> None:
    """Every partition is held by exactly one member, as the replies tell it."""
    counts = Counter(tp for reply in replies.values() for tp in held(reply))
    assert set(counts) == set(partitions), counts
    assert all(count == 1 for count in counts.values()), counts


def assert_balanced(replies: Mapping[str, Membership], topic: str, partitions: int) -> None:
    """Each member holds the floor or the ceiling of its share of ``topic``."""
    floor, extra = divmod(partitions, len(replies))
    counts = sorted(sum(a.topic == topic for a in r.assignments) for r in replies.values())
    assert set(counts) <= {floor, floor + (1 if extra else 0)}, counts
    assert sum(counts) == partitions, counts

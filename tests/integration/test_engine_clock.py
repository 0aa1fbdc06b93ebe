"""The engine keeps time on its injected clock: topic and ACL cache ages, append deadlines."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lakelog import Engine, Record
from lakelog.errors import UnavailableError
from lakelog.service.acl import ACL_CACHE_SECONDS, AclEntry
from lakelog.service.context import TOPIC_CACHE_SECONDS
from lakelog.service.produce import AppendRetryPolicy
from lakelog.storage.faults import FailPoint
from tests.conftest import MakeFaulty
from tests.integration.group_support import Clock

TTL_MS = int(TOPIC_CACHE_SECONDS * 1000)


def test_a_cached_topic_is_read_again_once_its_age_on_the_engine_clock_passes_the_ttl(
    make_engine: Callable[..., Engine],
) -> None:
    # Given an engine that cached a 2-partition topic, which another engine then grew to 4
    clock = Clock()
    fresh, cached = make_engine(clock_ms=clock), make_engine(clock_ms=clock)
    fresh.create_topic("grown", partitions=2)
    cached.join_group("before", ["grown"], "m")
    fresh.alter_topic("grown", partitions=4)

    # When less than the TTL passed, the cached copy is used: a new member gets 2 partitions
    clock.advance(TTL_MS - 1)
    assert len(cached.join_group("within", ["grown"], "m").assignments) == 2

    # When the TTL passed on the engine's clock (no wall-clock time has), the catalog is read
    clock.advance(1)
    assert len(cached.join_group("after", ["grown"], "m").assignments) == 4


def test_an_append_that_keeps_conflicting_gives_up_at_its_deadline_on_the_engine_clock(
    make_faulty: MakeFaulty,
) -> None:
    # Given a ledger that conflicts on every attempt, and retry pauses of 250 ms each that
    # pass on the engine's clock only
    clock = Clock()
    engine, injector = make_faulty(
        clock_ms=clock,
        sleep=lambda _seconds: clock.advance(250),
        retry=AppendRetryPolicy(max_attempts=1000, deadline_seconds=1.0),
    )
    engine.create_topic("busy")
    injector.arm(FailPoint.CONFLICT, times=1000)

    # When an append goes through, then it gives up once a second passed on that clock
    with pytest.raises(UnavailableError, match="kept conflicting"):
        engine.append("busy", [Record(value=b"a")])
    assert injector.hits[FailPoint.CONFLICT] == 6  # at 0, 250, ..., 1250 ms: past 1 s
    assert engine.list_offset("busy", 0, "latest") == 0


def test_access_rules_are_read_again_once_their_age_on_the_engine_clock_passes_the_ttl(
    make_engine: Callable[..., Engine],
) -> None:
    # Given access control that read the rules (none: the default deny applies), and a rule
    # then added through another engine
    clock = Clock()
    engine = make_engine(clock_ms=clock)
    access = engine.access_control("deny")
    assert not access.allowed("alice", "produce", "orders")
    make_engine(clock_ms=clock).access_control("deny").add(
        AclEntry("alice", "orders", "allow", frozenset({"produce"}))
    )

    # When less than the cache time passed on the engine's clock, the cached rules decide
    clock.advance(int(ACL_CACHE_SECONDS * 1000) - 1)
    assert not access.allowed("alice", "produce", "orders")

    # When it passed (no wall-clock time has), the new rule is read and applies
    clock.advance(1)
    assert access.allowed("alice", "produce", "orders")

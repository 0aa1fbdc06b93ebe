"""Fault injection: wrappers around any storage port that fail at named points.

A test arms a fail point (``injector.arm(FailPoint.AFTER_PUT)``) or gives it a
probability under a seed, then runs the engine on the wrapped stores. ``AFTER_*`` points
fail *after* the wrapped call succeeded: the caller sees an error although the write
happened, which is how a crash or a lost reply looks from outside.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from enum import StrEnum

from lakelog.errors import ThrottledError, UnavailableError
from lakelog.log.records import Entry, Head, PartitionWrite
from lakelog.storage.ports import (
    AppendConflict,
    GroupState,
    GroupStore,
    LeaseRecord,
    LedgerStore,
    MemberRecord,
    ObjectInfo,
    ObjectStore,
)
from lakelog.types import OffsetCommit

__all__ = [
    "FailPoint",
    "FaultInjector",
    "FaultyGroupStore",
    "FaultyLedgerStore",
    "FaultyObjectStore",
    "InjectedFaultError",
]


class FailPoint(StrEnum):
    """Where a fault can be injected."""

    BEFORE_PUT = "before_put"
    AFTER_PUT = "after_put"
    BEFORE_LEDGER = "before_ledger"
    AFTER_LEDGER = "after_ledger"
    CONFLICT = "conflict"
    THROTTLE = "throttle"
    GET_TIMEOUT = "get_timeout"
    BEFORE_LEASE = "before_lease"
    AFTER_LEASE = "after_lease"
    BEFORE_COMMIT = "before_commit"
    AFTER_COMMIT = "after_commit"


class InjectedFaultError(UnavailableError):
    """A failure made on purpose; the outcome of the interrupted write is unknown."""

    def __init__(self, point: FailPoint) -> None:
        super().__init__(f"injected fault at {point}")
        self.point = point


class FaultInjector:
    """Decides, per fail point, whether the next pass through it fails.

    Parameters
    ----------
    seed
        Seed of the generator used by `set_probability`; runs with one seed are reproducible.
    """

    def __init__(self, seed: int = 0) -> None:
        self._armed: Counter[FailPoint] = Counter()
        self._probability: dict[FailPoint, float] = {}
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.hits: Counter[FailPoint] = Counter()

    def arm(self, point: FailPoint, times: int = 1) -> None:
        """Fail the next ``times`` passes through ``point``."""
        with self._lock:
            self._armed[point] += times

    def set_probability(self, point: FailPoint, probability: float) -> None:
        """Fail each pass through ``point`` with ``probability``."""
        with self._lock:
            self._probability[point] = probability

    def disarm(self) -> None:
        """Stop failing anywhere."""
        with self._lock:
            self._armed.clear()
            self._probability.clear()

    def should_fail(self, point: FailPoint) -> bool:
        """Consume one armed failure of ``point`` (or roll its probability)."""
        with self._lock:
            fail = self._armed[point] > 0 or (
                self._random.random() < self._probability.get(point, 0.0)
            )
            if self._armed[point] > 0:
                self._armed[point] -= 1
            if fail:
                self.hits[point] += 1
            return fail

    def check(self, point: FailPoint) -> None:
        """Raise `InjectedFaultError` if ``point`` should fail now."""
        if self.should_fail(point):
            raise InjectedFaultError(point)


class FaultyObjectStore:
    """An `ObjectStore` that fails before or after PUTs and on GETs when told to."""

    def __init__(self, inner: ObjectStore, injector: FaultInjector) -> None:
        self.inner = inner
        self.injector = injector

    def put(self, key: str, body: bytes) -> None:
        self.injector.check(FailPoint.BEFORE_PUT)
        self.inner.put(key, body)
        self.injector.check(FailPoint.AFTER_PUT)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        self.injector.check(FailPoint.GET_TIMEOUT)
        return self.inner.get_range(key, start, end)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, keys: Sequence[str]) -> None:
        self.inner.delete(keys)


class FaultyLedgerStore:
    """A `LedgerStore` whose append transaction fails, conflicts or throttles when told to."""

    def __init__(self, inner: LedgerStore, injector: FaultInjector) -> None:
        self.inner = inner
        self.injector = injector

    def create_heads(self, pks: Sequence[str]) -> None:
        self.inner.create_heads(pks)

    def read_heads(self, pks: Sequence[str]) -> dict[str, Head]:
        return self.inner.read_heads(pks)

    def append(self, writes: Sequence[PartitionWrite]) -> None:
        self.injector.check(FailPoint.BEFORE_LEDGER)
        if self.injector.should_fail(FailPoint.CONFLICT):
            raise AppendConflict({}, retryable=True)
        if self.injector.should_fail(FailPoint.THROTTLE):
            raise ThrottledError("injected throttle")
        self.inner.append(writes)
        self.injector.check(FailPoint.AFTER_LEDGER)

    def query(self, pk: str, from_offset: int, limit: int) -> tuple[list[Entry], Head | None]:
        return self.inner.query(pk, from_offset, limit)

    def entries(self, pk: str) -> Iterator[Entry]:
        return self.inner.entries(pk)

    def delete_partition(self, pk: str) -> None:
        self.inner.delete_partition(pk)


class FaultyGroupStore:
    """A `GroupStore` that fails around lease moves (take, give up) and commits.

    ``on_lease`` and ``on_commit``, when set, are called just before each lease move and
    each commit reaches the inner store: a test uses them to interleave another member's
    request at exactly that point.
    """

    def __init__(self, inner: GroupStore, injector: FaultInjector) -> None:
        self.inner = inner
        self.injector = injector
        self.on_lease: Callable[[LeaseRecord], None] | None = None
        self.on_commit: Callable[[Sequence[OffsetCommit]], None] | None = None

    def put_member(self, group: str, member: MemberRecord) -> None:
        self.inner.put_member(group, member)

    def delete_member(self, group: str, member_id: str) -> None:
        self.inner.delete_member(group, member_id)

    def read_group(self, group: str) -> GroupState:
        return self.inner.read_group(group)

    def _moving(self, seen: LeaseRecord) -> None:
        self.injector.check(FailPoint.BEFORE_LEASE)
        if self.on_lease is not None:
            self.on_lease(seen)

    def take_lease(
        self, group: str, seen: LeaseRecord, owner: str, topic_id: str
    ) -> LeaseRecord | None:
        self._moving(seen)
        taken = self.inner.take_lease(group, seen, owner, topic_id)
        self.injector.check(FailPoint.AFTER_LEASE)
        return taken

    def give_up_lease(self, group: str, seen: LeaseRecord) -> bool:
        self._moving(seen)
        given_up = self.inner.give_up_lease(group, seen)
        self.injector.check(FailPoint.AFTER_LEASE)
        return given_up

    def commit(
        self, group: str, member_id: str, offsets: Sequence[OffsetCommit], committed_ms: int
    ) -> None:
        self.injector.check(FailPoint.BEFORE_COMMIT)
        if self.on_commit is not None:
            self.on_commit(offsets)
        self.inner.commit(group, member_id, offsets, committed_ms)
        self.injector.check(FailPoint.AFTER_COMMIT)

    def reset_leases(self, group: str, resets: Sequence[tuple[LeaseRecord, LeaseRecord]]) -> bool:
        return self.inner.reset_leases(group, resets)

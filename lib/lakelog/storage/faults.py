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
from collections.abc import Iterator, Sequence
from enum import StrEnum

from lakelog.errors import ThrottledError, UnavailableError
from lakelog.storage.ports import (
    AppendConflict,
    Entry,
    Head,
    LedgerStore,
    ObjectInfo,
    ObjectStore,
    PartitionWrite,
)

__all__ = [
    "FailPoint",
    "FaultInjector",
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

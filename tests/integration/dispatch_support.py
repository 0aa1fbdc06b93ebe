"""What the dispatcher tests share: scripted functions, a recording queue sender, a
subscription port over a dict, and a harness that builds dispatchers on one engine."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lakelog import Engine, Record
from lakelog.service.dispatch import Dispatcher
from lakelog.service.invoke import InvokeOutcome
from lakelog.storage.delivery import DeliveryStateStore, MemoryDeliveryStateStore
from lakelog.types import Subscription

SERVERS = "gateway-1.lakelog.local:9092,gateway-2.lakelog.local:9092"

Behaviour = Callable[[Mapping[str, Any]], InvokeOutcome]
"""What a scripted function does with one event."""


def records_of(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The records of an event (all partitions, in order)."""
    return [r for batch in event["records"].values() for r in batch]


def values_of(event: Mapping[str, Any]) -> list[bytes]:
    """The decoded values of an event's records."""
    return [base64.b64decode(r["value"]) for r in records_of(event)]


def ok(_event: Mapping[str, Any]) -> InvokeOutcome:
    """A function that acknowledges every batch."""
    return InvokeOutcome()


class Functions:
    """An `Invoker` of scripted functions that records each call and checks that no two
    invocations of one partition overlap."""

    def __init__(self, behaviour: Behaviour = ok) -> None:
        self.behaviour = behaviour
        self.calls: list[tuple[str, Mapping[str, Any]]] = []
        self.max_in_flight: dict[str, int] = {}
        self._in_flight: dict[str, int] = {}
        self._lock = threading.Lock()

    def invoke(self, function_arn: str, event: Mapping[str, Any]) -> InvokeOutcome:
        keys = list(event["records"])
        with self._lock:
            self.calls.append((function_arn, event))
            for key in keys:
                self._in_flight[key] = self._in_flight.get(key, 0) + 1
                self.max_in_flight[key] = max(self.max_in_flight.get(key, 0), self._in_flight[key])
        try:
            return self.behaviour(event)
        finally:
            with self._lock:
                for key in keys:
                    self._in_flight[key] -= 1

    def offsets(self, key: str) -> list[int]:
        """Every offset sent for partition ``key`` (``topic-p``), in the order sent."""
        return [r["offset"] for _, event in self.calls for r in event["records"].get(key, [])]

    def batches(self, key: str) -> list[list[int]]:
        """The offsets of each event sent for ``key``."""
        return [
            [r["offset"] for r in e["records"][key]] for _, e in self.calls if key in e["records"]
        ]


@dataclass
class Queues:
    """A `QueueSender` that keeps what it was sent."""

    sent: list[tuple[str, str]] = field(default_factory=list)
    """(queue ARN, body) of every message sent, in order."""

    def send(self, queue_arn: str, body: str) -> None:
        self.sent.append((queue_arn, body))


class Subscriptions:
    """The subscription store's read port over a dict (topic name -> subscriptions)."""

    def __init__(self, *subscriptions: Subscription) -> None:
        self.by_topic: dict[str, list[Subscription]] = {}
        for sub in subscriptions:
            self.add(sub)

    def add(self, sub: Subscription) -> None:
        self.by_topic.setdefault(sub.topic, []).append(sub)

    def __call__(self, topic: str) -> Sequence[Subscription]:
        return list(self.by_topic.get(topic, []))


class Harness:
    """Dispatchers on one engine, one delivery-state store, one set of functions."""

    def __init__(
        self,
        engine: Engine,
        *subscriptions: Subscription,
        functions: Functions | None = None,
        states: DeliveryStateStore | None = None,
    ) -> None:
        self.engine = engine
        self.subscriptions = Subscriptions(*subscriptions)
        self.functions = functions or Functions()
        self.queues = Queues()
        self.states = states or MemoryDeliveryStateStore()

    def dispatcher(self, engine: Engine | None = None, **kwargs: Any) -> Dispatcher:
        return Dispatcher(
            engine or self.engine,
            self.subscriptions,
            self.functions,
            self.queues,
            states=self.states,
            bootstrap_servers=SERVERS,
            **kwargs,
        )

    def topic_id(self, topic: str) -> str:
        found = self.engine.context.catalog.get_topic(topic)
        assert found is not None
        return found.topic_id

    def append(self, topic: str, partition: int, *values: bytes) -> None:
        self.engine.append(topic, [Record(value=v, partition=partition) for v in values])

    def committed(self, sub: Subscription, partition: int) -> int | None:
        leases = self.engine.groups.store.read_group(sub.group).leases
        found = [lease for lease in leases if lease.partition == partition]
        return found[0].committed_offset if found else None

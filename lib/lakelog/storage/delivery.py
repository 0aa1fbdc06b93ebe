"""The dispatcher's delivery states: a port and its memory and DynamoDB adapters.

One item per (subscription, partition) whose delivery runs, waits for its batching window
or retries (ADR 0015 §2); catching up deletes it. The items share one catalog partition
key (`lakelog.storage.keys.DELIVERY_STATE_PK`), so what is due is one ``Query``: the
schedule of an idle deployment reads nothing but an empty partition.

Item attributes (``pk = "dispatch"``, ``sk = "{group}#{partition:05d}"``)
    ``group`` S, ``topic`` S, ``name`` S (the subscription), ``partition`` N, ``due_ms`` N,
    ``attempts`` N, ``throttles`` N (present only when not 0), ``error`` S (the last
    failure, when any), ``bisect_end`` N and ``bisect_size`` N (while a split batch is
    retried in parts), ``woken`` BOOL (present only when true: records arrived while
    another delivery held the lease).

Beside them, one *run guard* per dispatcher run whose deliveries have no state item
(``sk = "run#{run_id}"``): ``topic_ids`` L of S (the topics the run delivers), ``due_ms``
N (when its session lapses). The schedule's one query finds both (`due_work`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final, Protocol

from botocore.exceptions import ClientError

from lakelog.storage.attributes import Item, condition_failed, get_int, num
from lakelog.storage.errors import translate_client_errors
from lakelog.storage.keys import (
    DELIVERY_STATE_PK,
    RUN_GUARD_SK_PREFIX,
    delivery_state_sort_key,
    run_guard_sort_key,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = [
    "DeliveryState",
    "DeliveryStateStore",
    "DynamoDeliveryStateStore",
    "MemoryDeliveryStateStore",
    "RunGuard",
]

WAKE_ATTEMPTS: Final = 3
"""Rounds of a wake racing with the item's deletion (each round is one or two writes)."""


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """Where the delivery of one (subscription, partition) stands.

    ``attempts`` counts failed invocations of the batch at the committed offset (0: not
    retrying), ``throttles`` those of them Lambda throttled (they spend no retry attempt
    but grow the backoff); ``due_ms`` is when the schedule resumes it (the next attempt, the end of
    the batching window, or the stall guard of a running delivery). ``bisect_end`` and
    ``bisect_size``: batches below ``bisect_end`` are at most ``bisect_size`` records.
    ``woken``: another dispatcher found the lease held and left the records to the holder.
    """

    group: str
    topic: str
    name: str
    partition: int
    due_ms: int
    attempts: int = 0
    throttles: int = 0
    error: str | None = None
    bisect_end: int | None = None
    bisect_size: int | None = None
    woken: bool = False


@dataclass(frozen=True, slots=True)
class RunGuard:
    """The stall guard of one dispatcher run: while it runs, deliveries of ``topic_ids``
    that have no state item are covered by this one item, due when the run's session
    lapses; a run that ends without a failure deletes it (ADR 0015 §2)."""

    run_id: str
    topic_ids: tuple[str, ...]
    due_ms: int


class DeliveryStateStore(Protocol):
    """Delivery states by (group, partition), and the query of those due."""

    def get(self, group: str, partition: int) -> DeliveryState | None:
        """The state of ``partition`` of ``group`` (strongly consistent), or None."""

    def put(self, state: DeliveryState) -> None:
        """Store ``state`` as it is (replacing any, ``woken`` included)."""

    def finish(self, group: str, partition: int) -> bool:
        """Delete the state unless it is woken; False (and nothing changed) if it is."""

    def wake(self, state: DeliveryState) -> None:
        """Mark the state woken and, unless it is retrying (its backoff stands), due by
        ``state.due_ms`` at the latest; store ``state`` (woken) when there is none."""

    def delete(self, group: str, partition: int) -> None:
        """Delete the state; a missing one is not an error."""

    def due(self, now_ms: int) -> list[DeliveryState]:
        """Every state with ``due_ms <= now_ms``, by due time (one query)."""

    def due_work(self, now_ms: int) -> tuple[list[DeliveryState], list[RunGuard]]:
        """The states and the run guards with ``due_ms <= now_ms``, each by due time (one
        query: what the schedule reads)."""

    def put_guard(self, guard: RunGuard) -> None:
        """Store ``guard`` (replacing any of its run id)."""

    def delete_guard(self, run_id: str) -> None:
        """Delete the run guard of ``run_id``; a missing one is not an error."""


def _by_due(
    states: list[DeliveryState], guards: list[RunGuard]
) -> tuple[list[DeliveryState], list[RunGuard]]:
    return (
        sorted(states, key=lambda state: (state.due_ms, state.group, state.partition)),
        sorted(guards, key=lambda guard: (guard.due_ms, guard.run_id)),
    )


class MemoryDeliveryStateStore:
    """The `DeliveryStateStore` port in memory."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, int], DeliveryState] = {}
        self._guards: dict[str, RunGuard] = {}
        self._lock = threading.Lock()
        self.queries = 0
        """`due` and `due_work` calls so far (what the schedule costs)."""

    def get(self, group: str, partition: int) -> DeliveryState | None:
        with self._lock:
            return self._states.get((group, partition))

    def put(self, state: DeliveryState) -> None:
        with self._lock:
            self._states[(state.group, state.partition)] = state

    def finish(self, group: str, partition: int) -> bool:
        with self._lock:
            state = self._states.get((group, partition))
            if state is not None and state.woken:
                return False
            self._states.pop((group, partition), None)
            return True

    def wake(self, state: DeliveryState) -> None:
        with self._lock:
            current = self._states.get((state.group, state.partition))
            if current is None:
                current = state
            due = current.due_ms if current.attempts else min(current.due_ms, state.due_ms)
            self._states[(state.group, state.partition)] = replace(current, due_ms=due, woken=True)

    def delete(self, group: str, partition: int) -> None:
        with self._lock:
            self._states.pop((group, partition), None)

    def due(self, now_ms: int) -> list[DeliveryState]:
        return self.due_work(now_ms)[0]

    def due_work(self, now_ms: int) -> tuple[list[DeliveryState], list[RunGuard]]:
        with self._lock:
            self.queries += 1
            states = [state for state in self._states.values() if state.due_ms <= now_ms]
            guards = [guard for guard in self._guards.values() if guard.due_ms <= now_ms]
        return _by_due(states, guards)

    def put_guard(self, guard: RunGuard) -> None:
        with self._lock:
            self._guards[guard.run_id] = guard

    def delete_guard(self, run_id: str) -> None:
        with self._lock:
            self._guards.pop(run_id, None)


def _key(group: str, partition: int) -> Item:
    return {"pk": {"S": DELIVERY_STATE_PK}, "sk": {"S": delivery_state_sort_key(group, partition)}}


def _to_item(state: DeliveryState) -> Item:
    item: Item = {
        **_key(state.group, state.partition),
        "group": {"S": state.group},
        "topic": {"S": state.topic},
        "name": {"S": state.name},
        "partition": num(state.partition),
        "due_ms": num(state.due_ms),
        "attempts": num(state.attempts),
    }
    if state.throttles:
        item["throttles"] = num(state.throttles)
    if state.error is not None:
        item["error"] = {"S": state.error}
    if state.bisect_end is not None:
        item["bisect_end"] = num(state.bisect_end)
    if state.bisect_size is not None:
        item["bisect_size"] = num(state.bisect_size)
    if state.woken:
        item["woken"] = {"BOOL": True}
    return item


def _from_item(item: Item) -> DeliveryState:
    return DeliveryState(
        group=item["group"]["S"],
        topic=item["topic"]["S"],
        name=item["name"]["S"],
        partition=get_int(item, "partition"),
        due_ms=get_int(item, "due_ms"),
        attempts=get_int(item, "attempts"),
        throttles=get_int(item, "throttles"),
        error=item["error"]["S"] if "error" in item else None,
        bisect_end=get_int(item, "bisect_end") if "bisect_end" in item else None,
        bisect_size=get_int(item, "bisect_size") if "bisect_size" in item else None,
        woken=bool(item.get("woken", {}).get("BOOL", False)),
    )


class DynamoDeliveryStateStore:
    """The `DeliveryStateStore` port on the catalog table (items in the module docstring)."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    @translate_client_errors
    def get(self, group: str, partition: int) -> DeliveryState | None:
        reply = self._client.get_item(
            TableName=self._table, Key=_key(group, partition), ConsistentRead=True
        )
        item = reply.get("Item")
        return None if item is None else _from_item(item)

    @translate_client_errors
    def put(self, state: DeliveryState) -> None:
        self._client.put_item(TableName=self._table, Item=_to_item(state))

    @translate_client_errors
    def finish(self, group: str, partition: int) -> bool:
        try:
            self._client.delete_item(
                TableName=self._table,
                Key=_key(group, partition),
                ConditionExpression="attribute_not_exists(woken)",
            )
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    @translate_client_errors
    def wake(self, state: DeliveryState) -> None:
        for _ in range(WAKE_ATTEMPTS):
            try:  # none yet, or due later: the state becomes due by state.due_ms
                self._client.put_item(
                    TableName=self._table,
                    Item=_to_item(replace(state, woken=True)),
                    ConditionExpression="attribute_not_exists(pk)",
                )
                return
            except ClientError as exc:
                if not condition_failed(exc):
                    raise
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key=_key(state.group, state.partition),
                    UpdateExpression="SET woken = :t, due_ms = :d",
                    ConditionExpression="attribute_exists(pk) AND due_ms > :d AND attempts = :z",
                    ExpressionAttributeValues={
                        ":t": {"BOOL": True},
                        ":d": num(state.due_ms),
                        ":z": num(0),
                    },
                )
                return
            except ClientError as exc:
                if not condition_failed(exc):
                    raise
            try:  # due by then already, or retrying: only mark it woken
                self._client.update_item(
                    TableName=self._table,
                    Key=_key(state.group, state.partition),
                    UpdateExpression="SET woken = :t",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues={":t": {"BOOL": True}},
                )
                return
            except ClientError as exc:
                if not condition_failed(exc):
                    raise
            # deleted in between: put it again

    @translate_client_errors
    def delete(self, group: str, partition: int) -> None:
        self._client.delete_item(TableName=self._table, Key=_key(group, partition))

    def due(self, now_ms: int) -> list[DeliveryState]:
        return self.due_work(now_ms)[0]

    @translate_client_errors
    def put_guard(self, guard: RunGuard) -> None:
        item: Item = {
            "pk": {"S": DELIVERY_STATE_PK},
            "sk": {"S": run_guard_sort_key(guard.run_id)},
            "topic_ids": {"L": [{"S": topic_id} for topic_id in guard.topic_ids]},
            "due_ms": num(guard.due_ms),
        }
        self._client.put_item(TableName=self._table, Item=item)

    @translate_client_errors
    def delete_guard(self, run_id: str) -> None:
        key = {"pk": {"S": DELIVERY_STATE_PK}, "sk": {"S": run_guard_sort_key(run_id)}}
        self._client.delete_item(TableName=self._table, Key=key)

    @translate_client_errors
    def due_work(self, now_ms: int) -> tuple[list[DeliveryState], list[RunGuard]]:
        states: list[DeliveryState] = []
        guards: list[RunGuard] = []
        paginator = self._client.get_paginator("query")
        for page in paginator.paginate(
            TableName=self._table,
            KeyConditionExpression="pk = :pk",
            FilterExpression="due_ms <= :now",
            ExpressionAttributeValues={":pk": {"S": DELIVERY_STATE_PK}, ":now": num(now_ms)},
            ConsistentRead=True,
        ):
            for item in page.get("Items", []):
                sort_key = item["sk"]["S"]
                if sort_key.startswith(RUN_GUARD_SK_PREFIX):
                    topic_ids = tuple(value["S"] for value in item["topic_ids"]["L"])
                    run_id = sort_key.removeprefix(RUN_GUARD_SK_PREFIX)
                    guards.append(RunGuard(run_id, topic_ids, get_int(item, "due_ms")))
                else:
                    states.append(_from_item(item))
        return _by_due(states, guards)

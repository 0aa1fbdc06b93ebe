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
from lakelog.log.records import (
    ChainItem,
    ChainMeta,
    Entry,
    ProducerUpdate,
    TopicProducerState,
)
from lakelog.storage.ports import (
    AclEntry,
    CatalogStore,
    ChainConflict,
    GroupState,
    GroupStore,
    LeaseRecord,
    LedgerStore,
    MemberRecord,
    ObjectInfo,
    ObjectStore,
    ProducerIdRecord,
    TopicRecord,
)
from lakelog.types import OffsetCommit, Subscription

__all__ = [
    "FailPoint",
    "FaultInjector",
    "FaultyCatalogStore",
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
    AFTER_TOPIC_MARK = "after_topic_mark"
    BEFORE_TOPIC_DELETE = "before_topic_delete"
    AFTER_TOPIC_DELETE = "after_topic_delete"
    BEFORE_CHAIN_CREATE = "before_chain_create"
    AFTER_CHAIN_CREATE = "after_chain_create"
    AFTER_SEAL = "after_seal"
    BEFORE_META_UPDATE = "before_meta_update"
    AFTER_META_UPDATE = "after_meta_update"
    BEFORE_CHAIN_DELETE = "before_chain_delete"
    BEFORE_ENTRIES_PUT = "before_entries_put"
    AFTER_ENTRIES_PUT = "after_entries_put"
    BEFORE_ENTRY_REPLACE = "before_entry_replace"
    AFTER_ENTRY_PUT = "after_entry_put"
    """Between a replacement entry's put and the deletion of the entries it covers."""
    AFTER_ENTRY_REPLACE = "after_entry_replace"
    BEFORE_ITEMS_DELETE = "before_items_delete"
    AFTER_ITEMS_DELETE = "after_items_delete"
    BEFORE_ENTRIES_DELETE = "before_entries_delete"
    AFTER_ENTRIES_DELETE = "after_entries_delete"


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
    """A `LedgerStore` whose writes fail before or after they reach the inner store.

    ``put_item`` passes the append's points: ``BEFORE_LEDGER``, then ``CONFLICT`` (a
    retryable `ChainConflict` instead of the put) and ``THROTTLE``, then ``AFTER_LEDGER``
    once the put landed; a deletion's seal item passes ``AFTER_SEAL`` too, once it is
    written. ``on_put``, when set, is called just
    before each put reaches the inner store: a test uses it to interleave another writer
    at exactly that point. ``on_query``, when set, is called (with the topic id) just before
    each query does, to interleave a deletion between a reader's plan and its read.
    """

    def __init__(self, inner: LedgerStore, injector: FaultInjector) -> None:
        self.inner = inner
        self.injector = injector
        self.on_put: Callable[[ChainItem], None] | None = None
        self.on_query: Callable[[str], None] | None = None

    def create_chain(self, topic_id: str, meta: ChainMeta, genesis: ChainItem) -> None:
        self.injector.check(FailPoint.BEFORE_CHAIN_CREATE)
        self.inner.create_chain(topic_id, meta, genesis)
        self.injector.check(FailPoint.AFTER_CHAIN_CREATE)

    def read_tail(self, topic_id: str) -> tuple[ChainItem, ChainMeta] | None:
        return self.inner.read_tail(topic_id)

    def read_meta(self, topic_id: str) -> ChainMeta | None:
        return self.inner.read_meta(topic_id)

    def put_item(
        self, topic_id: str, item: ChainItem, producer: ProducerUpdate | None = None
    ) -> None:
        self.injector.check(FailPoint.BEFORE_LEDGER)
        if self.injector.should_fail(FailPoint.CONFLICT):
            raise ChainConflict(retryable=True)
        if self.injector.should_fail(FailPoint.THROTTLE):
            raise ThrottledError("injected throttle")
        if self.on_put is not None:
            self.on_put(item)
        self.inner.put_item(topic_id, item, producer)
        if item.kind == "seal":
            self.injector.check(FailPoint.AFTER_SEAL)
        self.injector.check(FailPoint.AFTER_LEDGER)

    def get_item(self, topic_id: str, seq: int) -> ChainItem | None:
        return self.inner.get_item(topic_id, seq)

    def query(
        self, topic_id: str, from_seq: int, limit: int
    ) -> tuple[list[ChainItem], ChainMeta | None]:
        if self.on_query is not None:
            self.on_query(topic_id)
        return self.inner.query(topic_id, from_seq, limit)

    def chain(self, topic_id: str) -> Iterator[ChainItem]:
        return self.inner.chain(topic_id)

    def update_meta(self, topic_id: str, meta: ChainMeta, expected_version: int) -> bool:
        self.injector.check(FailPoint.BEFORE_META_UPDATE)
        updated = self.inner.update_meta(topic_id, meta, expected_version)
        self.injector.check(FailPoint.AFTER_META_UPDATE)
        return updated

    def read_producer(self, topic_id: str, producer_id: int) -> TopicProducerState | None:
        return self.inner.read_producer(topic_id, producer_id)

    def delete_chain(self, topic_id: str) -> None:
        self.injector.check(FailPoint.BEFORE_CHAIN_DELETE)
        self.inner.delete_chain(topic_id)

    def delete_items(self, topic_id: str, seqs: Sequence[int]) -> None:
        self.injector.check(FailPoint.BEFORE_ITEMS_DELETE)
        self.inner.delete_items(topic_id, seqs)
        self.injector.check(FailPoint.AFTER_ITEMS_DELETE)

    def put_entries(self, topic_id: str, partition: int, entries: Sequence[Entry]) -> None:
        self.injector.check(FailPoint.BEFORE_ENTRIES_PUT)
        self.inner.put_entries(topic_id, partition, entries)
        self.injector.check(FailPoint.AFTER_ENTRIES_PUT)

    def replace_entry(
        self, topic_id: str, partition: int, entry: Entry, replaced: Sequence[Entry]
    ) -> bool:
        self.injector.check(FailPoint.BEFORE_ENTRY_REPLACE)
        if not self.inner.replace_entry(topic_id, partition, entry, replaced[-1:]):
            return False
        self.injector.check(FailPoint.AFTER_ENTRY_PUT)
        done = self.inner.replace_entry(topic_id, partition, entry, replaced)
        self.injector.check(FailPoint.AFTER_ENTRY_REPLACE)
        return done

    def query_entries(
        self, topic_id: str, partition: int, from_offset: int, limit: int
    ) -> list[Entry]:
        return self.inner.query_entries(topic_id, partition, from_offset, limit)

    def entries(self, topic_id: str, partition: int) -> Iterator[Entry]:
        return self.inner.entries(topic_id, partition)

    def delete_entries(self, topic_id: str, partition: int, last_offsets: Sequence[int]) -> None:
        self.injector.check(FailPoint.BEFORE_ENTRIES_DELETE)
        self.inner.delete_entries(topic_id, partition, last_offsets)
        self.injector.check(FailPoint.AFTER_ENTRIES_DELETE)


class FaultyCatalogStore:
    """A `CatalogStore` whose topic deletion fails after its marker, and before or after
    the catalog changed.

    ``on_delete``, when set, is called just before each topic deletion reaches the inner
    store: a test uses it to interleave another request at exactly that point.
    """

    def __init__(self, inner: CatalogStore, injector: FaultInjector) -> None:
        self.inner = inner
        self.injector = injector
        self.on_delete: Callable[[TopicRecord], None] | None = None

    def get_topic(self, name: str) -> TopicRecord | None:
        return self.inner.get_topic(name)

    def list_topics(self) -> list[TopicRecord]:
        return self.inner.list_topics()

    def create_topic(self, topic: TopicRecord) -> bool:
        return self.inner.create_topic(topic)

    def update_topic(self, topic: TopicRecord, expected_version: int) -> bool:
        return self.inner.update_topic(topic, expected_version)

    def delete_topic(self, topic: TopicRecord, deleted_ms: int) -> bool:
        self.injector.check(FailPoint.BEFORE_TOPIC_DELETE)
        if self.on_delete is not None:
            self.on_delete(topic)
        deleted = self.inner.delete_topic(topic, deleted_ms)
        self.injector.check(FailPoint.AFTER_TOPIC_DELETE)
        return deleted

    def mark_deleted_topic(self, topic: TopicRecord, deleted_ms: int) -> None:
        self.inner.mark_deleted_topic(topic, deleted_ms)
        self.injector.check(FailPoint.AFTER_TOPIC_MARK)

    def deleted_topics(self) -> list[TopicRecord]:
        return self.inner.deleted_topics()

    def forget_deleted_topic(self, topic_id: str) -> None:
        self.inner.forget_deleted_topic(topic_id)

    def register_producer(self, record: ProducerIdRecord) -> bool:
        return self.inner.register_producer(record)

    def get_producer(self, producer_id: int) -> ProducerIdRecord | None:
        return self.inner.get_producer(producer_id)

    def refresh_producer(self, producer_id: int, principal: str, refreshed_ms: int) -> bool:
        return self.inner.refresh_producer(producer_id, principal, refreshed_ms)

    def list_acls(self) -> list[AclEntry]:
        return self.inner.list_acls()

    def add_acl(self, entry: AclEntry) -> None:
        self.inner.add_acl(entry)

    def remove_acl(self, entry: AclEntry) -> bool:
        return self.inner.remove_acl(entry)

    def create_subscription(self, subscription: Subscription) -> bool:
        return self.inner.create_subscription(subscription)

    def get_subscription(self, topic: str, name: str) -> Subscription | None:
        return self.inner.get_subscription(topic, name)

    def list_subscriptions(self, topic: str) -> list[Subscription]:
        return self.inner.list_subscriptions(topic)

    def delete_subscription(self, topic: str, name: str) -> bool:
        return self.inner.delete_subscription(topic, name)


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

    def delete_group(self, group: str) -> None:
        self.inner.delete_group(group)

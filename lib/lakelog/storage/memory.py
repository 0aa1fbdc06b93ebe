"""In-memory adapters of every storage port: one deployment held in one process.

`MemoryStorage` holds what the bucket and both tables would hold; its stores
(`MemoryStorage.stores`) are the adapters. Several engines built on the stores of one
`MemoryStorage` share its state, as Lambda containers share S3 and DynamoDB.

They behave as the S3 and DynamoDB adapters do in everything the engine relies on
(``tests/contract/`` runs the same tests on both):

- every request takes effect atomically: one lock guards the whole state and each method
  holds it from its first read to its last write, as DynamoDB applies one request (and
  one transaction as a whole) in isolation;
- reads are strongly consistent: they see every write that returned;
- conditional writes check their conditions against the current state and apply all or
  nothing: a refused chain put raises `ChainConflict` with what it found, a refused
  commit `lakelog.errors.LeaseFencedError`, an offset reset is applied per offsets item
  (`lakelog.storage.rules.offsets_items`) with the same partial outcome;
- a transaction naming one item twice is refused, as DynamoDB refuses it, and so is an
  item that would pass DynamoDB's 400 KB item size
  (`lakelog.storage.attributes.item_too_large`), before anything is applied;
- ledger items (`MemoryLedgerStore`) are kept in DynamoDB's attribute form and decoded
  on every read, so their packing, format version and whole-second expiry read back as
  from DynamoDB; an idempotent chain put checks the chain and the producer condition
  (`lakelog.storage.rules.producer_condition_holds`) before writing either;
- records are copied in and out (topic configs go through the same JSON as in the
  catalog), so a caller never shares state with the store;
- objects carry their size and a ``last_modified_ms`` from the injectable clock, and
  ranged GETs fail as S3's do (`lakelog.storage.rules.missing_object`, ``short_read``).

No failure of the service itself is modelled (throttling, conflicts with transactions in
flight, lost replies): `lakelog.storage.faults` injects those around any store.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from lakelog.errors import UnavailableError
from lakelog.log.records import (
    ChainItem,
    ChainMeta,
    Entry,
    ProducerUpdate,
    TopicProducerState,
)
from lakelog.storage.attributes import (
    Item,
    chain_item_from_item,
    chain_item_to_item,
    check_item_size,
    entry_from_item,
    entry_to_item,
    meta_from_item,
    meta_to_item,
    producer_from_item,
    producer_item,
)
from lakelog.storage.keys import (
    HEAD_SK,
    acl_sort_key,
    chain_pk,
    l1_entries_pk,
    member_sort_key,
    producer_state_pk,
    subscription_pk,
)
from lakelog.storage.ports import (
    AclEntry,
    ChainConflict,
    GroupState,
    LeaseRecord,
    MemberRecord,
    ObjectInfo,
    ProducerIdRecord,
    TopicRecord,
)
from lakelog.storage.rules import (
    at_seen_epoch,
    commit_needed,
    decode_config,
    encode_config,
    fenced,
    missing_object,
    offsets_items,
    owned_at,
    producer_condition_holds,
    short_read,
    taken,
)
from lakelog.storage.subscriptions import subscription_from_item, subscription_item

if TYPE_CHECKING:
    from lakelog.types import OffsetCommit, Subscription

__all__ = [
    "MemoryCatalogStore",
    "MemoryGroupStore",
    "MemoryLedgerStore",
    "MemoryObjectStore",
    "MemoryStorage",
]


def _lease_key(topic: str, partition: int) -> str:
    """Where the memory store keeps a lease: sorts in topic and partition order, before
    the members' keys (``m#...``). The DynamoDB store keeps a topic's leases in offsets
    items of 100 partitions; the port does not show the difference."""
    return f"l#{topic}#{partition:05d}"


def _wall_ms() -> int:
    return int(time.time() * 1000)


def _check_distinct(keys: Sequence[object]) -> None:
    """Refuse a transaction that names one item twice, as DynamoDB does."""
    if len(set(keys)) != len(keys):
        raise UnavailableError(
            "storage refused the request: ValidationException "
            "Transaction request cannot include multiple operations on one item"
        )


def _stored_topic(topic: TopicRecord, deleted_ms: int | None = None) -> TopicRecord:
    """``topic`` as the catalog keeps it: config through JSON, ``deleted_ms`` on markers only."""
    return replace(topic, config=decode_config(encode_config(topic.config)), deleted_ms=deleted_ms)


def _copy_topic(topic: TopicRecord) -> TopicRecord:
    return _stored_topic(topic, topic.deleted_ms)


@dataclass
class _ItemRun:
    """The ledger items of one partition key, as DynamoDB keeps them (attribute values)."""

    items: dict[int, Item] = field(default_factory=dict)
    sort_keys: list[int] = field(default_factory=list)
    """``items``' sort keys, sorted."""

    def put(self, item: Item) -> None:
        sk = int(item["sk"]["N"])
        if sk not in self.items:
            bisect.insort(self.sort_keys, sk)
        self.items[sk] = item

    def delete(self, sk: int) -> None:
        if self.items.pop(sk, None) is not None:
            self.sort_keys.remove(sk)

    def from_key(self, sk: int, limit: int | None = None) -> list[Item]:
        """Items with sort key >= ``sk`` in key order, at most ``limit`` of them."""
        start = bisect.bisect_left(self.sort_keys, sk)
        end = None if limit is None else start + limit
        return [self.items[key] for key in self.sort_keys[start:end]]

    def last(self, count: int) -> list[Item]:
        """The last ``count`` items, last first (a reverse query)."""
        return [self.items[key] for key in reversed(self.sort_keys[-count:])]


class MemoryStorage:
    """The bucket and tables of one deployment, in memory, behind one lock.

    Parameters
    ----------
    clock_ms
        Gives each object's ``last_modified_ms`` when it is put (wall time by default).
    """

    def __init__(self, clock_ms: Callable[[], int] = _wall_ms) -> None:
        self.lock = threading.RLock()
        self.clock_ms = clock_ms
        self.objects: dict[str, tuple[bytes, int]] = {}
        self.ledger_items: dict[str, _ItemRun] = {}
        """Ledger items (chains, meta items, producer states) by partition key."""
        self.topics: dict[str, TopicRecord] = {}
        self.deleted_topics: dict[str, TopicRecord] = {}
        self.producers: dict[int, ProducerIdRecord] = {}
        self.acls: dict[str, AclEntry] = {}
        self.groups: dict[str, dict[str, MemberRecord | LeaseRecord]] = {}
        self.subscriptions: dict[str, dict[str, Item]] = {}
        """Subscription items (in DynamoDB's attribute form) by partition key and name."""

    def stores(
        self,
    ) -> tuple[MemoryObjectStore, MemoryLedgerStore, MemoryCatalogStore, MemoryGroupStore]:
        """An object store, ledger, catalog and group store on this state (Engine's order)."""
        return (
            MemoryObjectStore(self),
            MemoryLedgerStore(self),
            MemoryCatalogStore(self),
            MemoryGroupStore(self),
        )


class MemoryObjectStore:
    """The `ObjectStore` port on a `MemoryStorage`: S3 semantics, strongly consistent."""

    def __init__(self, storage: MemoryStorage) -> None:
        self._s = storage

    def put(self, key: str, body: bytes) -> None:
        with self._s.lock:
            self._s.objects[key] = (bytes(body), self._s.clock_ms())

    def get_range(self, key: str, start: int, end: int) -> bytes:
        with self._s.lock:
            stored = self._s.objects.get(key)
        if stored is None:
            raise missing_object(key, "NoSuchKey")
        body = stored[0]
        if start >= end:
            data = body  # S3 ignores a range whose last byte precedes its first
        elif start >= len(body):
            raise missing_object(key, "InvalidRange")
        else:
            data = body[start:end]
        if len(data) != end - start:
            raise short_read(key, start, end, len(data))
        return data

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        with self._s.lock:
            listing = [
                ObjectInfo(key=key, size=len(body), last_modified_ms=modified)
                for key, (body, modified) in self._s.objects.items()
                if key.startswith(prefix)
            ]
        # S3 lists keys in UTF-8 byte order.
        yield from sorted(listing, key=lambda info: info.key.encode())

    def delete(self, keys: Sequence[str]) -> None:
        with self._s.lock:
            for key in keys:
                self._s.objects.pop(key, None)


class MemoryLedgerStore:
    """The `LedgerStore` port on a `MemoryStorage`: items kept as DynamoDB keeps them.

    Items are stored in their DynamoDB attribute form (`lakelog.storage.attributes`) and
    decoded on every read, so versions, packing and whole-second expiry read back exactly
    as from DynamoDB, and a write is sized as DynamoDB sizes it.
    """

    def __init__(self, storage: MemoryStorage) -> None:
        self._s = storage

    def _run(self, pk: str) -> _ItemRun:
        return self._s.ledger_items.get(pk) or _ItemRun()

    def _get(self, pk: str, sk: int) -> Item | None:
        return self._run(pk).items.get(sk)

    def _put(self, item: Item) -> None:
        self._s.ledger_items.setdefault(item["pk"]["S"], _ItemRun()).put(item)

    def create_chain(self, topic_id: str, meta: ChainMeta, genesis: ChainItem) -> None:
        pk = chain_pk(topic_id)
        with self._s.lock:
            if self._get(pk, HEAD_SK) is None:
                self._put(meta_to_item(pk, meta))
            if self._get(pk, genesis.seq) is None:
                self._put(chain_item_to_item(pk, genesis))

    def read_tail(self, topic_id: str) -> tuple[ChainItem, ChainMeta] | None:
        with self._s.lock:
            # As one reverse query of two items: the meta item sorts after every chain item.
            items = self._run(chain_pk(topic_id)).last(2)
        if len(items) < 2 or int(items[0]["sk"]["N"]) != HEAD_SK:
            return None
        return chain_item_from_item(items[1]), meta_from_item(items[0])

    def read_meta(self, topic_id: str) -> ChainMeta | None:
        with self._s.lock:
            item = self._get(chain_pk(topic_id), HEAD_SK)
        return None if item is None else meta_from_item(item)

    def put_item(
        self, topic_id: str, item: ChainItem, producer: ProducerUpdate | None = None
    ) -> None:
        pk = chain_pk(topic_id)
        attrs = chain_item_to_item(pk, item)
        check_item_size(attrs, "chain put")
        # Both items are encoded before anything is checked or written: all or nothing.
        writes = [attrs]
        stored: TopicProducerState | None = None
        producer_failed = False
        with self._s.lock:
            taken_item = self._get(pk, item.seq)
            if producer is not None:
                writes.append(producer_item(topic_id, producer.state))
                current = self._get(writes[-1]["pk"]["S"], 0)
                stored = None if current is None else producer_from_item(current)
                producer_failed = not producer_condition_holds(stored, producer)
            if taken_item is not None or producer_failed:
                raise ChainConflict(
                    None if taken_item is None else chain_item_from_item(taken_item),
                    producer_failed=producer_failed,
                    producer=stored if producer_failed else None,
                )
            for write in writes:
                self._put(write)

    def get_item(self, topic_id: str, seq: int) -> ChainItem | None:
        with self._s.lock:
            item = self._get(chain_pk(topic_id), seq)
        return None if item is None else chain_item_from_item(item)

    def query(
        self, topic_id: str, from_seq: int, limit: int
    ) -> tuple[list[ChainItem], ChainMeta | None]:
        with self._s.lock:
            # As one DynamoDB query of limit + 1 items, the meta item sorting last.
            items = self._run(chain_pk(topic_id)).from_key(from_seq, limit + 1)
        meta = None
        chain: list[ChainItem] = []
        for item in items:
            if int(item["sk"]["N"]) == HEAD_SK:
                meta = meta_from_item(item)
            else:
                chain.append(chain_item_from_item(item))
        return chain[:limit], meta

    def chain(self, topic_id: str) -> Iterator[ChainItem]:
        with self._s.lock:
            items = self._run(chain_pk(topic_id)).from_key(0)
        for item in items:
            if int(item["sk"]["N"]) != HEAD_SK:
                yield chain_item_from_item(item)

    def update_meta(self, topic_id: str, meta: ChainMeta, expected_version: int) -> bool:
        pk = chain_pk(topic_id)
        with self._s.lock:
            current = self._get(pk, HEAD_SK)
            if current is None or int(current["ver"]["N"]) != expected_version:
                return False
            self._put(meta_to_item(pk, meta, expected_version + 1))
            return True

    def read_producer(self, topic_id: str, producer_id: int) -> TopicProducerState | None:
        with self._s.lock:
            item = self._get(producer_state_pk(topic_id, producer_id), 0)
        return None if item is None else producer_from_item(item)

    def delete_chain(self, topic_id: str) -> None:
        with self._s.lock:
            self._s.ledger_items.pop(chain_pk(topic_id), None)

    def _delete(self, pk: str, sort_keys: Sequence[int]) -> None:
        with self._s.lock:
            run = self._s.ledger_items.get(pk)
            for sk in sort_keys:
                if run is not None:
                    run.delete(sk)

    def delete_items(self, topic_id: str, seqs: Sequence[int]) -> None:
        self._delete(chain_pk(topic_id), [seq for seq in seqs if seq != HEAD_SK])

    def put_entries(self, topic_id: str, partition: int, entries: Sequence[Entry]) -> None:
        pk = l1_entries_pk(topic_id, partition)
        items = [entry_to_item(pk, entry) for entry in entries]
        for item in items:
            check_item_size(item, "entry put")
        with self._s.lock:
            for item in items:
                if self._get(pk, int(item["sk"]["N"])) is None:
                    self._put(item)

    def replace_entry(
        self, topic_id: str, partition: int, entry: Entry, replaced: Sequence[Entry]
    ) -> bool:
        pk = l1_entries_pk(topic_id, partition)
        item = entry_to_item(pk, entry)
        check_item_size(item, "entry put")

        def names(sk: int, named: Entry) -> bool:
            found = self._get(pk, sk)
            return found is not None and (
                found["segment_key"]["S"] == named.segment_key
                and int(found["row_group"]["N"]) == named.row_group
            )

        with self._s.lock:
            if not (names(entry.last_offset, replaced[-1]) or names(entry.last_offset, entry)):
                return False
            self._put(item)
        for old in sorted(replaced[:-1], key=lambda e: e.last_offset, reverse=True):
            with self._s.lock:
                if names(old.last_offset, old):
                    self._s.ledger_items[pk].delete(old.last_offset)
        return True

    def query_entries(
        self, topic_id: str, partition: int, from_offset: int, limit: int
    ) -> list[Entry]:
        with self._s.lock:
            items = self._run(l1_entries_pk(topic_id, partition)).from_key(from_offset, limit)
        return [entry_from_item(item) for item in items]

    def entries(self, topic_id: str, partition: int) -> Iterator[Entry]:
        with self._s.lock:
            items = self._run(l1_entries_pk(topic_id, partition)).from_key(0)
        for item in items:
            yield entry_from_item(item)

    def delete_entries(self, topic_id: str, partition: int, last_offsets: Sequence[int]) -> None:
        self._delete(l1_entries_pk(topic_id, partition), last_offsets)


class MemoryCatalogStore:
    """The `CatalogStore` port on a `MemoryStorage`: topics, issued producer ids, ACLs."""

    def __init__(self, storage: MemoryStorage) -> None:
        self._s = storage

    def get_topic(self, name: str) -> TopicRecord | None:
        with self._s.lock:
            topic = self._s.topics.get(name)
            return None if topic is None else _copy_topic(topic)

    def list_topics(self) -> list[TopicRecord]:
        with self._s.lock:
            return [_copy_topic(self._s.topics[name]) for name in sorted(self._s.topics)]

    def create_topic(self, topic: TopicRecord) -> bool:
        with self._s.lock:
            if topic.name in self._s.topics:
                return False
            self._s.topics[topic.name] = _stored_topic(topic)
            return True

    def update_topic(self, topic: TopicRecord, expected_version: int) -> bool:
        with self._s.lock:
            current = self._s.topics.get(topic.name)
            if (
                current is None
                or current.version != expected_version
                or current.topic_id != topic.topic_id
            ):
                return False
            self._s.topics[topic.name] = _stored_topic(topic)
            return True

    def delete_topic(self, topic: TopicRecord, deleted_ms: int) -> bool:
        with self._s.lock:
            current = self._s.topics.get(topic.name)
            if (
                current is None
                or current.topic_id != topic.topic_id
                or current.version != topic.version
            ):
                return False
            del self._s.topics[topic.name]
            self._s.deleted_topics[topic.topic_id] = _stored_topic(topic, deleted_ms)
            return True

    def mark_deleted_topic(self, topic: TopicRecord, deleted_ms: int) -> None:
        with self._s.lock:
            self._s.deleted_topics[topic.topic_id] = _stored_topic(topic, deleted_ms)

    def deleted_topics(self) -> list[TopicRecord]:
        with self._s.lock:
            marked = self._s.deleted_topics
            return [_copy_topic(marked[topic_id]) for topic_id in sorted(marked)]

    def forget_deleted_topic(self, topic_id: str) -> None:
        with self._s.lock:
            self._s.deleted_topics.pop(topic_id, None)

    def register_producer(self, record: ProducerIdRecord) -> bool:
        with self._s.lock:
            if record.producer_id in self._s.producers:
                return False
            self._s.producers[record.producer_id] = record
            return True

    def get_producer(self, producer_id: int) -> ProducerIdRecord | None:
        with self._s.lock:
            return self._s.producers.get(producer_id)

    def refresh_producer(self, producer_id: int, principal: str, refreshed_ms: int) -> bool:
        with self._s.lock:
            record = self._s.producers.get(producer_id)
            if record is None or record.principal != principal:
                return False
            self._s.producers[producer_id] = replace(record, refreshed_ms=refreshed_ms)
            return True

    def list_acls(self) -> list[AclEntry]:
        with self._s.lock:
            return [self._s.acls[key] for key in sorted(self._s.acls)]

    def add_acl(self, entry: AclEntry) -> None:
        key = acl_sort_key(entry.topic, entry.effect, entry.principal)
        with self._s.lock:
            current = self._s.acls.get(key)
            operations = entry.operations | (current.operations if current else frozenset())
            self._s.acls[key] = replace(entry, operations=frozenset(operations))

    def remove_acl(self, entry: AclEntry) -> bool:
        key = acl_sort_key(entry.topic, entry.effect, entry.principal)
        with self._s.lock:
            current = self._s.acls.get(key)
            if current is None:
                return False
            remaining = current.operations - entry.operations
            if remaining:
                self._s.acls[key] = replace(current, operations=remaining)
            else:
                del self._s.acls[key]
            return bool(current.operations & entry.operations)

    def create_subscription(self, subscription: Subscription) -> bool:
        item = subscription_item(subscription)
        with self._s.lock:
            stored = self._s.subscriptions.setdefault(item["pk"]["S"], {})
            if subscription.name in stored:
                return False
            stored[subscription.name] = item
            return True

    def get_subscription(self, topic: str, name: str) -> Subscription | None:
        with self._s.lock:
            item = self._s.subscriptions.get(subscription_pk(topic), {}).get(name)
        return None if item is None else subscription_from_item(item)

    def list_subscriptions(self, topic: str) -> list[Subscription]:
        with self._s.lock:
            stored = dict(self._s.subscriptions.get(subscription_pk(topic), {}))
        return [subscription_from_item(stored[name]) for name in sorted(stored)]

    def delete_subscription(self, topic: str, name: str) -> bool:
        with self._s.lock:
            return self._s.subscriptions.get(subscription_pk(topic), {}).pop(name, None) is not None


class MemoryGroupStore:
    """The `GroupStore` port on a `MemoryStorage`: leases fenced by their epoch (ADR 0009)."""

    def __init__(self, storage: MemoryStorage) -> None:
        self._s = storage

    def _items(self, group: str) -> dict[str, MemberRecord | LeaseRecord]:
        return self._s.groups.setdefault(group, {})

    def _lease(self, group: str, topic: str, partition: int) -> LeaseRecord | None:
        item = self._s.groups.get(group, {}).get(_lease_key(topic, partition))
        return item if isinstance(item, LeaseRecord) else None

    def _put_lease(self, group: str, lease: LeaseRecord) -> None:
        self._items(group)[_lease_key(lease.topic, lease.partition)] = lease

    def put_member(self, group: str, member: MemberRecord) -> None:
        stored = replace(member, topics=tuple(sorted(member.topics)))
        with self._s.lock:
            self._items(group)[member_sort_key(member.member_id)] = stored

    def delete_member(self, group: str, member_id: str) -> None:
        with self._s.lock:
            self._s.groups.get(group, {}).pop(member_sort_key(member_id), None)

    def read_group(self, group: str) -> GroupState:
        with self._s.lock:
            items = sorted(self._s.groups.get(group, {}).items())
        return GroupState(
            members=tuple(item for _, item in items if isinstance(item, MemberRecord)),
            leases=tuple(item for _, item in items if isinstance(item, LeaseRecord)),
        )

    def take_lease(
        self, group: str, seen: LeaseRecord, owner: str, topic_id: str
    ) -> LeaseRecord | None:
        with self._s.lock:
            current = self._lease(group, seen.topic, seen.partition)
            if not at_seen_epoch(current, seen):
                return None
            lease = taken(current, seen, owner, topic_id)
            self._put_lease(group, lease)
            return lease

    def give_up_lease(self, group: str, seen: LeaseRecord) -> bool:
        if seen.owner is None:
            return False
        with self._s.lock:
            current = self._lease(group, seen.topic, seen.partition)
            if current is None or not owned_at(current, seen.owner, seen.lease_epoch):
                return False
            self._put_lease(group, replace(current, owner=None, lease_epoch=seen.lease_epoch + 1))
            return True

    def commit(
        self, group: str, member_id: str, offsets: Sequence[OffsetCommit], committed_ms: int
    ) -> None:
        if not commit_needed(offsets):
            return
        _check_distinct([(commit.topic, commit.partition) for commit in offsets])
        with self._s.lock:
            current = [self._lease(group, c.topic, c.partition) for c in offsets]
            failed = [
                not owned_at(lease, member_id, commit.lease_epoch)
                for lease, commit in zip(current, offsets, strict=True)
            ]
            if any(failed):
                raise fenced(group, member_id, offsets, failed)
            for lease, commit in zip(current, offsets, strict=True):
                assert lease is not None
                self._put_lease(
                    group, replace(lease, committed_offset=commit.offset, committed_ms=committed_ms)
                )

    def delete_group(self, group: str) -> None:
        with self._s.lock:
            self._s.groups.pop(group, None)

    def reset_leases(self, group: str, resets: Sequence[tuple[LeaseRecord, LeaseRecord]]) -> bool:
        for chunk in offsets_items(resets, lambda pair: (pair[1].topic, pair[1].partition)):
            _check_distinct([(new.topic, new.partition) for _, new in chunk])
            with self._s.lock:
                if not all(
                    at_seen_epoch(self._lease(group, new.topic, new.partition), seen)
                    for seen, new in chunk
                ):
                    return False
                for _, new in chunk:
                    self._put_lease(group, new)
        return True

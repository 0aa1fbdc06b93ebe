"""Ports: the few primitive operations the engine needs from object storage and the ledger.

Adapters implement them on injected boto3 clients (`lakelog.storage.s3`,
`lakelog.storage.dynamodb`, `lakelog.storage.groups`) and in memory
(`lakelog.storage.memory`); `lakelog.storage.faults` wraps any of them with fail points.
What a backend must do is stated once, as tests every backend passes: ``tests/contract/``.
The rules the backends share (chunking, lease changes, error shapes) are in
`lakelog.storage.rules`.
The ledger's records (chain items, meta items, producer states) are defined in
`lakelog.log.records` (ADR 0012); the catalog's records are below; `lakelog.storage.keys`
says where each is stored.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    from lakelog.log.records import (
        ChainItem,
        ChainMeta,
        Entry,
        ProducerUpdate,
        TopicProducerState,
    )
    from lakelog.types import OffsetCommit, Subscription

__all__ = [
    "PRODUCER_ID_RETENTION_MS",
    "AclEntry",
    "CatalogStore",
    "ChainConflict",
    "GroupState",
    "GroupStore",
    "LeaseRecord",
    "LedgerStore",
    "MemberRecord",
    "ObjectInfo",
    "ObjectStore",
    "ProducerIdRecord",
    "TopicRecord",
]


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object of a listing."""

    key: str
    size: int
    last_modified_ms: int


class ChainConflict(Exception):  # noqa: N818 - a signal between ledger and adapter
    """A chain put (or its transaction) was refused; nothing was written.

    ``current`` is the item already at the seq (DynamoDB's ``ALL_OLD``, or read back by the
    adapter), None when the chain put was not what failed or the item could not be read.
    ``producer_failed`` is True when the producer item's condition failed, ``producer``
    then holds its stored state (None: absent). Both can fail at once, as DynamoDB reports
    every failed condition of a transaction: ``current`` is then set and ``producer_failed``
    True, and the item at the seq is what the caller handles first. ``retryable`` is True
    when DynamoDB reported a conflict with another transaction in flight: the same put may
    simply be sent again.
    """

    def __init__(
        self,
        current: ChainItem | None = None,
        *,
        producer_failed: bool = False,
        producer: TopicProducerState | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(
            "chain put refused: "
            + (
                "retryable conflict"
                if retryable
                else "producer state moved"
                if producer_failed
                else "seq taken"
            )
        )
        self.current = current
        self.producer_failed = producer_failed
        self.producer = producer
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class TopicRecord:
    """A topic as the catalog stores it."""

    name: str
    topic_id: str
    partitions: int
    config: dict[str, Any]
    created_ms: int
    version: int = 1
    deleted_ms: int | None = None


PRODUCER_ID_RETENTION_MS: Final = 7 * 24 * 3600 * 1000
"""How long an id stays held without use: its binding expires this long after issue or
after its last refresh, and the catalog's TTL attribute is set to then."""


@dataclass(frozen=True, slots=True)
class ProducerIdRecord:
    """An issued idempotent producer id and the principal that holds it (ADR 0004).

    The binding of an id to its principal never changes; only its expiry moves, when an
    append refreshes it (ADR 0012, 2.1). ``refreshed_ms`` None: never refreshed.
    """

    producer_id: int
    principal: str
    issued_ms: int
    epoch: int = 0
    refreshed_ms: int | None = None

    @property
    def expires_ms(self) -> int:
        """When the binding expires: `PRODUCER_ID_RETENTION_MS` after issue or the last
        refresh (the catalog's TTL may remove the item from then on)."""
        since = self.issued_ms if self.refreshed_ms is None else self.refreshed_ms
        return since + PRODUCER_ID_RETENTION_MS


@dataclass(frozen=True, slots=True)
class AclEntry:
    """One access rule: principal and topic patterns (exact, or prefix ending in ``*``)."""

    principal: str
    topic: str
    effect: str
    operations: frozenset[str]


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """A consumer group member as the catalog stores it; live while now < ``expires_ms``."""

    member_id: str
    topics: tuple[str, ...]
    session_timeout_ms: int
    expires_ms: int


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """A group's lease on one partition as the catalog stores it.

    ``lease_epoch`` moves by one at every change of owner; 0 stands for a lease that has no
    item yet (`LeaseRecord.missing`). ``owner`` is None when the lease is free;
    ``topic_id`` is the id of the topic the lease was taken on, so a lease of a deleted
    topic is told from one of the topic re-created under the same name.
    """

    topic: str
    partition: int
    topic_id: str
    lease_epoch: int
    owner: str | None = None
    committed_offset: int | None = None
    committed_ms: int | None = None

    @classmethod
    def missing(cls, topic: str, partition: int) -> LeaseRecord:
        """The lease of a partition nobody ever took: no item, epoch 0."""
        return cls(topic=topic, partition=partition, topic_id="", lease_epoch=0)


@dataclass(frozen=True, slots=True)
class GroupState:
    """Everything a group holds, read at once: members and leases, in key order."""

    members: tuple[MemberRecord, ...] = ()
    leases: tuple[LeaseRecord, ...] = ()


class ObjectStore(Protocol):
    """Immutable objects by key (S3)."""

    def put(self, key: str, body: bytes) -> None:
        """Store ``body`` under ``key``."""

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the object at ``key``."""

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``."""

    def delete(self, keys: Sequence[str]) -> None:
        """Delete ``keys``; missing keys are not an error, a key left in place is
        (`UnavailableError`)."""


class LedgerStore(Protocol):
    """Each topic's chain, meta item and producer states (DynamoDB ledger table, ADR 0012).

    Every read is strongly consistent. Items of another format version raise
    `lakelog.errors.CorruptLedgerError`.
    """

    def create_chain(self, topic_id: str, meta: ChainMeta, genesis: ChainItem) -> None:
        """Put the meta item, then genesis (seq 0), each only if absent (re-runnable)."""

    def read_tail(self, topic_id: str) -> tuple[ChainItem, ChainMeta] | None:
        """The last chain item and the meta item, in one reverse query; None without meta
        (or without any chain item: a creation that stopped before genesis)."""

    def read_meta(self, topic_id: str) -> ChainMeta | None:
        """The meta item, or None."""

    def put_item(
        self, topic_id: str, item: ChainItem, producer: ProducerUpdate | None = None
    ) -> None:
        """Put ``item`` at ``item.seq`` only if that seq is free, with ``producer``'s
        conditional update in the same transaction when given; all or nothing.

        Raises `ChainConflict` when a condition failed (nothing written), and
        `lakelog.errors.ThrottledError` when throttled.
        """

    def get_item(self, topic_id: str, seq: int) -> ChainItem | None:
        """The chain item at ``seq``, or None."""

    def query(
        self, topic_id: str, from_seq: int, limit: int
    ) -> tuple[list[ChainItem], ChainMeta | None]:
        """Up to ``limit`` chain items with seq >= ``from_seq``, in seq order; the meta
        item too when the query reached the end of the chain."""

    def chain(self, topic_id: str) -> Iterator[ChainItem]:
        """Every chain item of a topic, in seq order (gc's references)."""

    def update_meta(self, topic_id: str, meta: ChainMeta, expected_version: int) -> bool:
        """Replace the meta item (its version becomes ``expected_version + 1``) if its
        version is still ``expected_version``; False if not or if it is missing."""

    def read_producer(self, topic_id: str, producer_id: int) -> TopicProducerState | None:
        """The producer's stored state in the topic (expired ones included), or None."""

    def delete_chain(self, topic_id: str) -> None:
        """Delete every chain item of a topic, the meta item last. Idempotent."""

    def delete_items(self, topic_id: str, seqs: Sequence[int]) -> None:
        """Delete the chain items at ``seqs`` (never the meta item); missing ones are not
        an error. For items below the meta's chain start only (ADR 0012, 1.7)."""

    def put_entries(self, topic_id: str, partition: int, entries: Sequence[Entry]) -> None:
        """Put each L1 entry of ``partition`` at its ``last_offset`` only if that key is
        free; an entry already there is left as it is (a rerun after a crash)."""

    def replace_entry(
        self, topic_id: str, partition: int, entry: Entry, replaced: Sequence[Entry]
    ) -> bool:
        """Key compaction's replacement of ``replaced`` (entries of ``partition`` in offset
        order, the last ending at ``entry.last_offset``) by ``entry`` (ADR 0013, 6).

        Puts ``entry`` at its ``last_offset`` only if the item there still names the
        segment and row group of ``replaced[-1]``, or already names ``entry``'s (a rerun);
        then deletes each other entry of ``replaced``, highest offset first, each only if
        its item still names its segment and row group. False, and nothing written, when
        the put's condition fails.
        """

    def query_entries(
        self, topic_id: str, partition: int, from_offset: int, limit: int
    ) -> list[Entry]:
        """Up to ``limit`` L1 entries of ``partition`` with ``last_offset >= from_offset``,
        in offset order (``Query pk AND sk >= offset``)."""

    def entries(self, topic_id: str, partition: int) -> Iterator[Entry]:
        """Every L1 entry of ``partition``, in offset order (gc's references)."""

    def delete_entries(self, topic_id: str, partition: int, last_offsets: Sequence[int]) -> None:
        """Delete the L1 entries of ``partition`` at ``last_offsets``; missing ones are not
        an error."""


class CatalogStore(Protocol):
    """Topics, issued producer ids, access rules and subscriptions (DynamoDB catalog table)."""

    def get_topic(self, name: str) -> TopicRecord | None:
        """The topic named ``name`` (strongly consistent), or None."""

    def list_topics(self) -> list[TopicRecord]:
        """Every topic, by name."""

    def create_topic(self, topic: TopicRecord) -> bool:
        """Store ``topic`` unless one of that name exists; False if it did."""

    def update_topic(self, topic: TopicRecord, expected_version: int) -> bool:
        """Replace the topic if its version is still ``expected_version``; False if not."""

    def delete_topic(self, topic: TopicRecord, deleted_ms: int) -> bool:
        """Remove ``topic`` (marking its id for gc) if it still has its id and version.

        The item goes and the marker appears in one transaction; False (and nothing
        changed) when the stored topic is missing or has another id or version.
        """

    def mark_deleted_topic(self, topic: TopicRecord, deleted_ms: int) -> None:
        """Put the deleted-topic marker of ``topic`` ahead of its deletion; the topic stays.

        Overwrites a marker of the same id. gc completes (or, if nothing was closed yet,
        forgets) a deletion that stopped before `delete_topic` removed the topic.
        """

    def deleted_topics(self) -> list[TopicRecord]:
        """Markers of deleted topics (or of deletions begun) that gc has not removed yet."""

    def forget_deleted_topic(self, topic_id: str) -> None:
        """Drop the gc marker of a deleted topic once its storage is gone."""

    def register_producer(self, record: ProducerIdRecord) -> bool:
        """Store ``record`` unless its producer id exists; False if it did."""

    def get_producer(self, producer_id: int) -> ProducerIdRecord | None:
        """The issued producer id ``producer_id`` (strongly consistent), or None."""

    def refresh_producer(self, producer_id: int, principal: str, refreshed_ms: int) -> bool:
        """Move the binding's expiry (and TTL) to `PRODUCER_ID_RETENTION_MS` after
        ``refreshed_ms``, if the id exists and is held by ``principal``; False if not."""

    def list_acls(self) -> list[AclEntry]:
        """Every access rule."""

    def add_acl(self, entry: AclEntry) -> None:
        """Add ``entry``'s operations to the rule with its principal, topic and effect."""

    def remove_acl(self, entry: AclEntry) -> bool:
        """Remove ``entry``'s operations from its rule (the rule goes when empty).

        False if no such rule existed."""

    def create_subscription(self, subscription: Subscription) -> bool:
        """Store ``subscription`` unless its topic has one of that name; False if it did."""

    def get_subscription(self, topic: str, name: str) -> Subscription | None:
        """The subscription ``name`` of ``topic`` (strongly consistent), or None."""

    def list_subscriptions(self, topic: str) -> list[Subscription]:
        """Every subscription of ``topic``, by name (strongly consistent)."""

    def delete_subscription(self, topic: str, name: str) -> bool:
        """Remove the subscription ``name`` of ``topic``; False if there was none."""


class GroupStore(Protocol):
    """Consumer group members and leases (DynamoDB catalog table, one key per group).

    Every change of a lease's owner is conditional on the epoch read and moves it, so a
    member can commit only while nobody else took its lease since it got it (ADR 0009).
    """

    def put_member(self, group: str, member: MemberRecord) -> None:
        """Store (or refresh) a member's item."""

    def delete_member(self, group: str, member_id: str) -> None:
        """Remove a member's item; a missing one is not an error."""

    def read_group(self, group: str) -> GroupState:
        """Every member and lease of ``group``, read strongly."""

    def take_lease(
        self, group: str, seen: LeaseRecord, owner: str, topic_id: str
    ) -> LeaseRecord | None:
        """Make ``owner`` hold the lease ``seen`` describes, at epoch ``seen.lease_epoch + 1``.

        Applies only while the stored epoch is still ``seen.lease_epoch`` (no item for 0).
        The committed offset is kept when the lease belongs to ``topic_id`` already and
        dropped otherwise. Returns the lease as written (with the committed offset it
        holds at that instant), or None when the condition failed.
        """

    def give_up_lease(self, group: str, seen: LeaseRecord) -> bool:
        """Free the lease ``seen`` describes, moving its epoch; keep its committed offset.

        Applies only while its owner and epoch are still those of ``seen``; False if not.
        """

    def commit(
        self, group: str, member_id: str, offsets: Sequence[OffsetCommit], committed_ms: int
    ) -> None:
        """Set each lease's committed offset, all or none (at most 100 offsets), in one
        write per offsets item (one item for partitions of one topic within a block of 100).

        Each lease must be owned by ``member_id`` at the given epoch; raises
        `lakelog.errors.LeaseFencedError` (and changes nothing) when one is not.
        """

    def reset_leases(self, group: str, resets: Sequence[tuple[LeaseRecord, LeaseRecord]]) -> bool:
        """Replace each ``seen`` lease by its ``new`` one while its epoch is still seen's.

        Written per offsets item (the leases of one topic's partitions ``100 * b`` to
        ``100 * b + 99``), each all or nothing, in the order of ``resets``; False when a
        condition failed (the items before it are written, that one and the later ones
        are not).
        """

    def delete_group(self, group: str) -> None:
        """Remove every item of ``group``: members, leases and committed offsets. A
        missing group is not an error."""

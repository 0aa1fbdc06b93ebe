"""Every S3 key and ledger key lakelog persists is built here, and only here.

Formats (never change one silently: data written under the old format would vanish)

S3 bucket
    ``segments/{topic_id}/L0/{created_ms:013d}-{uuid}.parquet``
        A flush segment: one append request's records, one row group per partition.
        ``created_ms`` leads so that gc can tell an object's age from its key and a listing
        comes back oldest first. Offsets are not inside L0 objects: an entry's
        ``base_offset`` plus the row index gives them.
    ``segments/{topic_id}/L1/{partition}/{base_offset:020d}-{uuid}.parquet``
        A merged segment of one partition (the compactor's, ADR 0012 1.7): consecutive
        records of the partition from ``base_offset``, in several row groups, each named
        by one L1 entry. Its rows carry their ``offset`` (`lakelog.log.codec`, level L1).
    ``segments/{topic_id}/``
        Everything a topic ever stored; deleting a topic hands this prefix to gc.

Ledger table (``pk`` string, ``sk`` number; format 2, ADR 0012)
    ``pk = "t#{topic_id}#0"``, ``sk = seq``
        The topic's chain: genesis (seq 0), one item per append, the deletion seal last.
    ``pk = "t#{topic_id}#0"``, ``sk = HEAD_SK``
        The topic's meta item: log start offsets, L1 ends, chain start, seal time. Sorted
        after every chain item, so a query from a seq that reaches the end of the chain
        returns the meta item too.
    ``pk = "pr#{topic_id}#{producer_id}"``, ``sk = 0``
        An idempotent producer's state in one topic (epoch, last sequence, last requests);
        ``expires_at`` is the table's TTL attribute.
    ``pk = "p#{topic_id}#{partition}"``, ``sk = last_offset``
        The compactor's L1 entries (ADR 0012 1.1 and 1.7): one
        `lakelog.log.records.Entry` per row group of a partition's L1 segments, put only
        if absent, read with ``Query pk AND sk >= offset`` for offsets below the
        partition's L1 end (the meta item's ``l1``). Key compaction replaces them
        conditionally (ADR 0013 §6): an entry then may hold fewer rows than offsets, or
        none (``row_count`` 0, no segment).

Catalog table (``pk`` string, ``sk`` string)
    ``pk = "topic"``, ``sk = {topic name}``
        A topic: its id (a uuid), partition count, config and version.
    ``pk = "deleted-topic"``, ``sk = {topic_id}``
        A deleted topic whose ledger items and segments gc still has to remove, or one
        whose deletion has begun (the ``topic`` item still exists).
    ``pk = "producer#{producer_id}"``, ``sk = "producer"``
        An issued idempotent producer id (decimal, 1 to 2**63 - 1, drawn at random): the
        principal holding it, ``issued_ms``, ``epoch`` and the TTL attribute
        (``expires_at``, 7 days after issue). Put only if absent, never changed; one
        partition key per id, so neither issue nor lookup has a hot key. ADR 0004.
    ``pk = "acl"``, ``sk = "{topic pattern}|{effect}|{principal pattern}"``
        An access rule and its operations (a topic pattern never contains ``|``).
    ``pk = "g#{group}"``, ``sk = "m#{member_id}"``
        A consumer group member: its topics, session timeout and session end
        (``expires_ms``, and the TTL attribute a day later). Written by each join or
        heartbeat, deleted by leave (or by TTL). ADR 0009.
    ``pk = "g#{group}"``, ``sk = "o#{topic}#{block:03d}"``
        The group's offsets item of partitions ``100 * block`` to ``100 * block + 99`` of a
        topic: the topic id (``i``, written once) and, per partition, its lease and
        committed offset in one map attribute ``p{partition}``: fencing token ``k``
        (``"{lease_epoch}:{owner}"``, owner empty when free), ``o`` (``[committed_offset,
        committed_ms]``) and ``i`` (the lease's topic id, only when it is not the item's).
        Taken and given up by heartbeats (each moves the epoch), committed by the owner at
        its epoch (one write per item, ADR 0009 amendment 1), rewritten by offset resets.
        Group ids, member ids and topic names never contain ``#``; one ``Query pk`` reads
        the whole group.
    ``pk = "g#{group}"``, ``sk = "kafka"``
        The coordinator state of the Kafka group ``group`` (ADR 0016 §5): state,
        generation, protocol, leader, rebalance deadline, members and the version ``v``
        every write is conditional on (`lakelog.storage.kafka_groups` lays it out). Its
        sort key is neither a member's nor an offsets item's, so ADR 0009's reads skip it.
    ``pk = "kafka-group"``, ``sk = {group}``
        The listing of Kafka groups (ListGroups is one ``Query``), put with the group's
        first state item in one transaction.
    ``pk = "sub#{topic}"``, ``sk = {subscription name}``
        A subscription of a topic (ADR 0015 §1): its function, delivery options and the
        id of the topic it was created on (`lakelog.storage.subscriptions` lays the
        attributes out). Put only if absent, never changed, deleted by its deletion; one
        ``Query pk`` lists a topic's subscriptions. Topic names never contain ``#``.
    ``pk = "dispatch"``, ``sk = "{group}#{partition:05d}"``
        The delivery state of one (subscription, partition) whose delivery runs, waits
        for its batching window or retries (ADR 0015 §2): ``due_ms``, ``attempts``,
        ``woken``... Deleted when the delivery catches up, so the few items there are
        the schedule's due index: one ``Query pk = "dispatch"`` finds what is due.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Final

__all__ = [
    "CATALOG_ACL_PK",
    "CATALOG_DELETED_TOPIC_PK",
    "CATALOG_TOPIC_PK",
    "DELIVERY_STATE_PK",
    "HEAD_SK",
    "KAFKA_GROUP_LIST_PK",
    "KAFKA_GROUP_SK",
    "OFFSETS_BLOCK_PARTITIONS",
    "PRODUCER_SK",
    "RUN_GUARD_SK_PREFIX",
    "SEGMENT_ID_BYTES",
    "ResourceNames",
    "acl_sort_key",
    "chain_pk",
    "delivery_state_sort_key",
    "group_pk",
    "l0_segment_key",
    "l0_segment_key_from_id",
    "l1_entries_pk",
    "l1_segment_key",
    "member_sort_key",
    "offsets_block",
    "offsets_sort_key",
    "parse_chain_pk",
    "parse_group_sort_key",
    "producer_pk",
    "producer_state_pk",
    "run_guard_sort_key",
    "segment_created_ms",
    "subscription_pk",
    "topic_segments_prefix",
]

HEAD_SK: Final = 2**63 - 1
"""Sort key of a topic's meta item: above any seq, so it sorts after every chain item."""

CATALOG_TOPIC_PK: Final = "topic"
CATALOG_DELETED_TOPIC_PK: Final = "deleted-topic"
CATALOG_ACL_PK: Final = "acl"
DELIVERY_STATE_PK: Final = "dispatch"
PRODUCER_SK: Final = "producer"
KAFKA_GROUP_SK: Final = "kafka"
"""Sort key of a Kafka group's coordinator state, under the group's partition key."""
KAFKA_GROUP_LIST_PK: Final = "kafka-group"
"""Partition key of the listing of Kafka groups (sort key: the group id)."""


@dataclass(frozen=True, slots=True)
class ResourceNames:
    """Names of the bucket and tables of one lakelog deployment."""

    bucket: str
    ledger_table: str
    catalog_table: str

    @classmethod
    def for_prefix(cls, prefix: str) -> ResourceNames:
        """The names the CDK app and the local server give an environment's resources."""
        return cls(
            bucket=f"{prefix}-segments",
            ledger_table=f"{prefix}-ledger",
            catalog_table=f"{prefix}-catalog",
        )


def chain_pk(topic_id: str, shard: int = 0) -> str:
    """Ledger partition key of a topic's chain (ADR 0012; the shard is always 0)."""
    return f"t#{topic_id}#{shard}"


def parse_chain_pk(pk: str) -> str | None:
    """The topic id of a chain's partition key (`chain_pk`), or None for any other key
    (L1 entries ``p#``, producer states ``pr#``)."""
    head, _, shard = pk.rpartition("#")
    if not head.startswith("t#") or not shard.isdigit():
        return None
    topic_id = head.removeprefix("t#")
    return topic_id if topic_id and "#" not in topic_id else None


def l1_entries_pk(topic_id: str, partition: int) -> str:
    """Ledger partition key of the L1 entries of one partition of a topic (ADR 0012)."""
    return f"p#{topic_id}#{partition}"


def producer_state_pk(topic_id: str, producer_id: int) -> str:
    """Ledger partition key of an idempotent producer's state in one topic (ADR 0012)."""
    return f"pr#{topic_id}#{producer_id}"


def producer_pk(producer_id: int) -> str:
    """Catalog partition key of the issued producer id ``producer_id``."""
    return f"producer#{producer_id}"


def topic_segments_prefix(topic_id: str) -> str:
    """S3 prefix under which every segment of a topic lives."""
    return f"segments/{topic_id}/"


SEGMENT_ID_BYTES: Final = 24
"""Length of a ledger v2 segment id: ``created_ms`` (8 bytes big-endian) ‖ uuid (16 bytes)."""


def _l0_key(topic_id: str, created_ms: int, unique: str) -> str:
    return f"{topic_segments_prefix(topic_id)}L0/{created_ms:013d}-{unique}.parquet"


def l0_segment_key(topic_id: str, now_ms: int | None = None) -> str:
    """A fresh, never reused key for a flush segment of ``topic_id``."""
    created = int(time.time() * 1000) if now_ms is None else now_ms
    return _l0_key(topic_id, created, uuid.uuid4().hex)


def l0_segment_key_from_id(topic_id: str, segment_id: bytes) -> str:
    """The key of the L0 segment a chain item names by its 24-byte id (ADR 0012, ``g``).

    ``segment_id`` is ``created_ms`` (8 bytes big-endian) followed by a uuid's 16 bytes
    (`lakelog.log.chain.new_segment_id`); the key format is that of `l0_segment_key`.

    Raises
    ------
    ValueError
        ``segment_id`` is not 24 bytes long.
    """
    if len(segment_id) != SEGMENT_ID_BYTES:
        raise ValueError(f"a segment id is {SEGMENT_ID_BYTES} bytes, not {len(segment_id)}")
    created = int.from_bytes(segment_id[:8], "big")
    return _l0_key(topic_id, created, segment_id[8:].hex())


def l1_segment_key(topic_id: str, partition: int, base_offset: int) -> str:
    """A fresh, never reused key for a merged (L1) segment of one partition whose first
    record is at ``base_offset``."""
    return (
        f"{topic_segments_prefix(topic_id)}L1/{partition}/"
        f"{base_offset:020d}-{uuid.uuid4().hex}.parquet"
    )


def segment_created_ms(key: str) -> int | None:
    """The creation time encoded in a flush (L0) segment key, or None if the key is not
    one (an L1 key leads with an offset, not a time)."""
    if "/L0/" not in key:
        return None
    name = key.rsplit("/", 1)[-1]
    stamp = name.split("-", 1)[0]
    return int(stamp) if stamp.isdigit() else None


def acl_sort_key(topic: str, effect: str, principal: str) -> str:
    """Catalog sort key of the access rule for ``topic``, ``effect`` and ``principal``."""
    return f"{topic}|{effect}|{principal}"


def subscription_pk(topic: str) -> str:
    """Catalog partition key of every subscription of ``topic``."""
    return f"sub#{topic}"


_GROUP_PREFIX: Final = "g#"
_MEMBER_PREFIX: Final = "m#"
_OFFSETS_PREFIX: Final = "o#"

OFFSETS_BLOCK_PARTITIONS: Final = 100
"""Partitions of one topic whose leases and committed offsets share one offsets item."""


def group_pk(group: str) -> str:
    """Catalog partition key of every item of consumer group ``group``."""
    return f"{_GROUP_PREFIX}{group}"


def member_sort_key(member_id: str) -> str:
    """Catalog sort key of a group member's item."""
    return f"{_MEMBER_PREFIX}{member_id}"


def offsets_block(partition: int) -> int:
    """The block (offsets item) of a topic that holds ``partition``'s lease."""
    return partition // OFFSETS_BLOCK_PARTITIONS


def offsets_sort_key(topic: str, block: int) -> str:
    """Catalog sort key of a group's offsets item of ``block`` of ``topic``."""
    return f"{_OFFSETS_PREFIX}{topic}#{block:03d}"


def parse_group_sort_key(sk: str) -> str | tuple[str, int] | None:
    """What a group item's sort key names: a member id, an offsets item's ``(topic,
    block)``, or None (an item of another kind, such as the former per-lease items)."""
    if sk.startswith(_MEMBER_PREFIX):
        return sk.removeprefix(_MEMBER_PREFIX)
    if sk.startswith(_OFFSETS_PREFIX):
        topic, _, block = sk.removeprefix(_OFFSETS_PREFIX).rpartition("#")
        if topic and block.isdigit():
            return topic, int(block)
    return None


def delivery_state_sort_key(group: str, partition: int) -> str:
    """Catalog sort key of the delivery state of ``partition`` of a subscription's group."""
    return f"{group}#{partition:05d}"


RUN_GUARD_SK_PREFIX: Final = "run#"
"""Sort keys of the dispatcher's run guards (beside the delivery states, which are keyed by
a subscription group: ``subscription.`` never starts with it)."""


def run_guard_sort_key(run_id: str) -> str:
    """Catalog sort key of the run guard of one dispatcher run."""
    return f"{RUN_GUARD_SK_PREFIX}{run_id}"

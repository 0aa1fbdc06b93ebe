"""The ledger's records: a topic's chain items, its meta item and producer states (ADR 0012),
and the per-partition entries of the compactor's L1 segments.

They are the vocabulary of the ledger protocol (`lakelog.log.chain` plans chain items with
them) and of the storage adapters that persist them (`lakelog.storage.dynamodb`,
`lakelog.storage.memory`); `lakelog.storage.keys` says where each is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "LEDGER_FORMAT",
    "BatchRef",
    "ChainItem",
    "ChainMeta",
    "Entry",
    "PartitionMark",
    "ProducerRequest",
    "ProducerStamp",
    "ProducerUpdate",
    "TopicProducerState",
]

LEDGER_FORMAT: Final = 2
"""Format version every ledger v2 item carries (``v``); readers refuse any other (ADR 0012)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One batch of one partition: where its records live.

    The compactor's per-partition L1 entries (at ``p#{topic_id}#{partition}``) carry it
    (ADR 0012, 1.1 and 1.7); `lakelog.log.ledger.contiguous_run` reads them.
    ``max_timestamp_cum`` is the largest timestamp of this batch and every earlier one
    (monotone along the log): it serves offsets-for-times by binary search.
    """

    base_offset: int
    last_offset: int
    segment_key: str
    row_group: int
    byte_offset: int
    byte_length: int
    segment_size: int
    footer_offset: int
    min_timestamp: int
    max_timestamp: int
    max_timestamp_cum: int
    size_bytes: int
    cumulative_bytes: int = 0
    """The partition's log bytes (chain units: the sum of `BatchRef.byte_length`) up to and
    including ``last_offset``: retention by bytes moves ``bytes_below`` to it (ADR 0013, 2)."""
    row_count: int = -1
    """Rows the entry's row group holds; -1: one per offset it spans. Key compaction leaves
    gaps (fewer rows than offsets; each row carries its ``offset``); 0: every offset of
    the entry was compacted away, and it names no row group (``segment_key`` empty)."""

    @property
    def rows(self) -> int:
        """Rows its row group holds (``row_count``, or one per offset when dense)."""
        return self.record_count if self.row_count < 0 else self.row_count

    @property
    def record_count(self) -> int:
        """Offsets the batch spans."""
        return self.last_offset - self.base_offset + 1


@dataclass(frozen=True, slots=True)
class PartitionMark:
    """One partition's place in a chain item's snapshot (``h``): its state after the item."""

    high_watermark: int = 0
    cumulative_bytes: int = 0


@dataclass(frozen=True, slots=True)
class BatchRef:
    """One touched partition's batch inside a chain item (``b``), in row-group order.

    ``byte_length`` is the row group's length in the segment; ``record_bytes`` the key,
    value and header bytes of its records (what fetch budgets count).
    """

    partition: int
    record_count: int
    byte_length: int
    record_bytes: int
    max_timestamp: int


@dataclass(frozen=True, slots=True)
class ProducerStamp:
    """Which idempotent request wrote a chain item (``p``)."""

    producer_id: int
    epoch: int
    first_sequence: int
    record_count: int
    digest: bytes


@dataclass(frozen=True, slots=True)
class ChainItem:
    """One item of a topic's chain: genesis (seq 0), an append, or the deletion seal.

    ``snapshot`` holds every partition's high watermark and cumulative bytes after the item
    (partitions beyond its length are at 0); a batch's base offset is its partition's
    snapshot high watermark minus its record count. ``segment_id`` is the 24-byte id of
    the L0 segment (``created_ms`` big-endian ‖ uuid), None for genesis and seal.
    ``max_timestamp`` is the topic-wide maximum record timestamp up to this item (-1: none).
    ``partitions`` is the partition count the append routed keys with; ``sticky`` the
    partition its keyless records went to (None: no keyless record).
    """

    seq: int
    append_time_ms: int
    max_timestamp: int
    partitions: int
    snapshot: tuple[PartitionMark, ...]
    batches: tuple[BatchRef, ...] = ()
    kind: Literal["append", "genesis", "seal"] = "append"
    segment_id: bytes | None = None
    segment_size: int = 0
    footer_offset: int = 0
    sticky: int | None = None
    producer: ProducerStamp | None = None
    version: int = LEDGER_FORMAT

    def mark(self, partition: int) -> PartitionMark:
        """The snapshot of ``partition`` after this item (zeros beyond the snapshot)."""
        if 0 <= partition < len(self.snapshot):
            return self.snapshot[partition]
        return PartitionMark()

    def batch(self, partition: int) -> BatchRef | None:
        """This item's batch of ``partition``, if it touched it."""
        for batch in self.batches:
            if batch.partition == partition:
                return batch
        return None

    def base_offset(self, partition: int) -> int:
        """The first offset this item holds (or would hold) in ``partition``."""
        batch = self.batch(partition)
        count = 0 if batch is None else batch.record_count
        return self.mark(partition).high_watermark - count


@dataclass(frozen=True, slots=True)
class ChainMeta:
    """A topic's meta item (at ``HEAD_SK``): what appends never write.

    Per-partition tuples may be shorter than the partition count: missing entries are 0.
    ``sealed_ms`` is set once the topic's deletion has sealed its chain. ``version`` moves
    by one at every conditional update (the compactor's and the deletion's).
    """

    log_start: tuple[int, ...] = ()
    bytes_below: tuple[int, ...] = ()
    l1_end: tuple[int, ...] = ()
    chain_start: int = 0
    sealed_ms: int | None = None
    version: int = 0
    format_version: int = LEDGER_FORMAT
    chain_start_ms: int | None = None
    """When ``chain_start`` last moved (None: never); items below it are deleted only a
    grace period later (ADR 0013, 3.2)."""
    compacted_end: tuple[int, ...] = ()
    """Per partition, the end of the L1 region key compaction last compacted (ADR 0013,
    6): ``[log_start, compacted_end)`` is clean, ``[compacted_end, l1_end)`` dirty."""

    def log_start_offset(self, partition: int) -> int:
        """``log_start_offset`` of ``partition``."""
        return self.log_start[partition] if 0 <= partition < len(self.log_start) else 0


@dataclass(frozen=True, slots=True)
class ProducerRequest:
    """One of the last requests of a producer in a topic (``r``), newest last."""

    first_sequence: int
    record_count: int
    seq: int
    digest: bytes


@dataclass(frozen=True, slots=True)
class TopicProducerState:
    """What a topic remembers of an idempotent producer (its own ledger item)."""

    producer_id: int
    epoch: int
    last_sequence: int
    requests: tuple[ProducerRequest, ...]
    expires_ms: int


@dataclass(frozen=True, slots=True)
class ProducerUpdate:
    """The producer item's part of an idempotent append: the state to write, and the
    condition it is written under (ADR 0012, 1.3 step 7).

    ``continues`` True: the stored state must have ``state.epoch``, last sequence
    ``state.requests[-1].first_sequence - 1`` and not be expired at ``now_ms``. False (a
    first request, sequence 0): the item must be absent, of an older epoch, or expired.
    """

    state: TopicProducerState
    continues: bool
    now_ms: int

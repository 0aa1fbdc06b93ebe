"""The ledger's records: a partition's head, its batch entries, and one append's write.

They are the vocabulary of the ledger protocol (`lakelog.log.ledger` plans writes with them)
and of the storage adapters that persist them (`lakelog.storage.dynamodb`,
`lakelog.storage.memory`); `lakelog.storage.keys` says where each is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Entry", "Head", "PartitionWrite", "ProducerState"]


@dataclass(frozen=True, slots=True)
class ProducerState:
    """What a partition remembers of an idempotent producer.

    ``batches`` holds the most recent batches as
    ``(first_sequence, last_sequence, base_offset, append_time_ms)``, newest last, so a
    retried batch can be answered with its original offsets.
    """

    epoch: int
    last_sequence: int
    batches: tuple[tuple[int, int, int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Head:
    """The state of one partition (ledger item at ``HEAD_SK``)."""

    high_watermark: int = 0
    log_start_offset: int = 0
    size_bytes: int = 0
    max_timestamp: int = -1
    producers: Mapping[int, ProducerState] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Entry:
    """One batch of one partition: where its records live.

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

    @property
    def record_count(self) -> int:
        """Offsets the batch spans."""
        return self.last_offset - self.base_offset + 1


@dataclass(frozen=True, slots=True)
class PartitionWrite:
    """One partition's part of an append transaction.

    Apply only if the head's high watermark still equals ``expected_high_watermark``:
    then put ``entry`` and move the head to ``new_high_watermark``.
    """

    pk: str
    expected_high_watermark: int
    new_high_watermark: int
    new_max_timestamp: int
    entry: Entry
    producer_id: int | None = None
    producer_state: ProducerState | None = None
    expired_producers: tuple[int, ...] = ()

    def applied_to(self, head: Head) -> Head:
        """The head after this write moved ``head`` (the ledger applies exactly this).

        The high watermark and max timestamp are set, ``size_bytes`` grows by the entry's,
        the expired producers go and the writing producer's state is set.
        """
        producers = {
            pid: state for pid, state in head.producers.items() if pid not in self.expired_producers
        }
        if self.producer_id is not None and self.producer_state is not None:
            producers[self.producer_id] = self.producer_state
        return Head(
            high_watermark=self.new_high_watermark,
            log_start_offset=head.log_start_offset,
            size_bytes=head.size_bytes + self.entry.size_bytes,
            max_timestamp=self.new_max_timestamp,
            producers=producers,
        )

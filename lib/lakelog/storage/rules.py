"""What every storage backend does the same way, written once for all of them.

The DynamoDB and S3 adapters express these rules as requests (condition expressions,
ranges, transactions of at most `TRANSACTION_ITEMS`); the in-memory backend applies them
directly. Where both need the same decision or the same error, it is made here, so the
backends cannot drift apart. ``tests/contract/`` checks every backend against them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

from lakelog.errors import CorruptSegmentError, LeaseFencedError, SegmentMissingError
from lakelog.storage.keys import offsets_block
from lakelog.storage.ports import LeaseRecord

if TYPE_CHECKING:
    from lakelog.log.records import ProducerUpdate, TopicProducerState
    from lakelog.types import OffsetCommit

__all__ = [
    "TRANSACTION_ITEMS",
    "at_seen_epoch",
    "commit_needed",
    "continued_sequence",
    "decode_config",
    "encode_config",
    "fenced",
    "keeps_commit",
    "missing_object",
    "offsets_items",
    "owned_at",
    "producer_condition_holds",
    "short_read",
    "taken",
    "transaction_chunks",
]

T = TypeVar("T")

TRANSACTION_ITEMS: Final = 100
"""Items one ``TransactWriteItems`` may hold; also the most offsets one commit carries."""


def transaction_chunks(items: Sequence[T], size: int = TRANSACTION_ITEMS) -> Iterator[Sequence[T]]:
    """``items`` in consecutive runs of at most ``size``, in order."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# Objects --------------------------------------------------------------------------------


def missing_object(key: str, code: str) -> SegmentMissingError:
    """The error of a ranged GET of a missing object (``NoSuchKey``) or one starting past
    its end (``InvalidRange``)."""
    return SegmentMissingError(key, f"object missing or too short ({code})")


def short_read(key: str, start: int, end: int, got: int) -> CorruptSegmentError:
    """The error of a ranged GET that returned ``got`` bytes instead of ``end - start``."""
    return CorruptSegmentError(key, f"asked for bytes [{start}, {end}) and got {got} bytes")


# Catalog --------------------------------------------------------------------------------


def encode_config(config: dict[str, Any]) -> str:
    """A topic's config as the catalog stores it: JSON, keys sorted."""
    return json.dumps(config, sort_keys=True)


def decode_config(text: str) -> dict[str, Any]:
    """A topic's config as the catalog gives it back."""
    config: dict[str, Any] = json.loads(text)
    return config


# Groups ---------------------------------------------------------------------------------


def at_seen_epoch(current: LeaseRecord | None, seen: LeaseRecord) -> bool:
    """Whether the stored lease is still at ``seen``'s epoch (epoch 0: no lease stored)."""
    if seen.lease_epoch == 0:
        return current is None
    return current is not None and current.lease_epoch == seen.lease_epoch


def owned_at(current: LeaseRecord | None, owner: str, epoch: int) -> bool:
    """Whether the stored lease exists and is held by ``owner`` at ``epoch``."""
    return current is not None and current.owner == owner and current.lease_epoch == epoch


def keeps_commit(seen: LeaseRecord, topic_id: str) -> bool:
    """Whether taking ``seen`` for a member of ``topic_id`` keeps its committed offset:
    only when the lease was on that very topic (not one deleted and re-created)."""
    return seen.topic_id == topic_id


def taken(current: LeaseRecord | None, seen: LeaseRecord, owner: str, topic_id: str) -> LeaseRecord:
    """The lease ``owner`` holds after taking ``seen`` (whose epoch ``current`` still has)."""
    kept = current if current is not None and keeps_commit(seen, topic_id) else None
    return LeaseRecord(
        topic=seen.topic,
        partition=seen.partition,
        topic_id=topic_id,
        lease_epoch=seen.lease_epoch + 1,
        owner=owner,
        committed_offset=kept.committed_offset if kept else None,
        committed_ms=kept.committed_ms if kept else None,
    )


def offsets_items(
    partitions: Sequence[T], topic_partition: Callable[[T], tuple[str, int]]
) -> list[list[T]]:
    """``partitions`` in runs that share one offsets item (topic and block of 100), in the
    order each item first appears; ``topic_partition`` tells an element's topic and
    partition. A commit writes each run in one update, a reset applies them in turn."""
    runs: dict[tuple[str, int], list[T]] = {}
    for element in partitions:
        topic, partition = topic_partition(element)
        runs.setdefault((topic, offsets_block(partition)), []).append(element)
    return list(runs.values())


def commit_needed(offsets: Sequence[OffsetCommit]) -> bool:
    """Whether a commit of ``offsets`` writes anything (an empty one does not).

    Raises ValueError when there are more offsets than one transaction can write.
    """
    if len(offsets) > TRANSACTION_ITEMS:
        raise ValueError(f"at most {TRANSACTION_ITEMS} offsets per commit")
    return bool(offsets)


def fenced(
    group: str, member_id: str, offsets: Sequence[OffsetCommit], failed: Sequence[bool]
) -> LeaseFencedError:
    """The error of a refused commit: ``failed[i]`` tells whether ``offsets[i]``'s lease moved."""
    moved = tuple(
        (commit.topic, commit.partition)
        for commit, lost in zip(offsets, failed, strict=False)
        if lost
    )
    return LeaseFencedError(group, member_id, moved)


# Chain (ledger v2) ----------------------------------------------------------------------


def producer_condition_holds(stored: TopicProducerState | None, update: ProducerUpdate) -> bool:
    """Whether the producer item's condition of an idempotent append holds (ADR 0012, 1.3).

    ``stored`` is the state as read back (expiry in whole seconds). A continuing request
    needs the same epoch, last sequence ``first - 1`` and a state not expired at
    ``update.now_ms``; a first request needs no state, an older epoch or an expired state.
    """
    expired = stored is not None and stored.expires_ms < update.now_ms
    if update.continues:
        return (
            stored is not None
            and not expired
            and stored.epoch == update.state.epoch
            and stored.last_sequence == continued_sequence(update)
        )
    return stored is None or expired or stored.epoch < update.state.epoch


def continued_sequence(update: ProducerUpdate) -> int:
    """The last sequence a continuing request requires: its first sequence minus one.

    Raises ValueError when the update names no request.
    """
    if not update.state.requests:
        raise ValueError("a producer update names its request last in its state")
    return update.state.requests[-1].first_sequence - 1

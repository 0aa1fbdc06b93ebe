"""Exceptions of the lakelog engine; each carries the context a caller needs to react."""

from __future__ import annotations

__all__ = [
    "CorruptLedgerError",
    "CorruptSegmentError",
    "DuplicateSequenceError",
    "ForbiddenError",
    "FunctionNotAllowedError",
    "GroupNotEmptyError",
    "GroupNotFoundError",
    "InvalidRequestError",
    "LakelogError",
    "LeaseFencedError",
    "OffsetOutOfRangeError",
    "OutOfOrderSequenceError",
    "PartitionNotFoundError",
    "PayloadTooLargeError",
    "ProducerFencedError",
    "SegmentMissingError",
    "StaleTopicError",
    "SubscriptionExistsError",
    "SubscriptionNotFoundError",
    "ThrottledError",
    "TopicExistsError",
    "TopicNotFoundError",
    "UnauthorizedError",
    "UnavailableError",
    "UnknownProducerError",
]


class LakelogError(Exception):
    """Base of every error the engine raises on purpose.

    ``code`` is the stable machine-readable name the HTTP API reports.
    """

    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequestError(LakelogError):
    """The request is malformed or breaks a documented limit; nothing was changed."""

    code = "invalid_request"


class DuplicateSequenceError(InvalidRequestError):
    """An idempotent request retried after more requests of its producer than the state
    remembers (ADR 0012, 2.2): it was appended, but its offsets are no longer known
    (Kafka's DUPLICATE_SEQUENCE_NUMBER)."""


class PartitionNotFoundError(InvalidRequestError):
    """The topic has no such partition (an invalid request, as over HTTP; Kafka's
    UNKNOWN_TOPIC_OR_PARTITION)."""


class PayloadTooLargeError(InvalidRequestError):
    """A record or a request is larger than its limit."""

    code = "payload_too_large"


class TopicNotFoundError(LakelogError):
    """The topic does not exist (or was deleted)."""

    code = "topic_not_found"

    def __init__(self, topic: str) -> None:
        super().__init__(f"topic {topic!r} does not exist")
        self.topic = topic


class StaleTopicError(TopicNotFoundError):
    """The topic this process had cached was deleted (perhaps re-created under a new id)."""


class TopicExistsError(LakelogError):
    """A topic of that name already exists."""

    code = "topic_exists"

    def __init__(self, topic: str) -> None:
        super().__init__(f"topic {topic!r} already exists")
        self.topic = topic


class OffsetOutOfRangeError(LakelogError):
    """The offset lies outside ``[log_start_offset, high_watermark]``."""

    code = "offset_out_of_range"

    def __init__(
        self, topic: str, partition: int, offset: int, log_start_offset: int, high_watermark: int
    ) -> None:
        super().__init__(
            f"offset {offset} of {topic}-{partition} is out of range "
            f"[{log_start_offset}, {high_watermark}]"
        )
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.log_start_offset = log_start_offset
        self.high_watermark = high_watermark


class ProducerFencedError(LakelogError):
    """A producer with a newer epoch exists for this producer id.

    Its own code (409 ``producer_fenced``, Kafka's PRODUCER_FENCED), apart from a group
    member's `LeaseFencedError` (409 ``fenced``).
    """

    code = "producer_fenced"

    def __init__(self, producer_id: int, epoch: int, current_epoch: int) -> None:
        super().__init__(f"producer {producer_id} epoch {epoch} is fenced by epoch {current_epoch}")
        self.producer_id = producer_id
        self.epoch = epoch
        self.current_epoch = current_epoch


class OutOfOrderSequenceError(InvalidRequestError):
    """An idempotent batch's sequence does not follow the last one written; nothing was.

    Its own code (400 ``out_of_order_sequence``, Kafka's OUT_OF_ORDER_SEQUENCE_NUMBER) lets
    a producer tell it from other bad input: it starts again under a fresh producer id.
    ``partition`` is -1 for a topic's sequence (ledger v2 counts one sequence per topic,
    ADR 0012); the message then names the topic instead of a partition.
    """

    code = "out_of_order_sequence"

    def __init__(self, producer_id: int, partition: int, sequence: int, expected: int) -> None:
        where = f"partition {partition}" if partition >= 0 else "this topic"
        super().__init__(
            f"producer {producer_id} sent sequence {sequence} to {where}; expected {expected}"
        )
        self.producer_id = producer_id
        self.partition = partition
        self.sequence = sequence
        self.expected = expected


class UnknownProducerError(LakelogError):
    """The caller does not hold this producer id: never issued, issued to another
    principal, or expired; nothing was written.

    Its own code (403 ``unknown_producer``) lets a producer start again under a fresh id
    from `InitProducerId`; the reply does not tell which of the three it was.
    """

    code = "unknown_producer"

    def __init__(self, producer_id: int) -> None:
        super().__init__(
            f"producer id {producer_id} is not held by the caller; obtain one from "
            "POST /v1/producers"
        )
        self.producer_id = producer_id


class LeaseFencedError(LakelogError):
    """A commit whose member no longer holds a lease at the epoch it gave; nothing changed.

    ``partitions`` are the ``(topic, partition)`` pairs whose lease moved, when known.
    """

    code = "fenced"

    def __init__(
        self, group: str, member_id: str, partitions: tuple[tuple[str, int], ...] = ()
    ) -> None:
        moved = ", ".join(f"{topic}-{partition}" for topic, partition in partitions)
        super().__init__(
            f"member {member_id!r} of group {group!r} no longer holds the lease"
            + (f" of {moved}" if moved else "")
            + " at the epoch it gave; join again to get its current leases"
        )
        self.group = group
        self.member_id = member_id
        self.partitions = partitions


class GroupNotEmptyError(LakelogError):
    """The operation needs a group with no live member, and it has one (or one joined)."""

    code = "group_not_empty"

    def __init__(self, group: str, members: tuple[str, ...] = ()) -> None:
        names = f" ({', '.join(members)})" if members else ""
        super().__init__(f"group {group!r} has live members{names}; stop them first")
        self.group = group
        self.members = members


class GroupNotFoundError(LakelogError):
    """The group has no member and no lease."""

    code = "group_not_found"

    def __init__(self, group: str) -> None:
        super().__init__(f"group {group!r} does not exist")
        self.group = group


class CorruptSegmentError(LakelogError):
    """Segment bytes could not be decoded as the documented Parquet layout."""

    code = "corrupt_segment"

    def __init__(self, segment_key: str, reason: str) -> None:
        super().__init__(f"segment {segment_key!r} is corrupt: {reason}")
        self.segment_key = segment_key
        self.reason = reason


class ThrottledError(LakelogError):
    """Storage throttled the request; the caller may retry later."""

    code = "throttled"


class UnavailableError(LakelogError):
    """Storage failed, timed out or kept conflicting; the caller may retry.

    The outcome of a write that failed this way is unknown unless the message says
    nothing was written (an append that lost to other appends for its whole retry budget).
    """

    code = "unavailable"


class UnauthorizedError(LakelogError):
    """The request carries no principal."""

    code = "unauthorized"


class ForbiddenError(LakelogError):
    """No ACL rule allows the principal this operation on this topic (or one denies it)."""

    code = "forbidden"

    def __init__(self, principal: str, operation: str, topic: str) -> None:
        super().__init__(f"{principal} may not {operation} topic {topic!r}")
        self.principal = principal
        self.operation = operation
        self.topic = topic


class CorruptLedgerError(UnavailableError):
    """A ledger item is of another format version or cannot be decoded (ADR 0012).

    Reported as 503 ``unavailable``: the caller can do nothing about it but an operator can.
    """

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"ledger item {key} is unreadable: {reason}")
        self.key = key
        self.reason = reason


class SegmentMissingError(CorruptSegmentError):
    """A segment a ledger item named is not in the bucket (or is shorter than named).

    Reported as ``corrupt_segment``. A fetch that meets it re-plans once from the ledger:
    the compactor may have merged the items it read and gc deleted their segment since.
    """


class SubscriptionExistsError(LakelogError):
    """The topic already has a subscription of that name (409 ``subscription_exists``)."""

    code = "subscription_exists"

    def __init__(self, topic: str, name: str) -> None:
        super().__init__(f"topic {topic!r} already has a subscription {name!r}")
        self.topic = topic
        self.name = name


class SubscriptionNotFoundError(LakelogError):
    """The topic has no subscription of that name (404 ``subscription_not_found``)."""

    code = "subscription_not_found"

    def __init__(self, topic: str, name: str) -> None:
        super().__init__(f"topic {topic!r} has no subscription {name!r}")
        self.topic = topic
        self.name = name


class FunctionNotAllowedError(ForbiddenError):
    """The deployment refuses subscriptions to this function: its ARN starts with none of
    the configured prefixes (403 ``forbidden``, ADR 0015 §1)."""

    def __init__(self, principal: str, topic: str, function_arn: str) -> None:
        super().__init__(principal, "subscribe", topic)
        self.message = (
            f"{principal} may not subscribe {function_arn!r} to topic {topic!r}: this "
            "deployment allows only functions under its configured ARN prefixes"
        )
        self.args = (self.message,)
        self.function_arn = function_arn

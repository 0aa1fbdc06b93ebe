"""lakelog's errors as Kafka error codes (ADR 0016 §3): one mapping for every handler."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from lakelog import errors

__all__ = ["error_code"]

_CODES: tuple[tuple[type[errors.LakelogError], ErrorCode], ...] = (
    # Most specific first: the first class an error is an instance of decides.
    (errors.PayloadTooLargeError, ErrorCode.message_too_large),
    (errors.PartitionNotFoundError, ErrorCode.unknown_topic_or_partition),
    (errors.DuplicateSequenceError, ErrorCode.duplicate_sequence_number),
    (errors.OutOfOrderSequenceError, ErrorCode.out_of_order_sequence_number),
    (errors.InvalidRequestError, ErrorCode.invalid_request),
    (errors.TopicNotFoundError, ErrorCode.unknown_topic_or_partition),
    (errors.TopicExistsError, ErrorCode.topic_already_exists),
    (errors.OffsetOutOfRangeError, ErrorCode.offset_out_of_range),
    (errors.ProducerFencedError, ErrorCode.producer_fenced),
    (errors.UnknownProducerError, ErrorCode.unknown_producer_id),
    (errors.GroupNotEmptyError, ErrorCode.non_empty_group),
    (errors.GroupNotFoundError, ErrorCode.group_id_not_found),
    (errors.ThrottledError, ErrorCode.throttling_quota_exceeded),
    (errors.CorruptSegmentError, ErrorCode.corrupt_message),
    (errors.UnavailableError, ErrorCode.request_timed_out),
    (errors.UnauthorizedError, ErrorCode.sasl_authentication_failed),
    (errors.ForbiddenError, ErrorCode.topic_authorization_failed),
)


def error_code(error: BaseException) -> ErrorCode:
    """The Kafka error code of ``error`` (``unknown_server_error`` for anything that is
    not a lakelog error)."""
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return ErrorCode.unknown_server_error

"""The error registry: each code is one class, and a reply rebuilds the very error raised."""

from __future__ import annotations

import inspect
import json

import pytest

import lakelog.errors
from lakelog.contract.errors import ERRORS, ErrorKind, error_body, error_from_reply, status_of
from lakelog.contract.models import ErrorBody
from lakelog.errors import (
    CorruptSegmentError,
    ForbiddenError,
    GroupNotEmptyError,
    GroupNotFoundError,
    InvalidRequestError,
    LakelogError,
    LeaseFencedError,
    OffsetOutOfRangeError,
    OutOfOrderSequenceError,
    PayloadTooLargeError,
    ProducerFencedError,
    StaleTopicError,
    SubscriptionExistsError,
    SubscriptionNotFoundError,
    ThrottledError,
    TopicExistsError,
    TopicNotFoundError,
    UnauthorizedError,
    UnavailableError,
    UnknownProducerError,
)

SAMPLES: dict[type[LakelogError], LakelogError] = {
    e.__class__: e
    for e in (
        LakelogError("unexpected KeyError; see the logs"),
        InvalidRequestError("partitions must be at least 1"),
        PayloadTooLargeError("record is 2048 bytes; the limit is 1024"),
        UnauthorizedError("no caller"),
        ForbiddenError("arn:aws:iam::1:user/bob", "produce", "orders"),
        TopicNotFoundError("orders.eu"),
        GroupNotFoundError("billing"),
        TopicExistsError("orders"),
        SubscriptionExistsError("orders", "billing"),
        SubscriptionNotFoundError("orders", "audit"),
        ProducerFencedError(4242, 0, 1),
        LeaseFencedError("billing", "m-1", (("orders", 0), ("orders", 2))),
        GroupNotEmptyError("billing", ("m-1", "m-2")),
        OffsetOutOfRangeError("orders", 3, 99, 5, 9),
        OutOfOrderSequenceError(7, 1, 12, 10),
        UnknownProducerError(5_764_607_523_034_234_881),
        ThrottledError("slow down"),
        UnavailableError("append kept conflicting; nothing was written, retry later"),
        CorruptSegmentError("t/0/00000.parquet", "bad checksum"),
    )
}


def _roundtrip(error: LakelogError) -> LakelogError:
    body = json.dumps(error_body(error)).encode()
    return error_from_reply(int(status_of(error)), body)


def test_each_code_names_exactly_one_class_and_every_class_has_a_sample() -> None:
    codes = [kind.code for kind in ERRORS]
    assert len(codes) == len(set(codes))
    assert {kind.error for kind in ERRORS} == set(SAMPLES)


def test_every_domain_error_is_registered_or_refines_a_registered_one() -> None:
    registered = {kind.error for kind in ERRORS}
    for _, cls in inspect.getmembers(lakelog.errors, inspect.isclass):
        if issubclass(cls, LakelogError) and cls not in registered:
            # A refinement (StaleTopicError) is reported as the registered base it extends.
            assert cls.code == next(base for base in cls.__mro__ if base in registered).code


@pytest.mark.parametrize("kind", ERRORS, ids=lambda kind: kind.code)
def test_a_reply_rebuilds_the_same_error_with_its_fields(kind: ErrorKind) -> None:
    error = SAMPLES[kind.error]

    rebuilt = _roundtrip(error)

    assert type(rebuilt) is type(error)
    assert vars(rebuilt) == vars(error)
    assert rebuilt.args == error.args
    assert rebuilt.code == kind.code


@pytest.mark.parametrize("kind", ERRORS, ids=lambda kind: kind.code)
def test_the_fields_are_the_constructors_arguments(kind: ErrorKind) -> None:
    parameters = list(inspect.signature(kind.error.__init__).parameters)[1:]
    assert list(kind.fields) == ([] if parameters == ["message"] else parameters)
    assert set(kind.fields) <= set(ErrorBody.model_fields)


def test_fenced_is_the_lease_and_producer_fenced_the_producer() -> None:
    lease = _roundtrip(SAMPLES[LeaseFencedError])
    producer = _roundtrip(SAMPLES[ProducerFencedError])

    assert isinstance(lease, LeaseFencedError)
    assert lease.partitions == (("orders", 0), ("orders", 2))
    assert isinstance(producer, ProducerFencedError)
    assert (producer.code, producer.current_epoch) == ("producer_fenced", 1)


def test_a_refinement_is_reported_as_its_registered_base() -> None:
    body = error_body(StaleTopicError("orders"))
    assert body == {"error": "topic_not_found", "message": body["message"], "topic": "orders"}
    assert type(_roundtrip(StaleTopicError("orders"))) is TopicNotFoundError


def test_a_reply_without_the_fields_maps_by_status_and_keeps_the_code() -> None:
    reply = json.dumps({"error": "topic_not_found", "message": "gone"}).encode()
    error = error_from_reply(404, reply)
    assert type(error) is InvalidRequestError
    assert (error.code, error.message) == ("topic_not_found", "gone")


def test_the_servers_message_wins_over_the_constructors() -> None:
    body = error_body(TopicNotFoundError("orders")) | {"message": "topic 'orders' was deleted"}
    error = error_from_reply(404, json.dumps(body))
    assert isinstance(error, TopicNotFoundError)
    assert (error.topic, error.message, str(error)) == ("orders", body["message"], body["message"])


def test_unknown_codes_keep_the_servers_code() -> None:
    reply = json.dumps({"error": "not_found", "message": "no route"}).encode()
    error = error_from_reply(404, reply)
    assert isinstance(error, InvalidRequestError)
    assert error.code == "not_found"


@pytest.mark.parametrize(
    ("status", "kind"),
    [(409, InvalidRequestError), (503, UnavailableError), (500, LakelogError)],
)
def test_a_newer_servers_code_maps_by_status(status: int, kind: type[LakelogError]) -> None:
    reply = json.dumps({"error": "brand_new", "message": "m", "extra": 1}).encode()
    error = error_from_reply(status, reply)
    assert type(error) is kind
    assert error.code == "brand_new"


def test_non_json_gateway_errors_are_retryable_kinds() -> None:
    assert isinstance(error_from_reply(502, b"<html>bad gateway</html>"), UnavailableError)
    assert isinstance(error_from_reply(429, b""), ThrottledError)


def test_a_gateway_413_without_a_code_is_payload_too_large() -> None:
    error = error_from_reply(413, b'{"message":"Request Entity Too Large"}')
    assert isinstance(error, PayloadTooLargeError)

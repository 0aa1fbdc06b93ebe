"""HTTP error replies become the domain errors direct mode raises, with their fields."""

from __future__ import annotations

import json

import pytest

from lakelog.client.http import error_from_reply
from lakelog.errors import (
    GroupNotEmptyError,
    InvalidRequestError,
    LeaseFencedError,
    OffsetOutOfRangeError,
    PayloadTooLargeError,
    ProducerFencedError,
    ThrottledError,
    TopicNotFoundError,
    UnavailableError,
)


def _reply(code: str, message: str = "m", **extra: object) -> bytes:
    return json.dumps({"error": code, "message": message, **extra}).encode()


def test_topic_errors_name_the_topic_of_the_path() -> None:
    error = error_from_reply(404, _reply("topic_not_found", "gone"), "/v1/topics/orders%2Eeu")
    assert isinstance(error, TopicNotFoundError)
    assert (error.code, error.message, error.topic) == ("topic_not_found", "gone", "orders.eu")


def test_out_of_range_carries_the_offsets_and_partition() -> None:
    body = _reply("offset_out_of_range", log_start_offset=5, high_watermark=9)
    error = error_from_reply(416, body, "/v1/topics/t/partitions/3/records")
    assert isinstance(error, OffsetOutOfRangeError)
    assert (error.partition, error.log_start_offset, error.high_watermark) == (3, 5, 9)


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/v1/groups/g/offsets", LeaseFencedError), ("/v1/topics/t/records", ProducerFencedError)],
)
def test_fenced_depends_on_the_route(path: str, kind: type[Exception]) -> None:
    assert isinstance(error_from_reply(409, _reply("fenced"), path), kind)


def test_group_errors_name_the_group_and_default_the_rest() -> None:
    error = error_from_reply(409, _reply("group_not_empty"), "/v1/groups/billing/offsets/reset")
    assert isinstance(error, GroupNotEmptyError)
    assert (error.group, error.members) == ("billing", ())


def test_unknown_codes_keep_the_servers_code() -> None:
    error = error_from_reply(404, _reply("not_found", "no route"), "/v1/nowhere")
    assert isinstance(error, InvalidRequestError)
    assert error.code == "not_found"


def test_non_json_gateway_errors_are_retryable_kinds() -> None:
    assert isinstance(
        error_from_reply(502, b"<html>bad gateway</html>", "/v1/topics"), UnavailableError
    )
    assert isinstance(error_from_reply(429, b"", "/v1/topics"), ThrottledError)


def test_a_gateway_413_without_a_code_is_payload_too_large() -> None:
    error = error_from_reply(413, b'{"message":"Request Entity Too Large"}', "/v1/topics/t/records")
    assert isinstance(error, PayloadTooLargeError)

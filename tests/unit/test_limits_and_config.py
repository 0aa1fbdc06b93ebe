"""Documented limits and topic configuration: Kafka's rules, defaults and clear rejections."""

from __future__ import annotations

from typing import Any

import pytest

from lakelog.config import DEFAULT_RETENTION_MS, TopicConfig
from lakelog.errors import InvalidRequestError, LakelogError
from lakelog.limits import (
    MAX_APPEND_BYTES,
    MAX_RECORD_BYTES,
    MAX_TOPIC_NAME_LENGTH,
    validate_topic_name,
)

MIB = 1024 * 1024

# Topic names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "orders",
        "a",
        "A",
        "0",
        "...",
        ".hidden",
        "_internal",
        "-dash",
        "orders.v1_eu-west-1",
        "ABCxyz019._-",
        "x" * MAX_TOPIC_NAME_LENGTH,
    ],
)
def test_legal_topic_names_are_returned_unchanged(name: str) -> None:
    assert validate_topic_name(name) == name


def test_topic_name_limit_is_kafkas_249_characters() -> None:
    assert MAX_TOPIC_NAME_LENGTH == 249
    assert validate_topic_name("t" * 249) == "t" * 249

    with pytest.raises(InvalidRequestError, match="250 characters; the limit is 249"):
        validate_topic_name("t" * 250)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "non-empty string"),
        (".", "cannot be '.' or '..'"),
        ("..", "cannot be '.' or '..'"),
        ("has space", "may contain only"),
        (" leading", "may contain only"),
        ("trailing\n", "may contain only"),
        ("tab\there", "may contain only"),
        ("a/b", "may contain only"),
        ("a\\b", "may contain only"),
        ("a:b", "may contain only"),
        ("a*", "may contain only"),
        ("caf\u00e9", "may contain only"),
        ("\u0661\u0662", "may contain only"),  # Arabic-Indic digits are not [0-9]
        ("\uff41", "may contain only"),  # fullwidth 'a'
        ("\U0001f600", "may contain only"),
        ("nul\x00", "may contain only"),
        ("\u00e9" * 250, "250 characters"),
    ],
)
def test_illegal_topic_names_are_rejected_with_a_clear_message(name: str, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message) as caught:
        validate_topic_name(name)

    assert caught.value.code == "invalid_request"


@pytest.mark.parametrize("name", [None, 1, 1.5, b"orders", ["orders"], ("o",), {"n": 1}, True])
def test_non_string_topic_names_are_rejected(name: object) -> None:
    with pytest.raises(InvalidRequestError, match="non-empty string"):
        validate_topic_name(name)


def test_record_and_append_limits_are_the_lambda_payload_limit() -> None:
    assert MAX_APPEND_BYTES == 6 * MIB
    assert MAX_RECORD_BYTES == MAX_APPEND_BYTES


# Topic config -----------------------------------------------------------------------------


def test_topic_config_defaults_are_kafkas() -> None:
    config = TopicConfig.parse(None)

    assert config.model_dump() == {
        "retention_ms": 7 * 24 * 60 * 60 * 1000,
        "retention_bytes": -1,
        "cleanup_policy": "delete",
        "delete_retention_ms": 86_400_000,
        "max_record_bytes": 1 * MIB,
        "compression": "zstd",
    }
    assert DEFAULT_RETENTION_MS == 604_800_000
    assert TopicConfig.parse({}) == config == TopicConfig()


@pytest.mark.parametrize(
    ("raw", "field", "value"),
    [
        ({"retention_ms": -1}, "retention_ms", -1),
        ({"retention_ms": 0}, "retention_ms", 0),
        ({"retention_ms": 60_000}, "retention_ms", 60_000),
        ({"retention_bytes": -1}, "retention_bytes", -1),
        ({"retention_bytes": 10 * MIB}, "retention_bytes", 10 * MIB),
        ({"cleanup_policy": "compact"}, "cleanup_policy", "compact"),
        ({"cleanup_policy": "delete"}, "cleanup_policy", "delete"),
        ({"delete_retention_ms": 0}, "delete_retention_ms", 0),
        ({"delete_retention_ms": 3_600_000}, "delete_retention_ms", 3_600_000),
        ({"retention_ms": 2**63 - 1}, "retention_ms", 2**63 - 1),  # Kafka's LONG
        ({"retention_bytes": 2**63 - 1}, "retention_bytes", 2**63 - 1),
        ({"delete_retention_ms": 2**63 - 1}, "delete_retention_ms", 2**63 - 1),
        ({"max_record_bytes": 1}, "max_record_bytes", 1),
        ({"max_record_bytes": 6 * MIB}, "max_record_bytes", 6 * MIB),
        ({"compression": "snappy"}, "compression", "snappy"),
        ({"compression": "lz4"}, "compression", "lz4"),
        ({"compression": "none"}, "compression", "none"),
        ({"compression": "zstd"}, "compression", "zstd"),
    ],
)
def test_legal_config_values_are_accepted(raw: dict[str, Any], field: str, value: object) -> None:
    assert getattr(TopicConfig.parse(raw), field) == value


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"segment_ms": 1000}, "segment_ms: Extra inputs are not permitted"),
        ({"retention.ms": 1000}, "retention.ms"),  # Kafka's dotted spelling is not ours
        ({"cleanup_policy": "compact,delete"}, "cleanup_policy"),
        ({"cleanup_policy": "Delete"}, "cleanup_policy"),
        ({"compression": "gzip"}, "compression"),
        ({"compression": "ZSTD"}, "compression"),
        ({"compression": None}, "compression"),
        ({"retention_ms": -2}, "retention_ms: Input should be greater than or equal to -1"),
        ({"retention_bytes": -2}, "retention_bytes"),
        ({"delete_retention_ms": -1}, "delete_retention_ms: Input should be greater than or"),
        ({"delete_retention_ms": "1d"}, "delete_retention_ms"),
        ({"retention_ms": 1.5}, "retention_ms"),
        ({"retention_ms": "forever"}, "retention_ms"),
        # past Kafka's LONG (and past what a DynamoDB number holds, at 39 digits)
        ({"retention_ms": 2**63}, "retention_ms: Input should be less than or equal to"),
        ({"retention_bytes": 10**40}, "retention_bytes: Input should be less than or"),
        ({"delete_retention_ms": 2**63}, "delete_retention_ms: Input should be less than"),
        ({"max_record_bytes": 0}, "max_record_bytes"),
        ({"max_record_bytes": -1}, "max_record_bytes"),
        (
            {"max_record_bytes": 6 * MIB + 1},
            "max_record_bytes: Input should be less than or equal to 6291456",
        ),
    ],
)
def test_bad_config_is_rejected_with_a_message_naming_the_key(
    raw: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRequestError, match="invalid topic config") as caught:
        TopicConfig.parse(raw)

    assert message in caught.value.message
    assert caught.value.code == "invalid_request"


@pytest.mark.parametrize("raw", ["abc", ["x"], 5])
def test_config_that_is_not_a_mapping_is_rejected(raw: Any) -> None:
    with pytest.raises(InvalidRequestError, match="must be an object"):
        TopicConfig.parse(raw)


@pytest.mark.parametrize(
    "raw", [{"retention_ms": "1000"}, {"max_record_bytes": True}, {"retention_bytes": 1.0}]
)
def test_config_values_of_the_wrong_type_are_rejected_not_coerced(raw: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError):
        TopicConfig.parse(raw)


def test_every_bad_key_is_reported_at_once() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        TopicConfig.parse({"retention_ms": -5, "compression": "brotli", "color": "red"})

    for key in ("retention_ms", "compression", "color"):
        assert key in caught.value.message


def test_config_parse_over_a_base_merges_keys() -> None:
    # Given a topic created with two non-default settings
    base = TopicConfig.parse({"retention_ms": 1000, "compression": "snappy"})

    # When one key is altered
    altered = TopicConfig.parse({"compression": "lz4"}, base=base)

    # Then the other keeps its value
    assert altered.retention_ms == 1000
    assert altered.compression == "lz4"
    assert altered.cleanup_policy == "delete"


def test_config_parse_over_a_base_still_validates() -> None:
    base = TopicConfig.parse({"retention_ms": 1000})

    with pytest.raises(InvalidRequestError, match="max_record_bytes"):
        TopicConfig.parse({"max_record_bytes": 7 * MIB}, base=base)


def test_topic_config_is_immutable() -> None:
    config = TopicConfig()

    with pytest.raises(Exception, match="frozen"):
        config.retention_ms = 1


def test_config_errors_are_lakelog_errors_not_pydantic_errors() -> None:
    with pytest.raises(LakelogError) as caught:
        TopicConfig.parse({"retention_ms": "x"})

    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__

"""The one table between Kafka's topic config names and lakelog's (`lakelog.kafka.configs`)."""

from __future__ import annotations

import pytest

from lakelog.config import TopicConfig
from lakelog.kafka.configs import (
    CONFIGS,
    ConfigError,
    default_config,
    kafka_configs,
    lakelog_config,
)


def test_every_lakelog_setting_has_a_kafka_name() -> None:
    assert {known.key for known in CONFIGS} == set(TopicConfig.model_fields)


def test_kafka_values_become_lakelog_values() -> None:
    assert lakelog_config(
        [
            ("retention.ms", "-1"),
            ("cleanup.policy", "compact"),
            ("compression.type", "uncompressed"),
            ("max.message.bytes", " 2048 "),  # trimmed, as Kafka does
            ("retention.bytes", None),
        ]
    ) == {
        "retention_ms": -1,
        "cleanup_policy": "compact",
        "compression": "none",
        "max_record_bytes": 2048,
    }


def test_lakelog_values_read_back_under_kafka_names() -> None:
    config = TopicConfig.parse({"compression": "none", "retention_ms": 5}).model_dump()
    described = {known.name: (value, default) for known, value, default in kafka_configs(config)}
    assert described["compression.type"] == ("uncompressed", False)
    assert described["retention.ms"] == ("5", False)
    assert described["cleanup.policy"] == ("delete", True)
    assert [known.name for known, _, _ in kafka_configs(config, ["retention.ms", "x"])] == [
        "retention.ms"
    ]


@pytest.mark.parametrize(
    "pairs",
    [
        [("min.insync.replicas", "2")],
        [("retention.ms", "soon")],
        [("retention.ms", "-2")],
        [("cleanup.policy", "compact,delete")],
        [("compression.type", "gzip")],
        [("retention.ms", "1"), ("retention.ms", "2")],
        [("retention.ms", str(2**63))],
        [("retention.bytes", "1_000")],
    ],
    ids=[
        "unknown",
        "not-an-integer",
        "below-minus-one",
        "both-policies",
        "gzip",
        "twice",
        "past-64-bits",
        "underscores",
    ],
)
def test_configs_lakelog_refuses(pairs: list[tuple[str, str | None]]) -> None:
    with pytest.raises(ConfigError):
        lakelog_config(pairs)


def test_values_are_validated_over_a_base_and_reset_to_defaults() -> None:
    base = TopicConfig.parse({"cleanup_policy": "compact"}).model_dump()
    assert lakelog_config([("retention.ms", "10")], base=base) == {"retention_ms": 10}
    assert default_config(["cleanup.policy"]) == {"cleanup_policy": "delete"}
    with pytest.raises(ConfigError):
        default_config(["segment.bytes"])

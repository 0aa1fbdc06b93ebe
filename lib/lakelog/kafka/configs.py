"""Topic configs under Kafka's names (ADR 0016 §6).

lakelog's topic settings (`lakelog.config.TopicConfig`) are named after Kafka's; this module
is the one table between the two spellings and value formats, used by CreateTopics and
DescribeConfigs:

=======================  =======================  ==========================================
Kafka                    lakelog                  values
=======================  =======================  ==========================================
``retention.ms``         ``retention_ms``         milliseconds, ``-1`` forever
``retention.bytes``      ``retention_bytes``      bytes per partition, ``-1`` no limit
``cleanup.policy``       ``cleanup_policy``       ``delete`` or ``compact`` (not both)
``delete.retention.ms``  ``delete_retention_ms``  how long compaction keeps a tombstone
``max.message.bytes``    ``max_record_bytes``     largest record (Kafka: largest batch)
``compression.type``     ``compression``          ``zstd``, ``snappy``, ``lz4``,
                                                  ``uncompressed`` (lakelog's ``none``): the
                                                  codec of the topic's Parquet segments
=======================  =======================  ==========================================

Any other name is not a lakelog setting and is refused (INVALID_CONFIG), as is a value
lakelog would refuse over HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from lakelog.config import TopicConfig
from lakelog.errors import InvalidRequestError

__all__ = [
    "CONFIGS",
    "DEFAULT_CONFIG",
    "DYNAMIC_TOPIC_CONFIG",
    "STATIC_BROKER_CONFIG",
    "ConfigError",
    "KafkaConfig",
    "default_config",
    "kafka_configs",
    "lakelog_config",
]

DYNAMIC_TOPIC_CONFIG: Final = 1
STATIC_BROKER_CONFIG: Final = 4
DEFAULT_CONFIG: Final = 5
"""Where a config's value comes from (DescribeConfigs' ``config_source``): set on the
topic, fixed for the broker, lakelog's default."""


class ConfigError(Exception):
    """A config a topic cannot have: an unknown name or a value lakelog refuses."""


_LONG: Final = re.compile(r"[+-]?[0-9]+")
"""A number as Kafka's ``LONG`` and ``INT`` configs parse it (trimmed; no ``_``)."""


def _integer(value: str) -> int:
    """``value`` as a Kafka ``LONG``: a decimal integer within 64 bits, or `ConfigError`."""
    number = int(value) if _LONG.fullmatch(value.strip()) else None
    if number is None or not -(2**63) <= number < 2**63:
        raise ConfigError(f"{value!r} is not an integer of 64 bits")
    return number


def _compression_in(value: str) -> str:
    return "none" if value == "uncompressed" else value


def _compression_out(value: object) -> str:
    return "uncompressed" if value == "none" else str(value)


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    """One topic setting: its Kafka name, lakelog key, Kafka config type (DescribeConfigs'
    ``config_type``: 2 STRING, 3 INT, 5 LONG, 7 LIST) and value conversions."""

    name: str
    key: str
    config_type: int
    documentation: str
    parse: Callable[[str], object] = str
    render: Callable[[object], str] = str


CONFIGS: Final = (
    KafkaConfig("cleanup.policy", "cleanup_policy", 7, "delete or compact (not both)."),
    KafkaConfig(
        "compression.type",
        "compression",
        2,
        "Codec of the topic's Parquet segments: zstd, snappy, lz4 or uncompressed.",
        _compression_in,
        _compression_out,
    ),
    KafkaConfig(
        "delete.retention.ms",
        "delete_retention_ms",
        5,
        "How long compaction keeps a tombstone, by its timestamp.",
        _integer,
    ),
    KafkaConfig(
        "max.message.bytes", "max_record_bytes", 3, "Largest record an append accepts.", _integer
    ),
    KafkaConfig(
        "retention.bytes", "retention_bytes", 5, "Bytes kept per partition; -1: no limit.", _integer
    ),
    KafkaConfig(
        "retention.ms", "retention_ms", 5, "How long records are kept; -1: forever.", _integer
    ),
)
"""Every topic setting, by Kafka name (sorted)."""

_BY_NAME: Final = {config.name: config for config in CONFIGS}
_DEFAULTS: Final = TopicConfig().model_dump()


def _known(name: str) -> KafkaConfig:
    known = _BY_NAME.get(name)
    if known is None:
        raise ConfigError(f"lakelog has no topic config {name!r}; it knows {', '.join(_BY_NAME)}")
    return known


def default_config(names: Iterable[str]) -> dict[str, Any]:
    """The lakelog defaults of the settings Kafka ``names`` (to reset them)."""
    return {known.key: _DEFAULTS[known.key] for known in map(_known, names)}


def lakelog_config(
    configs: Iterable[tuple[str, str | None]], base: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The lakelog topic config of Kafka ``(name, value)`` pairs, validated over ``base``
    (a topic's config; lakelog's defaults when None) as the topic would have it. A None
    value leaves the setting as it is.

    Raises
    ------
    ConfigError
        A name lakelog does not know, a name given twice, or a value it refuses.
    """
    config: dict[str, Any] = {}
    for name, value in configs:
        known = _known(name)
        if known.key in config:
            raise ConfigError(f"config {name!r} is given twice")
        if value is not None:
            try:
                config[known.key] = known.parse(value)
            except ConfigError as error:
                raise ConfigError(f"{name}: {error}") from None
    try:
        TopicConfig.parse(config, base=None if base is None else TopicConfig.parse(base))
    except InvalidRequestError as error:
        raise ConfigError(error.message) from None
    return config


def kafka_configs(
    config: Mapping[str, object], names: Iterable[str] | None = None
) -> list[tuple[KafkaConfig, str, bool]]:
    """A topic's settings under Kafka's names: ``(setting, value, is_default)`` for each
    of ``names`` lakelog knows (every setting when None)."""
    wanted = None if names is None else set(names)
    return [
        (known, known.render(value), value == _DEFAULTS[known.key])
        for known in CONFIGS
        if wanted is None or known.name in wanted
        for value in (config.get(known.key, _DEFAULTS[known.key]),)
    ]

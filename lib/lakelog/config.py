"""Topic configuration: the settings a topic is created with and may alter later."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lakelog.errors import InvalidRequestError
from lakelog.limits import MAX_RECORD_BYTES
from lakelog.validation import summarize

__all__ = ["DEFAULT_DELETE_RETENTION_MS", "DEFAULT_RETENTION_MS", "Compression", "TopicConfig"]

DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000
DEFAULT_DELETE_RETENTION_MS = 24 * 3600 * 1000

Compression = Literal["zstd", "snappy", "lz4", "none"]


MAX_LONG: Final = 2**63 - 1
"""The largest retention or time setting: Kafka's ``LONG`` (a DynamoDB number would hold
38 digits; a larger one would fail the catalog's write instead of being refused)."""


class TopicConfig(BaseModel):
    """Per-topic settings, named as in Kafka.

    Parameters
    ----------
    retention_ms
        How long records are kept, by their timestamp; ``-1`` keeps them forever.
    retention_bytes
        Bytes kept per partition; ``-1`` means no limit.
    cleanup_policy
        ``delete`` drops old segments; ``compact`` keeps the latest value per key (and
        refuses keyless records).
    delete_retention_ms
        How long key compaction keeps a tombstone (a record with a null value), by its
        timestamp (``compact`` topics; ADR 0013, 6).
    max_record_bytes
        Largest record (key + value + headers) an append accepts.
    compression
        Parquet codec of the topic's segments.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    retention_ms: int = Field(default=DEFAULT_RETENTION_MS, ge=-1, le=MAX_LONG)
    retention_bytes: int = Field(default=-1, ge=-1, le=MAX_LONG)
    cleanup_policy: Literal["delete", "compact"] = "delete"
    delete_retention_ms: int = Field(default=DEFAULT_DELETE_RETENTION_MS, ge=0, le=MAX_LONG)
    max_record_bytes: int = Field(default=1024 * 1024, ge=1, le=MAX_RECORD_BYTES)
    compression: Compression = "zstd"

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None, base: TopicConfig | None = None) -> TopicConfig:
        """Validate ``raw`` over ``base`` (defaults when None), raising `InvalidRequestError`."""
        if raw is not None and not isinstance(raw, Mapping):
            raise InvalidRequestError("topic config must be an object")
        merged = {**(base.model_dump() if base else {}), **(raw or {})}
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            details = summarize(exc.errors())
            raise InvalidRequestError(f"invalid topic config: {details}") from None

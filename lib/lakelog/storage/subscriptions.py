"""The catalog item of a subscription (ADR 0015 §1), shared by the DynamoDB and memory
adapters so that both store and read back exactly the same attributes.

Item (``pk = sub#{topic}``, ``sk = {name}``, `lakelog.storage.keys.subscription_pk`)
    ``function_arn`` S, ``topic_id`` S, ``created_ms`` N, and ``options`` S: the JSON
    object of every other field of `lakelog.types.Subscription` (``batch_size``,
    ``max_batching_window_ms``, ``starting_position``, ``starting_position_timestamp_ms``,
    ``maximum_retry_attempts``, ``maximum_record_age_ms``,
    ``bisect_batch_on_function_error``, ``report_batch_item_failures``, ``on_failure``
    as ``{"topic": ...}`` or ``{"sqs_arn": ...}`` or null, and ``start_offsets`` as a
    list of offsets by partition). Options added later are read
    with their defaults from items written before them; unknown keys are ignored.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Final

from lakelog.storage.attributes import Item, get_int, num
from lakelog.storage.keys import subscription_pk
from lakelog.types import OnFailure, Subscription

__all__ = ["subscription_from_item", "subscription_item"]

_COLUMNS: Final = frozenset({"name", "topic", "function_arn", "topic_id", "created_ms"})
"""Fields kept in their own attributes (or in the key) rather than in ``options``."""
_OPTIONS: Final = tuple(f.name for f in dataclasses.fields(Subscription) if f.name not in _COLUMNS)


def _option(subscription: Subscription, name: str) -> Any:
    value = getattr(subscription, name)
    if isinstance(value, OnFailure):
        return {k: v for k, v in dataclasses.asdict(value).items() if v is not None}
    return value


def subscription_item(subscription: Subscription) -> Item:
    """The catalog item of ``subscription``, key included."""
    options = {name: _option(subscription, name) for name in _OPTIONS}
    return {
        "pk": {"S": subscription_pk(subscription.topic)},
        "sk": {"S": subscription.name},
        "function_arn": {"S": subscription.function_arn},
        "topic_id": {"S": subscription.topic_id},
        "created_ms": num(subscription.created_ms),
        "options": {"S": json.dumps(options, sort_keys=True, separators=(",", ":"))},
    }


def subscription_from_item(item: Item) -> Subscription:
    """The subscription a catalog item holds."""
    stored = json.loads(item["options"]["S"])
    options = {name: stored[name] for name in _OPTIONS if name in stored}
    failure = options.get("on_failure")
    if failure is not None:
        options["on_failure"] = OnFailure(
            topic=failure.get("topic"), sqs_arn=failure.get("sqs_arn")
        )
    if "start_offsets" in options:
        options["start_offsets"] = tuple(options["start_offsets"])
    return Subscription(
        name=item["sk"]["S"],
        topic=item["pk"]["S"].removeprefix(subscription_pk("")),
        function_arn=item["function_arn"]["S"],
        topic_id=item["topic_id"]["S"],
        created_ms=get_int(item, "created_ms"),
        **options,
    )

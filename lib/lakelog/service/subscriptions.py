"""Subscriptions (ADR 0015 §1): create, list, describe with lag, delete.

A subscription binds a topic to a function. Its options are validated as a Lambda event
source mapping validates its own (`validate_subscription`); its progress is the consumer
group `Subscription.group` (``subscription.{topic}.{name}``). Creation reads the offsets
of the starting position, stores them in the subscription's item
(`Subscription.start_offsets`, put only if the name is free), and only then, if its put
won, writes them as the group's committed offsets: a creation that loses a race for the
name changes nothing, and delivery of a partition without a committed offset starts at
the item's offset (ADR 0015 §1). The ``subscription.`` group prefix is reserved: users
may not join, commit, reset or leave such groups (`check_user_group`).
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

from lakelog.environment import ENV_TRIGGER_FUNCTION_PREFIXES
from lakelog.errors import (
    FunctionNotAllowedError,
    GroupNotEmptyError,
    GroupNotFoundError,
    InvalidRequestError,
    SubscriptionExistsError,
    SubscriptionNotFoundError,
)
from lakelog.limits import MAX_TIMESTAMP_MS, MAX_TOPIC_NAME_LENGTH, validate_group_id
from lakelog.limits import validate_topic_name as _topic_name
from lakelog.service.context import EngineContext, retry_if_stale
from lakelog.service.groups import GroupCoordinator, GroupView
from lakelog.service.producers import DIRECT_PRINCIPAL
from lakelog.storage.delivery import DeliveryState, DeliveryStateStore
from lakelog.types import (
    OnFailure,
    PartitionLag,
    ResetTarget,
    Subscription,
    SubscriptionStatus,
    ToTimestamp,
)

__all__ = [
    "SUBSCRIPTION_GROUP_PREFIX",
    "FunctionPolicy",
    "Subscriptions",
    "check_user_group",
    "delivery_state_text",
    "validate_subscription",
]

SUBSCRIPTION_GROUP_PREFIX: Final = "subscription."
"""Prefix of every subscription's consumer group; reserved (`check_user_group`)."""


BATCH_SIZE: Final = (1, 10_000)
MAX_BATCHING_WINDOW_MS: Final = (0, 300_000)
MAXIMUM_RETRY_ATTEMPTS: Final = (-1, 10_000)
MAXIMUM_RECORD_AGE_MS: Final = (60_000, 604_800_000)
"""Or -1: no limit."""
STARTING_POSITIONS: Final = ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")

_FUNCTION_ARN: Final = re.compile(
    r"arn:aws[a-z-]*:lambda:[a-z]{2}(-[a-z]+)+-\d{1,2}:\d{12}:function:[a-zA-Z0-9_-]{1,64}"
    r"(:(\$LATEST|[a-zA-Z0-9_-]{1,128}))?"
)
"""A Lambda function ARN, unqualified or with a version or alias."""
_LOCAL_FUNCTION: Final = re.compile(r"local:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
"""``local:package.module:function``: called in-process (``lakelog dev`` only)."""
_SQS_ARN: Final = re.compile(
    r"arn:aws[a-z-]*:sqs:[a-z]{2}(-[a-z]+)+-\d{1,2}:\d{12}:[a-zA-Z0-9_-]{1,80}"
)
_NAME: Final = re.compile(r"[a-zA-Z0-9_-]+")


@dataclass(frozen=True, slots=True)
class FunctionPolicy:
    """Which functions a deployment lets topics subscribe.

    Attributes
    ----------
    allow_local
        ``local:package.module:function`` is accepted (the local dev server only).
    prefixes
        Function ARNs must start with one of these (empty: any Lambda function ARN);
        others are refused with 403 ``forbidden``.
    """

    allow_local: bool = False
    prefixes: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FunctionPolicy:
        """The policy ``LAKELOG_TRIGGER_FUNCTION_PREFIXES`` sets (no local functions)."""
        environ = os.environ if environ is None else environ
        text = environ.get(ENV_TRIGGER_FUNCTION_PREFIXES, "")
        return cls(prefixes=tuple(p.strip() for p in text.split(",") if p.strip()))

    def allows(self, function_arn: str) -> bool:
        """Whether a well-formed ``function_arn`` is under one of the prefixes."""
        if function_arn.startswith("local:") or not self.prefixes:
            return True
        return any(function_arn.startswith(prefix) for prefix in self.prefixes)


def check_user_group(group: object) -> str:
    """``group`` if users may use it: a legal group id outside the reserved
    `SUBSCRIPTION_GROUP_PREFIX`; `InvalidRequestError` if not."""
    name = validate_group_id(group)
    if name.startswith(SUBSCRIPTION_GROUP_PREFIX):
        raise InvalidRequestError(
            f"group ids starting with {SUBSCRIPTION_GROUP_PREFIX!r} are reserved for "
            "subscriptions; see GET /v1/topics/{topic}/subscriptions/{name}"
        )
    return name


def _int_in(name: str, value: object, low: int, high: int, *, also: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"{name} must be an integer, not {value!r}")
    if value != also and not low <= value <= high:
        alternative = f" or {also}" if also is not None else ""
        raise InvalidRequestError(
            f"{name} must be between {low:,} and {high:,}{alternative}, not {value}"
        )
    return value


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequestError(f"{name} must be true or false, not {value!r}")
    return value


def _subscription_name(topic: str, name: object) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidRequestError("subscription name must be a non-empty string")
    if not _NAME.fullmatch(name):
        raise InvalidRequestError(
            f"subscription name {name!r} may contain only ASCII letters, digits, '_' and '-'"
        )
    longest = MAX_TOPIC_NAME_LENGTH - len(SUBSCRIPTION_GROUP_PREFIX) - len(topic) - 1
    if len(name) > longest:
        raise InvalidRequestError(
            f"subscription name is {len(name)} characters; on topic {topic!r} the limit is "
            f"{max(longest, 0)}, so that its group {SUBSCRIPTION_GROUP_PREFIX}{{topic}}.{{name}} "
            f"stays within {MAX_TOPIC_NAME_LENGTH} characters"
        )
    return name


def _function_arn(value: object, policy: FunctionPolicy) -> str:
    if not isinstance(value, str):
        raise InvalidRequestError(f"function_arn must be a string, not {value!r}")
    if _FUNCTION_ARN.fullmatch(value):
        return value
    if _LOCAL_FUNCTION.fullmatch(value):
        if policy.allow_local:
            return value
        raise InvalidRequestError(
            f"function_arn {value!r} is a local function; only the local dev server "
            "(lakelog dev) calls those"
        )
    raise InvalidRequestError(
        f"function_arn must be a Lambda function ARN "
        f"(arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]), not {value!r}"
    )


def _on_failure(value: object, topic: str) -> OnFailure | None:
    if value is None:
        return None
    if not isinstance(value, OnFailure):
        raise InvalidRequestError(f"on_failure must be an OnFailure, not {value!r}")
    if (value.topic is None) == (value.sqs_arn is None):
        raise InvalidRequestError("on_failure names exactly one of topic or sqs_arn")
    if value.topic is not None:
        if _topic_name(value.topic) == topic:
            raise InvalidRequestError("on_failure topic must not be the subscribed topic")
        return value
    if not isinstance(value.sqs_arn, str) or not _SQS_ARN.fullmatch(value.sqs_arn):
        raise InvalidRequestError(
            "on_failure sqs_arn must be an SQS queue ARN "
            f"(arn:aws:sqs:<region>:<account>:<queue>), not {value.sqs_arn!r}"
        )
    return value


def validate_subscription(spec: Subscription, policy: FunctionPolicy) -> Subscription:
    """``spec`` if every field is valid as a Lambda event source mapping's would be.

    Checks the topic and subscription names, the function (its form and, for a local
    one, ``policy.allow_local``), each option's type and range (ADR 0015 §1), the
    starting position and its timestamp, and the on-failure destination's form. Does not
    look at the catalog or at ``policy.prefixes``.

    Raises
    ------
    InvalidRequestError
        A field is invalid; the message names it.
    """
    topic = _topic_name(spec.topic)
    _subscription_name(topic, spec.name)
    _function_arn(spec.function_arn, policy)
    _int_in("batch_size", spec.batch_size, *BATCH_SIZE)
    _int_in("max_batching_window_ms", spec.max_batching_window_ms, *MAX_BATCHING_WINDOW_MS)
    _int_in("maximum_retry_attempts", spec.maximum_retry_attempts, *MAXIMUM_RETRY_ATTEMPTS)
    _int_in("maximum_record_age_ms", spec.maximum_record_age_ms, *MAXIMUM_RECORD_AGE_MS, also=-1)
    _bool("bisect_batch_on_function_error", spec.bisect_batch_on_function_error)
    _bool("report_batch_item_failures", spec.report_batch_item_failures)
    if spec.starting_position not in STARTING_POSITIONS:
        raise InvalidRequestError(
            f"starting_position must be one of {', '.join(STARTING_POSITIONS)}, "
            f"not {spec.starting_position!r}"
        )
    stamp = spec.starting_position_timestamp_ms
    if spec.starting_position == "AT_TIMESTAMP":
        if stamp is None:
            raise InvalidRequestError(
                "starting_position AT_TIMESTAMP needs starting_position_timestamp_ms"
            )
        _int_in("starting_position_timestamp_ms", stamp, 0, MAX_TIMESTAMP_MS)
    elif stamp is not None:
        raise InvalidRequestError(
            "starting_position_timestamp_ms is only for starting_position AT_TIMESTAMP"
        )
    _on_failure(spec.on_failure, topic)
    return spec


def _start(subscription: Subscription) -> ResetTarget:
    """Where the group's offsets start (`GroupCoordinator.reset`'s targets)."""
    if subscription.starting_position == "TRIM_HORIZON":
        return "earliest"
    if subscription.starting_position == "AT_TIMESTAMP":
        assert subscription.starting_position_timestamp_ms is not None
        return ToTimestamp(subscription.starting_position_timestamp_ms)
    return "latest"


class Subscriptions:
    """The subscription use cases over the catalog and the subscriptions' groups.

    Parameters
    ----------
    context
        The engine's stores, caches and clock.
    groups
        Keeps each subscription's progress (its committed offsets and leases).
    policy
        Which functions may be subscribed.
    states
        The dispatcher's delivery states, which `describe` reports per partition (None:
        no state is reported).
    """

    def __init__(
        self,
        context: EngineContext,
        groups: GroupCoordinator,
        policy: FunctionPolicy,
        states: DeliveryStateStore | None = None,
    ) -> None:
        self._ctx = context
        self._groups = groups
        self.policy = policy
        self._states = states

    def create(self, spec: Subscription, principal: str = DIRECT_PRINCIPAL) -> Subscription:
        """Subscribe ``spec.function_arn`` to ``spec.topic``; the stored subscription.

        ``principal`` is who asks (named by a refusal of the function policy).

        Reads each partition's offset of the starting position (TRIM_HORIZON: its log
        start; LATEST: its high watermark now; AT_TIMESTAMP: the first offset at or after
        the time, the high watermark when there is none) and stores the subscription with
        them (`Subscription.start_offsets`), the topic's id and the creation time, if no
        other has the name; then, and only then, sets the group's committed offsets to
        them (`GroupCoordinator.start`), over any a deleted subscription of the name left.
        Until that write (or if it never happens), delivery and `describe` take a
        partition's start from the item. Partitions added to the topic later have no
        start offset: delivery starts them at 0.

        Raises
        ------
        InvalidRequestError
            Bad input (including an on-failure topic that does not exist); nothing stored.
        FunctionNotAllowedError
            The function is outside the deployment's ARN prefixes (403).
        TopicNotFoundError
            The topic does not exist.
        SubscriptionExistsError
            The topic has a subscription of that name (also when another creation of the
            name won a race; this one changed nothing).
        GroupNotEmptyError
            The name's group still has live members (a delivery of a subscription of
            that name deleted a moment ago).
        """
        validate_subscription(spec, self.policy)
        if not self.policy.allows(spec.function_arn):
            raise FunctionNotAllowedError(principal, spec.topic, spec.function_arn)
        dead_letters = spec.on_failure.topic if spec.on_failure is not None else None
        if dead_letters is not None and self._ctx.catalog.get_topic(dead_letters) is None:
            raise InvalidRequestError(f"on_failure topic {dead_letters!r} does not exist")
        name = self._ctx.current_topic(spec.topic).name
        if self._ctx.catalog.get_subscription(name, spec.name) is not None:
            raise SubscriptionExistsError(name, spec.name)
        before = self._groups.store.read_group(spec.group)
        live = GroupView.of(before, self._ctx.clock_ms()).live
        if live:
            raise GroupNotEmptyError(spec.group, tuple(sorted(live)))
        topic, offsets = self._groups.offsets_at(name, _start(spec))
        subscription = replace(
            spec,
            topic_id=topic.topic_id,
            created_ms=self._ctx.clock_ms(),
            start_offsets=tuple(offsets[p] for p in range(topic.partitions)),
        )
        if not self._ctx.catalog.create_subscription(subscription):
            raise SubscriptionExistsError(topic.name, spec.name)
        self._groups.start(subscription.group, topic, offsets, before)
        return subscription

    def list(self, topic: str) -> list[Subscription]:
        """Every subscription of ``topic``, by name (also those of a topic since deleted,
        so that they can be deleted too)."""
        return self._ctx.catalog.list_subscriptions(_topic_name(topic))

    def get(self, topic: str, name: str) -> Subscription:
        """The subscription ``name`` of ``topic``; raises `SubscriptionNotFoundError`."""
        topic = _topic_name(topic)
        found = self._ctx.catalog.get_subscription(topic, _subscription_name(topic, name))
        if found is None:
            raise SubscriptionNotFoundError(topic, name)
        return found

    @retry_if_stale
    def describe(self, topic: str, name: str) -> SubscriptionStatus:
        """The subscription and, per partition of its topic, the committed offset, the
        high watermark and the lag (for a partition without a committed offset, from where
        delivery starts it: `Subscription.start_offset`). ``state`` names, per partition
        with a delivery under way or waiting, what it waits for (`delivery_state_text`):
        one strongly consistent read of the delivery state per partition with lag or a
        lease holder, none for a subscription that has caught up.

        Raises `SubscriptionNotFoundError`, or `TopicNotFoundError` when the topic is gone.
        """
        subscription = self.get(topic, name)
        current = self._ctx.current_topic(subscription.topic)
        try:
            described = self._groups.describe(subscription.group).partitions
        except GroupNotFoundError:
            described = ()
        by_partition = {p.partition: p for p in described if p.topic == current.name}
        state = self._ctx.topic_state(current)
        partitions = []
        for partition in range(current.partitions):
            known = by_partition.get(partition)
            high_watermark = state.high_watermark(partition)
            committed = None if known is None else known.committed_offset
            partitions.append(
                PartitionLag(
                    topic=current.name,
                    partition=partition,
                    owner=None if known is None else known.owner,
                    lease_epoch=0 if known is None else known.lease_epoch,
                    committed_offset=committed,
                    high_watermark=high_watermark,
                    lag=max(high_watermark - subscription.start_offset(partition, committed), 0),
                )
            )
        return SubscriptionStatus(
            subscription=subscription,
            partitions=tuple(partitions),
            state=self._delivery_states(subscription.group, partitions),
        )

    def _delivery_states(self, group: str, partitions: Sequence[PartitionLag]) -> dict[int, str]:
        """``state`` of `describe`: the text of each partition's delivery state."""
        if self._states is None:
            return {}
        now = self._ctx.clock_ms()
        found: dict[int, str] = {}
        for p in partitions:
            if not p.lag and p.owner is None:
                continue  # caught up and not delivering: no state worth a read
            state = self._states.get(group, p.partition)
            if state is not None or p.owner is not None:
                found[p.partition] = delivery_state_text(state, p.owner is not None, now)
        return found

    def delete(self, topic: str, name: str) -> None:
        """Remove the subscription, then its group (offsets and leases): no delivery
        starts once the item is gone. Raises `SubscriptionNotFoundError`."""
        subscription = self.get(topic, name)
        if not self._ctx.catalog.delete_subscription(subscription.topic, subscription.name):
            raise SubscriptionNotFoundError(subscription.topic, subscription.name)
        self._groups.store.delete_group(subscription.group)


def _at(ms: int) -> str:
    """``ms`` as an ISO 8601 UTC time to the second."""
    at = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def delivery_state_text(state: DeliveryState | None, leased: bool, now_ms: int) -> str:
    """How a partition's delivery stands, for `SubscriptionStatus.state`.

    Parameters
    ----------
    state
        The partition's delivery state, None when it has none.
    leased
        Whether a dispatcher holds the partition's lease (a delivery runs).
    now_ms
        The current time, to tell a window still open from one the schedule will resume.

    Returns
    -------
    str
        ``retrying (attempt N, next at T)`` (N: the coming attempt), ``delivering``,
        ``waiting for window (until T)`` or ``due (since T)``.
    """
    if state is not None and state.attempts:
        return f"retrying (attempt {state.attempts + 1}, next at {_at(state.due_ms)})"
    if leased or state is None:
        return "delivering"
    if state.due_ms > now_ms:
        return f"waiting for window (until {_at(state.due_ms)})"
    return f"due (since {_at(state.due_ms)})"

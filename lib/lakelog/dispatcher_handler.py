"""The trigger dispatcher's Lambda handlers: the ledger's stream and the retry schedule.

One function serves both triggers (ADR 0015 §4); `DispatcherHandlers.handler` routes by
the event's shape:

==================  ================================  ========================================
handler             event                             what it does
==================  ================================  ========================================
``on_stream``       DynamoDB stream batch of the      ``on_appended([topic_id])`` for each topic
                    ledger table (``Records``)        with a new chain item, in stream order;
                                                      replies ``{"batchItemFailures": [...]}``
``on_schedule``     EventBridge ``Scheduled Event``   ``resume_due()``: deliveries whose retry
                                                      is due or whose batching window passed
==================  ================================  ========================================

A stream record counts only if it is the ``INSERT`` of a chain item (``pk`` a topic's
`chain_pk`, ``sk`` neither the genesis seq 0 nor the meta item's `HEAD_SK`): the event
source mapping's filter already drops every other record, the handler checks again. Only
the keys are read (the stream's view type is ``KEYS_ONLY``).

Partial batch failures: topics are handed over one at a time, in the order of their first
record; when ``on_appended`` raises for one (or the Lambda deadline is near), the reply
names that topic's first record (``itemIdentifier`` = its ``SequenceNumber``), so Lambda
retries the batch from there and checkpoints everything before it. Topics already handled
that appear again later are notified again, which ``on_appended`` must (and does) take as
a no-op when there is nothing new.

`dispatcher_for` builds the dispatcher on an engine; the handlers are built once per process
(`make_handlers`), at cold start in Lambda (`dispatcher_from_env`), and on any fake of
`DispatcherCalls` in tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from aws_lambda_powertools.metrics import MetricUnit

from lakelog.environment import ENV_BOOTSTRAP_SERVERS, ENV_DISPATCH_CONCURRENCY
from lakelog.errors import InvalidRequestError
from lakelog.service.engine import Engine
from lakelog.service.invoke import Invoker, QueueSender
from lakelog.storage.delivery import DeliveryStateStore, DynamoDeliveryStateStore
from lakelog.storage.keys import HEAD_SK, parse_chain_pk
from lakelog.telemetry import NAMESPACE, Handler, Telemetry, remaining_ms

__all__ = [
    "DEFAULT_BOOTSTRAP_SERVERS",
    "METRICS",
    "NAMESPACE",
    "SERVICE",
    "STREAM_RESERVE_MS",
    "DispatcherCalls",
    "DispatcherHandlers",
    "appended_topics",
    "concurrency_from_env",
    "dispatcher_for",
    "dispatcher_from_env",
    "make_handlers",
]

SERVICE: Final = "lakelog-dispatcher"
METRICS: Final = {
    "StreamRecords": MetricUnit.Count,
    "TopicsNotified": MetricUnit.Count,
    "NotifyFailures": MetricUnit.Count,
    "ScheduleFailures": MetricUnit.Count,
}
"""What the handlers publish (namespace `NAMESPACE`, dimension ``service`` = `SERVICE`).

``StreamRecords``: records of a stream batch that name a new chain item. ``TopicsNotified``:
``on_appended`` calls that returned. ``NotifyFailures``: calls that raised (the batch is
retried from that topic). ``ScheduleFailures``: ``resume_due`` calls that raised. A scheduled
run that succeeds publishes nothing: a custom metric costs $0.30 a month for each month it
receives data, more than the idle schedule itself (ADR 0015 §4); Lambda's own
``Invocations`` count the runs."""
STREAM_RESERVE_MS: Final = 30_000
"""A topic is handed to ``on_appended`` only while this much time is left before the
Lambda deadline (after the first): the rest of the batch is reported failed and retried,
instead of the whole batch timing out."""
DEFAULT_BOOTSTRAP_SERVERS: Final = "lakelog:9092"
"""``bootstrapServers`` of the events when the environment names none."""
_GENESIS_SEQ: Final = 0

"""A Lambda handler: (event, context) -> JSON-serializable output."""


class DispatcherCalls(Protocol):
    """What the handlers need of the dispatcher (`lakelog.service.dispatch.Dispatcher`)."""

    def on_appended(self, topic_ids: Sequence[str]) -> object:
        """Deliver what is new in these topics to their subscriptions."""
        ...

    def resume_due(self) -> object:
        """Resume deliveries whose retry is due or whose batching window has passed."""
        ...


@dataclass(frozen=True, slots=True)
class DispatcherHandlers:
    """The handlers of one dispatcher: ``handler`` routes to the other two."""

    on_stream: Handler
    on_schedule: Handler
    handler: Handler


def appended_topics(records: Sequence[Any]) -> tuple[list[tuple[str, str]], int]:
    """``([(topic_id, sequence_number of its first record), ...], records counted)``, in
    the order topics first appear, for the records that insert a chain item."""
    first: dict[str, str] = {}
    counted = 0
    for record in records:
        topic_sequence = _chain_insert(record)
        if topic_sequence is None:
            continue
        counted += 1
        first.setdefault(*topic_sequence)
    return list(first.items()), counted


def _chain_insert(record: Any) -> tuple[str, str] | None:
    """``(topic_id, sequence_number)`` if ``record`` inserts a chain item, else None."""
    if not isinstance(record, Mapping) or record.get("eventName") != "INSERT":
        return None
    change = record.get("dynamodb")
    if not isinstance(change, Mapping):
        return None
    keys = change.get("Keys") or {}
    sequence = change.get("SequenceNumber")
    try:
        pk, sk = keys["pk"]["S"], int(keys["sk"]["N"])
    except (KeyError, TypeError, ValueError):
        return None
    topic_id = parse_chain_pk(pk) if isinstance(pk, str) else None
    if topic_id is None or sk in (_GENESIS_SEQ, HEAD_SK) or not isinstance(sequence, str):
        return None
    return topic_id, sequence


def _output(report: object) -> dict[str, Any]:
    """A report as JSON-able fields (a dataclass's), or nothing."""
    if dataclasses.is_dataclass(report) and not isinstance(report, type):
        fields: dict[str, Any] = dataclasses.asdict(report)
        return {name: value for name, value in fields.items() if _jsonable(value)}
    return {}


def _jsonable(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | dict)


def make_handlers(
    dispatcher: DispatcherCalls, *, reserve_ms: int = STREAM_RESERVE_MS
) -> DispatcherHandlers:
    """The handlers over ``dispatcher``.

    Parameters
    ----------
    dispatcher
        What delivers (`dispatcher_for` an engine, or a fake).
    reserve_ms
        ``on_stream`` hands over no further topic with less time than this left before the
        deadline (the context's ``get_remaining_time_in_millis``; no context, no deadline).
    """
    telemetry = Telemetry(SERVICE, METRICS)
    logger, publish = telemetry.logger, telemetry.publish

    def on_stream(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        records = event.get("Records") if isinstance(event, Mapping) else None
        if not isinstance(records, list):
            raise InvalidRequestError(
                "on_stream needs a DynamoDB stream event ({'Records': [...]})"
            )
        topics, counted = appended_topics(records)
        publish(StreamRecords=counted)
        notified = 0
        for index, (topic_id, sequence) in enumerate(topics):
            remaining = remaining_ms(context)
            if index and remaining is not None and remaining < reserve_ms:
                logger.warning(
                    "deadline near: the rest of the batch is retried",
                    extra={"topic_id": topic_id, "sequence_number": sequence},
                )
                return _failed_from(sequence, publish, notified)
            try:
                dispatcher.on_appended([topic_id])
            except Exception:
                logger.exception("on_appended failed", extra={"topic_id": topic_id})
                publish(NotifyFailures=1)
                return _failed_from(sequence, publish, notified)
            notified += 1
        publish(TopicsNotified=notified)
        logger.debug("stream batch", extra={"records": len(records), "topics": notified})
        return {"batchItemFailures": []}

    def on_schedule(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        try:
            report = dispatcher.resume_due()
        except Exception:
            publish(ScheduleFailures=1)
            raise
        output = _output(report)
        logger.info("resumed due deliveries", extra=output)
        return output

    def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        # the unwrapped handlers: one metrics flush and log context per invocation
        if isinstance(event, Mapping) and "Records" in event:
            return on_stream(event, context)
        if isinstance(event, Mapping) and event.get("source") == "aws.events":
            return on_schedule(event, context)
        raise InvalidRequestError("the dispatcher takes a DynamoDB stream batch or a schedule")

    wrap = telemetry.instrument

    return DispatcherHandlers(wrap(on_stream), wrap(on_schedule), wrap(handler))


def _failed_from(sequence: str, publish: Callable[..., None], notified: int) -> dict[str, Any]:
    """The partial batch reply that retries the batch from the record ``sequence``."""
    publish(TopicsNotified=notified)
    return {"batchItemFailures": [{"itemIdentifier": sequence}]}


def dispatcher_for(
    engine: Engine,
    invoker: Invoker,
    queue_sender: QueueSender,
    *,
    states: DeliveryStateStore,
    bootstrap_servers: str = DEFAULT_BOOTSTRAP_SERVERS,
    max_concurrent_deliveries: int | None = None,
) -> DispatcherCalls:
    """The dispatcher delivering ``engine``'s subscriptions through ``invoker``, with its
    delivery states (and the schedule's due index) in ``states``; at most
    ``max_concurrent_deliveries`` at once (None: the default)."""
    from lakelog.service.dispatch import (  # noqa: PLC0415 - keeps cold start light
        MAX_CONCURRENT_DELIVERIES,
        Dispatcher,
    )

    return Dispatcher(
        engine,
        engine.subscriptions.list,
        invoker,
        queue_sender,
        states=states,
        bootstrap_servers=bootstrap_servers,
        max_concurrent_deliveries=max_concurrent_deliveries or MAX_CONCURRENT_DELIVERIES,
    )


def concurrency_from_env(environ: Mapping[str, str]) -> int | None:
    """``LAKELOG_DISPATCH_CONCURRENCY``: a positive integer, None when unset or empty.

    Raises
    ------
    lakelog.api.settings.SettingsError
        If it is set to anything else (fails the cold start).
    """
    from lakelog.api.settings import SettingsError  # noqa: PLC0415

    text = environ.get(ENV_DISPATCH_CONCURRENCY, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise SettingsError(f"{ENV_DISPATCH_CONCURRENCY} must be a positive integer, not {text!r}")
    return int(text)


def dispatcher_from_env(environ: Mapping[str, str]) -> DispatcherCalls:
    """The dispatcher of the deployment ``environ`` names: Lambda functions only.

    Raises
    ------
    lakelog.api.settings.SettingsError
        If a name is missing or malformed (fails the cold start).
    """
    import boto3  # noqa: PLC0415 - only Lambda builds clients from the environment
    from botocore.config import Config  # noqa: PLC0415

    from lakelog.api.settings import ApiSettings  # noqa: PLC0415
    from lakelog.service.dispatch import MAX_CONCURRENT_DELIVERIES  # noqa: PLC0415
    from lakelog.service.invokers import (  # noqa: PLC0415
        LambdaInvoker,
        RoutingInvoker,
        SqsQueueSender,
    )

    names = ApiSettings.from_env(environ).names
    concurrency = concurrency_from_env(environ) or MAX_CONCURRENT_DELIVERIES
    session = boto3.Session()
    # A connection per concurrent delivery (and one for the trigger's own calls), so the
    # deliveries never queue for one or reconnect.
    pooled = Config(max_pool_connections=concurrency + 1)
    dynamodb = session.client("dynamodb", config=pooled)
    return dispatcher_for(
        Engine.from_clients(session.client("s3", config=pooled), dynamodb, names),
        RoutingInvoker(lambda_invoker=LambdaInvoker.from_session(session, connections=concurrency)),
        SqsQueueSender(session.client("sqs")),
        states=DynamoDeliveryStateStore(dynamodb, names.catalog_table),
        bootstrap_servers=environ.get(ENV_BOOTSTRAP_SERVERS) or DEFAULT_BOOTSTRAP_SERVERS,
        max_concurrent_deliveries=concurrency,
    )

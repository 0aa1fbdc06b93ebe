"""The event the dispatcher sends is Lambda's self-managed Kafka event (ADR 0015 §3):
handlers written for MSK, with Powertools' `KafkaEvent`, parser models, `kafka_consumer`
and `BatchProcessor(EventType.Kafka)`, run on it unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.kafka_event import KafkaEvent, KafkaEventRecord
from aws_lambda_powertools.utilities.kafka import ConsumerRecords, SchemaConfig, kafka_consumer
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import KafkaSelfManagedEventModel

from lakelog import Engine, Record
from lakelog.service.dispatch import backoff_ms, failure_offset, kafka_event
from lakelog.service.invoke import InvokeOutcome
from lakelog.types import StoredRecord, Subscription
from tests.integration.dispatch_support import SERVERS, Functions, Harness
from tests.integration.group_support import Clock

SAMPLE = [
    StoredRecord(0, 15, 1545084650987, b"recordKey", b'{"key":"value"}', (("headerKey", b"v"),)),
    StoredRecord(0, 16, 1545084650988, None, b"no key", (("a", b"1"), ("a", b"2"), ("e", None))),
    StoredRecord(0, 17, 1545084650989, b"gone", None),
]


def test_the_event_has_lambdas_exact_shape() -> None:
    event = kafka_event("mytopic", 0, SAMPLE[:2], SERVERS)
    assert event == {
        "eventSource": "SelfManagedKafka",
        "bootstrapServers": SERVERS,
        "records": {
            "mytopic-0": [
                {
                    "topic": "mytopic",
                    "partition": 0,
                    "offset": 15,
                    "timestamp": 1545084650987,
                    "timestampType": "CREATE_TIME",
                    "key": "cmVjb3JkS2V5",
                    "value": "eyJrZXkiOiJ2YWx1ZSJ9",
                    "headers": [{"headerKey": [118]}],
                },
                {
                    "topic": "mytopic",
                    "partition": 0,
                    "offset": 16,
                    "timestamp": 1545084650988,
                    "timestampType": "CREATE_TIME",
                    "value": "bm8ga2V5",
                    "headers": [{"a": [49]}, {"a": [50]}, {"e": []}],
                },
            ]
        },
    }
    assert "value" not in kafka_event("t", 0, SAMPLE[2:], SERVERS)["records"]["t-0"][0]


def test_every_event_parses_with_the_kafka_event_data_class_and_the_parser_model() -> None:
    event = json.loads(json.dumps(kafka_event("mytopic", 0, SAMPLE, SERVERS)))
    parsed = KafkaEvent(event)
    assert parsed.event_source == "SelfManagedKafka"
    assert parsed.decoded_bootstrap_servers == SERVERS.split(",")
    records = list(parsed.records)
    assert [r.offset for r in records] == [15, 16, 17]
    assert [r.decoded_key for r in records] == [b"recordKey", None, b"gone"]
    assert records[0].json_value == {"key": "value"}
    assert records[0].decoded_headers == {"headerKey": b"v"}
    assert records[1].decoded_value == b"no key"
    model = parse(
        event=kafka_event("mytopic", 0, SAMPLE[:2], SERVERS), model=KafkaSelfManagedEventModel
    )
    (batch,) = model.records.values()
    assert [(r.offset, r.key, r.value) for r in batch] == [
        (15, b"recordKey", '{"key":"value"}'),
        (16, None, "no key"),
    ]
    assert batch[0].timestamp.timestamp() * 1000 == 1545084650987


def test_the_kafka_consumer_decorator_reads_the_event() -> None:
    seen: list[tuple[Any, Any, dict[str, bytes]]] = []

    @kafka_consumer(schema_config=SchemaConfig(value_schema_type="JSON"))
    def handler(event: ConsumerRecords, context: object) -> str:
        for record in event.records:
            seen.append((record.key, record.value, dict(record.headers)))
        return "ok"

    records = [StoredRecord(0, 5, 1, b"k", b'{"n": 1}', (("h", b"x"),)), SAMPLE[1]]
    records[1] = StoredRecord(0, 6, 2, None, b'{"n": 2}')
    assert handler(kafka_event("orders", 0, records, SERVERS), None) == "ok"
    assert [(k, v) for k, v, _ in seen] == [("k", {"n": 1}), (None, {"n": 2})]
    assert seen[0][2] == {"h": b"x"}


class _LambdaContext:
    function_name = "orders-handler"
    aws_request_id = "00000000-0000-0000-0000-000000000000"


def local_function(handler: Callable[[dict[str, Any], Any], Any]) -> Callable[..., InvokeOutcome]:
    """A scripted function that runs ``handler`` as Lambda would: the event and the reply
    through JSON, an exception as the function's error."""

    def behaviour(event: Mapping[str, Any]) -> InvokeOutcome:
        try:
            reply = handler(json.loads(json.dumps(event)), _LambdaContext())
        except Exception as error:  # the function's error, reported
            return InvokeOutcome(error=f"{type(error).__name__}: {error}")
        return InvokeOutcome(payload=json.loads(json.dumps(reply)))

    return behaviour


def test_a_batch_processor_handler_with_partial_failures_works_unchanged(
    make_engine: Callable[..., Engine],
) -> None:
    clock = Clock()
    eng = make_engine(clock_ms=clock)
    processor = BatchProcessor(event_type=EventType.Kafka)
    handled: list[int] = []
    failing = {b"bad"}

    def record_handler(record: KafkaEventRecord) -> None:
        if record.decoded_value in failing:
            raise ValueError("cannot handle it")
        handled.append(record.offset)

    def lambda_handler(event: dict[str, Any], context: Any) -> Any:
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    eng.create_topic("orders")
    sub = Subscription(
        name="handler",
        topic="orders",
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:orders-handler",
        max_batching_window_ms=0,
        report_batch_item_failures=True,
    )
    h = Harness(eng, sub, functions=Functions(local_function(lambda_handler)))
    eng.append("orders", [Record(value=v) for v in (b"a", b"b", b"bad", b"c")])
    report = h.dispatcher().on_appended([h.topic_id("orders")])
    assert (report.records_delivered, report.failures) == (2, 1)
    assert h.committed(sub, 0) == 2  # up to the first failed offset
    failing.clear()  # the record is fixed; the retry starts at the failed offset
    clock.advance(60_000)
    assert h.dispatcher().resume_due().records_delivered == 2
    assert h.functions.batches("orders-0") == [[0, 1, 2, 3], [2, 3]]
    assert handled == [0, 1, 3, 2, 3]
    assert h.committed(sub, 0) == 4
    eng.close()


def test_the_reply_of_batch_processor_names_the_first_failed_offset() -> None:
    reply = {
        "batchItemFailures": [
            {"itemIdentifier": {"partition": "orders-0", "offset": 16}},
            {"itemIdentifier": {"partition": "orders-0", "offset": 15}},
        ]
    }
    assert failure_offset(reply, "orders", 0, SAMPLE) == 15
    assert failure_offset({"batchItemFailures": []}, "orders", 0, SAMPLE) is None
    assert failure_offset({"batchItemFailures": None}, "orders", 0, SAMPLE) is None
    assert failure_offset(None, "orders", 0, SAMPLE) is None
    assert failure_offset({"other": 1}, "orders", 0, SAMPLE) is None
    malformed: list[object] = [
        "not a reply",
        {"batchItemFailures": "x"},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"itemIdentifier": {"partition": "orders-1", "offset": 16}}]},
        {"batchItemFailures": [{"itemIdentifier": {"partition": "orders-0", "offset": "16"}}]},
        {"batchItemFailures": [{"itemIdentifier": {"partition": "orders-0", "offset": 99}}]},
    ]
    for reply_ in malformed:
        assert failure_offset(reply_, "orders", 0, SAMPLE) == 15, reply_


def test_retries_back_off_exponentially_up_to_a_minute() -> None:
    assert [backoff_ms(n) for n in (1, 2, 3, 6, 7, 100)] == [
        1_000,
        2_000,
        4_000,
        32_000,
        60_000,
        60_000,
    ]

"""The dispatcher's Lambda handler on the sample events of `events/dispatcher/` and on the
records moto's DynamoDB stream holds after real appends, with a recording dispatcher."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from lakelog import Engine, Record
from lakelog.dispatcher_handler import appended_topics, make_handlers
from lakelog.errors import InvalidRequestError, UnavailableError
from lakelog.storage.keys import parse_chain_pk
from tests.contract.backends import REGION, new_client

EVENTS = Path(__file__).resolve().parents[2] / "events" / "dispatcher"
TOPIC_A = "6f1c2d3e-0a4b-4c5d-8e9f-0123456789ab"
TOPIC_B = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d"


def sample(name: str) -> dict[str, Any]:
    """A sample event of `events/dispatcher/` by name."""
    loaded: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return loaded


@dataclass
class RecordingDispatcher:
    """Records each call; ``on_appended`` raises for the topics in ``failing``."""

    failing: set[str] = field(default_factory=set)
    appended: list[list[str]] = field(default_factory=list)
    resumed: int = 0

    def on_appended(self, topic_ids: Sequence[str]) -> object:
        self.appended.append(list(topic_ids))
        if self.failing & set(topic_ids):
            raise UnavailableError("the ledger is throttling")
        return None

    def resume_due(self) -> object:
        self.resumed += 1
        return None


@dataclass
class Deadline:
    """A Lambda context whose deadline is ``remaining_ms`` away, shrinking by ``step_ms``
    at every look."""

    remaining_ms: int
    step_ms: int = 0
    function_name: str = "lakelog-test-dispatcher"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:test"
    aws_request_id: str = "test"

    def get_remaining_time_in_millis(self) -> int:
        remaining = self.remaining_ms
        self.remaining_ms -= self.step_ms
        return remaining


CONTEXT = Deadline(remaining_ms=300_000)


def _sequence(event: dict[str, Any], index: int) -> str:
    sequence: str = event["Records"][index]["dynamodb"]["SequenceNumber"]
    return sequence


def test_sample_batch_notifies_each_appended_topic_once_in_stream_order() -> None:
    dispatcher = RecordingDispatcher()
    reply = make_handlers(dispatcher).on_stream(sample("stream_batch"), CONTEXT)
    assert reply == {"batchItemFailures": []}
    assert dispatcher.appended == [[TOPIC_A], [TOPIC_B]]


def test_only_chain_item_inserts_count() -> None:
    topics, counted = appended_topics(sample("stream_batch")["Records"])
    assert counted == 4  # A seq 5 and 6, B seq 12 and 13
    event = sample("stream_batch")
    assert topics == [(TOPIC_A, _sequence(event, 0)), (TOPIC_B, _sequence(event, 3))]


def test_a_batch_without_appends_notifies_nothing() -> None:
    dispatcher = RecordingDispatcher()
    reply = make_handlers(dispatcher).on_stream(sample("stream_batch_ignored"), CONTEXT)
    assert reply == {"batchItemFailures": []}
    assert dispatcher.appended == []


def test_a_failing_topic_retries_the_batch_from_its_first_record() -> None:
    # Given a dispatcher failing for topic B, the second topic of the batch
    event = sample("stream_batch")
    dispatcher = RecordingDispatcher(failing={TOPIC_B})
    handlers = make_handlers(dispatcher)

    # When the batch arrives, A is handled and B fails
    reply = handlers.on_stream(event, CONTEXT)

    # Then the reply names B's first record, so Lambda checkpoints everything before it
    failed = _sequence(event, 3)
    assert reply == {"batchItemFailures": [{"itemIdentifier": failed}]}
    assert dispatcher.appended == [[TOPIC_A], [TOPIC_B]]

    # And when Lambda retries from that record and B recovers, both topics are notified
    # (A again: it has a record after B's first one)
    dispatcher.failing.clear()
    records = event["Records"]
    retried = {
        "Records": records[[r["dynamodb"]["SequenceNumber"] for r in records].index(failed) :]
    }
    assert handlers.on_stream(retried, CONTEXT) == {"batchItemFailures": []}
    assert dispatcher.appended[2:] == [[TOPIC_B], [TOPIC_A]]


def test_a_near_deadline_hands_no_further_topic_and_retries_from_it() -> None:
    event = sample("stream_batch")
    dispatcher = RecordingDispatcher()
    handlers = make_handlers(dispatcher, reserve_ms=10_000)
    reply = handlers.on_stream(event, Deadline(remaining_ms=15_000, step_ms=10_000))
    assert reply == {"batchItemFailures": [{"itemIdentifier": _sequence(event, 3)}]}
    assert dispatcher.appended == [[TOPIC_A]]


def test_the_first_topic_is_handed_over_however_little_time_is_left() -> None:
    dispatcher = RecordingDispatcher()
    handlers = make_handlers(dispatcher, reserve_ms=10_000)
    handlers.on_stream(sample("stream_batch"), Deadline(remaining_ms=1))
    assert dispatcher.appended == [[TOPIC_A]]


def test_schedule_event_resumes_due_deliveries_and_publishes_no_metric_when_it_succeeds(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # An idle deployment's schedule runs every minute: a metric per run would cost $0.30
    # a month on its own
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    dispatcher = RecordingDispatcher()
    with pytest.warns(UserWarning, match="No application metrics"):
        output = make_handlers(dispatcher).on_schedule(sample("schedule"), CONTEXT)
    assert output == {}
    assert dispatcher.resumed == 1
    assert '"_aws"' not in capsys.readouterr().out


@dataclass(frozen=True)
class _Report:
    resumed: int
    partitions: list[str]
    internal: object = None


def test_schedule_output_is_the_reports_json_fields() -> None:
    class Reporting(RecordingDispatcher):
        def resume_due(self) -> object:
            return _Report(2, ["t-0"], object())

    output = make_handlers(Reporting()).on_schedule(sample("schedule"), CONTEXT)
    assert output == {"resumed": 2, "partitions": ["t-0"]}


def test_the_function_handler_routes_by_event_shape() -> None:
    dispatcher = RecordingDispatcher()
    handler = make_handlers(dispatcher).handler
    assert handler(sample("stream_batch"), CONTEXT) == {"batchItemFailures": []}
    handler(sample("schedule"), CONTEXT)
    assert (dispatcher.appended, dispatcher.resumed) == ([[TOPIC_A], [TOPIC_B]], 1)
    with pytest.raises(InvalidRequestError):
        handler({"topic": "orders"}, CONTEXT)
    with pytest.raises(InvalidRequestError):
        make_handlers(dispatcher).on_stream({"Records": "none"}, CONTEXT)


def test_a_failing_schedule_raises_so_the_invocation_counts_as_an_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)

    class Failing(RecordingDispatcher):
        def resume_due(self) -> object:
            raise UnavailableError("throttled")

    with pytest.raises(UnavailableError):
        make_handlers(Failing()).on_schedule(sample("schedule"), CONTEXT)
    [emf] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf["ScheduleFailures"] == [1]


def test_stream_batches_publish_records_topics_and_failures(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    handlers = make_handlers(RecordingDispatcher(failing={TOPIC_B}))
    handlers.on_stream(sample("stream_batch"), CONTEXT)
    [emf] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf["service"] == "lakelog-dispatcher"
    assert (emf["StreamRecords"], emf["TopicsNotified"], emf["NotifyFailures"]) == ([4], [1], [1])


@pytest.mark.parametrize(
    ("pk", "topic_id"),
    [
        (f"t#{TOPIC_A}#0", TOPIC_A),
        (f"t#{TOPIC_A}#3", TOPIC_A),
        (f"p#{TOPIC_A}#0", None),
        (f"pr#{TOPIC_A}#42", None),
        ("t##0", None),
        (f"t#{TOPIC_A}", None),
        (f"t#{TOPIC_A}#x", None),
        ("g#orders", None),
    ],
)
def test_parse_chain_pk(pk: str, topic_id: str | None) -> None:
    assert parse_chain_pk(pk) == topic_id


@pytest.mark.moto
def test_real_stream_records_of_appends_notify_their_topic(engine: Engine) -> None:
    # Given two topics on moto, one with two appends, one only created
    engine.create_topic("orders", partitions=2)
    engine.create_topic("quiet", partitions=1)
    engine.append("orders", [Record(value=b"a", partition=0)])
    engine.append("orders", [Record(value=b"b", partition=1), Record(value=b"c", partition=0)])
    orders_id = engine.describe_topic("orders").topic_id

    # When the ledger's stream records are handed over as Lambda hands them
    dynamodb = new_client("dynamodb")
    # moto answers the streams API only at the endpoint given explicitly
    streams = boto3.client(
        "dynamodbstreams",
        region_name=REGION,
        endpoint_url=f"https://streams.dynamodb.{REGION}.amazonaws.com",
    )
    table = engine.context.ledger._table  # type: ignore[attr-defined]
    stream_arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records += streams.get_records(ShardIterator=iterator)["Records"]
    event = {"Records": [{**r, "eventSourceARN": stream_arn} for r in records]}
    assert {r["dynamodb"]["StreamViewType"] for r in records} == {"KEYS_ONLY"}
    dispatcher = RecordingDispatcher()
    reply = make_handlers(dispatcher).on_stream(event, CONTEXT)

    # Then only the topic with appends is notified, once per batch
    assert reply == {"batchItemFailures": []}
    assert dispatcher.appended == [[orders_id]]
    assert appended_topics(event["Records"])[1] == 2

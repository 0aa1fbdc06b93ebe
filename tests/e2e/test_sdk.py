"""The SDK against ``lakelog dev``: over HTTP, and in direct mode on the same moto."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

import boto3
import pytest

from lakelog import Client, ConsumerRecord, ResourceNames, TopicPartition
from lakelog.client import CommitFailedError
from lakelog.client.http import HttpReply, HttpTransport
from lakelog.contract.operations import Fetch, ListTopics
from lakelog.errors import (
    OffsetOutOfRangeError,
    TopicExistsError,
    TopicNotFoundError,
)
from tests.e2e.conftest import DevProcess
from tests.support import emulated_client

BACKSTOP_S = 120
"""Longest wait for something that must happen; only a hung server reaches it."""


@pytest.fixture(scope="module")
def http(dev_server: DevProcess) -> Iterator[Client]:
    with Client(dev_server.api_url) as client:
        yield client


@pytest.fixture(scope="module")
def direct(dev_server: DevProcess) -> Client:
    """The engine in this process, on the dev server's moto (as a Lambda would run it)."""
    prefix = dev_server.bucket.removesuffix("-segments")
    return Client.direct(
        names=ResourceNames.for_prefix(prefix),
        s3_client=emulated_client("s3", dev_server.s3_endpoint_url),
        dynamodb_client=emulated_client("dynamodb", dev_server.s3_endpoint_url),
    )


@pytest.fixture(params=["http", "direct"])
def client(request: pytest.FixtureRequest) -> Client:
    found: Client = request.getfixturevalue(request.param)
    return found


def _read(client: Client, topic: str, partitions: int, count: int) -> list[ConsumerRecord]:
    consumer = client.consumer(auto_offset_reset="earliest", consumer_timeout_ms=3000)
    consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
    records: list[ConsumerRecord] = []
    for record in consumer:
        records.append(record)
        if len(records) == count:
            break
    consumer.close()
    return records


def test_round_trip(client: Client, topic_name: str) -> None:
    client.create_topic(topic_name, partitions=3)
    sent = [
        (b"key-%d" % (i % 7) if i % 3 else None, b"value-%d" % i if i % 11 else None)
        for i in range(300)
    ]
    with client.producer(linger_ms=10) as producer:
        futures = [
            producer.send(topic_name, key=key, value=value, headers=[("i", b"%d" % i), ("n", None)])
            for i, (key, value) in enumerate(sent)
        ]
        metas = [f.get(timeout=30) for f in futures]
        assert producer.metrics().appends < 30
    records = _read(client, topic_name, 3, 300)
    by_position = {(r.partition, r.offset): r for r in records}
    assert len(by_position) == 300
    for i, ((key, value), meta) in enumerate(zip(sent, metas, strict=True)):
        record = by_position[(meta.partition, meta.offset)]
        assert (record.key, record.value, record.timestamp) == (key, value, meta.timestamp)
        assert record.headers == [("i", b"%d" % i), ("n", None)]
    described = client.describe_topic(topic_name)
    assert sum(p.high_watermark for p in described.partitions) == 300
    assert topic_name in client.list_topics()
    client.alter_topic(topic_name, partitions=4, config={"retention_ms": 3_600_000})
    assert len(client.describe_topic(topic_name).partitions) == 4
    client.delete_topic(topic_name)
    assert topic_name not in client.list_topics()


def test_both_modes_see_the_same_log(http: Client, direct: Client, topic_name: str) -> None:
    http.create_topic(topic_name, partitions=2)
    with http.producer(compression_type="gzip") as producer:
        over_http = [producer.send(topic_name, value=b"h%d" % i, partition=0) for i in range(50)]
    with direct.producer() as producer:
        in_process = [producer.send(topic_name, value=b"d%d" % i, partition=1) for i in range(50)]
    assert [f.get().offset for f in over_http + in_process] == list(range(50)) * 2
    assert [r.value for r in _read(direct, topic_name, 1, 50)] == [b"h%d" % i for i in range(50)]
    records = _read(http, topic_name, 2, 100)
    assert sorted(r.value for r in records if r.partition == 1) == sorted(
        b"d%d" % i for i in range(50)
    )


def test_errors_arrive_as_the_same_exceptions(client: Client, topic_name: str) -> None:
    with pytest.raises(TopicNotFoundError):
        client.describe_topic(topic_name)
    client.create_topic(topic_name)
    with pytest.raises(TopicExistsError):
        client.create_topic(topic_name)
    with pytest.raises(OffsetOutOfRangeError) as raised:
        client.call(Fetch(topic_name, 0, 99, 10, 1 << 20))
    assert (raised.value.log_start_offset, raised.value.high_watermark) == (0, 0)


def test_a_group_over_http_shares_commits_and_replays(http: Client, topic_name: str) -> None:
    """The server keeps real time, so sessions may lapse on a slow machine and leases move:
    what is asserted holds whenever they move (a batch counts once its commit lands)."""
    http.create_topic(topic_name, partitions=4)
    with http.producer() as producer:
        for i in range(40):
            producer.send(topic_name, value=b"%d" % i, partition=i % 4)
    group = f"g-{topic_name}"
    members = [
        http.consumer(
            topic_name,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=3000,
        )
        for _ in range(2)
    ]
    processed: list[ConsumerRecord] = []
    deadline = time.monotonic() + BACKSTOP_S
    while len(processed) < 40 or [len(m.assignment()) for m in members] != [2, 2]:
        assert time.monotonic() < deadline, (len(processed), [m.assignment() for m in members])
        for member in members:
            batch = [r for records in member.poll(timeout_ms=100).values() for r in records]
            try:
                member.commit()
            except CommitFailedError:  # its lease moved: the new owner reads the batch again
                continue
            processed.extend(batch)
    assert sorted(int(r.value) for r in processed) == list(range(40))
    described = http.describe_group(group)
    assert {p.lag for p in described.partitions} == {0}
    for member in members:
        member.close()
    assert http.reset_offsets(group, topic_name, to="earliest") == {p: 0 for p in range(4)}
    replay = http.consumer(
        topic_name, group_id=group, enable_auto_commit=False, consumer_timeout_ms=BACKSTOP_S * 1000
    )
    replayed: set[int] = set()
    for record in replay:  # from the reset offsets: every record again
        replayed.add(int(record.value))
        if len(replayed) == 40:
            break
    assert replayed == set(range(40))
    replay.close()


def test_requests_are_sigv4_signed_for_execute_api() -> None:
    session = boto3.Session(
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret", region_name="us-east-1"
    )
    sent: dict[str, Any] = {}

    def send(method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> HttpReply:
        sent.update(headers, url=url)
        return HttpReply(200, b'{"topics": []}')

    transport = HttpTransport(
        "https://abc123.execute-api.eu-west-1.amazonaws.com", session=session, sender=send
    )
    assert transport.call(ListTopics()) == []
    assert sent["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in sent["Authorization"]
    assert sent["url"] == "https://abc123.execute-api.eu-west-1.amazonaws.com/v1/topics"
    local = HttpTransport("http://127.0.0.1:1", session=session)
    assert local._credentials is None

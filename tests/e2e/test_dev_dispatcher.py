"""``lakelog dev`` wires its appends to the trigger dispatcher: a record produced over HTTP
reaches ``on_appended`` of the dispatcher the server built, with local: invocation and
moto's SQS as its ports."""

from __future__ import annotations

import asyncio
import io
import re
import uuid
from typing import Any

import pytest

from lakelog.client import Client
from lakelog.contract import operations as ops
from lakelog.kafka.apis import Session
from lakelog.local import server as local_server
from lakelog.local.server import LocalService
from lakelog.service.invoke import InvokeOutcome
from lakelog.service.invokers import RoutingInvoker, SqsQueueSender
from lakelog.types import Record
from tests.unit.test_local_dispatching import WAIT, Recording


def _prefix() -> str:
    """A resource prefix of its own (moto's state outlives one server in this process)."""
    return f"lakelog-{uuid.uuid4().hex[:12]}"


def test_records_produced_over_http_reach_the_dispatcher(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the dev server, with a recording dispatcher in place of the real one
    dispatcher = Recording()
    built: dict[str, Any] = {}

    def dispatcher_for(engine: Any, invoker: Any, sender: Any, **kwargs: Any) -> Recording:
        built.update(engine=engine, invoker=invoker, sender=sender, **kwargs)
        return dispatcher

    monkeypatch.setattr(local_server, "dispatcher_for", dispatcher_for)
    with LocalService(port=0, prefix=_prefix()) as service, Client(service.api_url) as client:
        client.create_topic("orders", partitions=2)
        topic_id = client.describe_topic("orders").topic_id

        # When a record is produced
        with client.producer() as producer:
            producer.send("orders", value=b"hello", partition=1).result(timeout=WAIT)

        # Then the dispatcher hears of the topic from the worker, off the request path
        assert dispatcher.entered.wait(WAIT)
        assert service.dispatcher.wait_idle(WAIT)
        assert dispatcher.appended == [[topic_id]]
        assert dispatcher.resumed >= 1

    # And it was built to call local: functions in process (never Lambda) and moto's SQS
    invoker = built["invoker"]
    assert isinstance(invoker, RoutingInvoker)
    assert invoker.invoke("arn:aws:lambda:us-east-1:123456789012:function:f", {}) == (
        InvokeOutcome(error="arn: functions cannot be invoked here")
    )
    assert isinstance(built["sender"], SqsQueueSender)
    assert built["bootstrap_servers"] == "127.0.0.1:9092"


def test_appends_through_the_kafka_gateway_reach_the_dispatcher_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the dev server serving the Kafka protocol, with a recording dispatcher
    dispatcher = Recording()
    monkeypatch.setattr(local_server, "dispatcher_for", lambda *_a, **_k: dispatcher)
    with LocalService(port=0, kafka_port=0, prefix=_prefix()) as service:
        gateway = service.kafka_gateway
        assert gateway is not None
        assert service.bootstrap_servers == service.kafka_bootstrap
        with Client(service.api_url) as client:
            client.create_topic("orders", partitions=1)
            topic_id = client.describe_topic("orders").topic_id

        # When a Kafka connection's session appends, as the gateway's Produce does
        session = Session(gateway, "arn:aws:iam::000000000000:user/local-developer")
        append = ops.Append("orders", [Record(value=b"hello")])
        [written] = asyncio.run(session.call(append))

        # Then the dispatcher hears of the topic, as it does of an append over HTTP
        assert written.offset == 0
        assert dispatcher.entered.wait(WAIT)
        assert service.dispatcher.wait_idle(WAIT)
        assert dispatcher.appended == [[topic_id]]


def test_the_dev_server_appends_and_goes_idle_with_whatever_dispatcher_it_has() -> None:
    # Without lakelog.service.dispatch in the build nothing is delivered; appends still work
    with LocalService(port=0, prefix=_prefix()) as service, Client(service.api_url) as client:
        client.create_topic("orders", partitions=1)
        with client.producer() as producer:
            producer.send("orders", value=b"hello").result(timeout=WAIT)
        assert service.dispatcher.wait_idle(WAIT)


def test_without_subscriptions_the_real_dispatcher_prints_nothing_but_the_access_log(
    capfd: pytest.CaptureFixture[str],
) -> None:
    # Given the dev server with its real dispatcher and a topic nobody subscribed to
    log = io.StringIO()
    with (
        LocalService(port=0, prefix=_prefix(), access_log=log) as service,
        Client(service.api_url) as client,
    ):
        client.create_topic("orders", partitions=2)

        # When records are produced and the dispatcher has handled the append
        with client.producer() as producer:
            producer.send("orders", value=b"hello", partition=1).result(timeout=WAIT)
        assert service.dispatcher.wait_idle(WAIT)

    # Then the server printed its access log lines and nothing else
    printed = capfd.readouterr()
    assert printed.out == "" and printed.err == "", printed
    assert all(
        re.fullmatch(r"[A-Z]+ /v1/\S+ -> \d{3} \(\d+ ms\)", x) for x in log.getvalue().splitlines()
    ), log.getvalue()

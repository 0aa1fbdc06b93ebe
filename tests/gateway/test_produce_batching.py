"""Produce requests share appends (ADR 0016 §3.1): the plain records of a topic that arrive
within the linger, from any connection or pipelined on one, become one append, in the
order they arrived, and each request is answered with its own offsets."""

from __future__ import annotations

from kio.schema.errors import ErrorCode
from kio.schema.produce.v9.request import ProduceRequest

from lakelog.service.engine import Engine
from tests.gateway.conftest import StartGateway
from tests.gateway.test_produce import Connection, batch, produce_request, read_all

MINUTE_MS = 60_000
"""A linger no test waits out: batches here are appended because they are full."""


def test_requests_of_three_connections_within_the_linger_share_one_append(
    engine: Engine, start_gateway: StartGateway
) -> None:
    engine.create_topic("shared", 3)
    gateway = start_gateway(append_linger_ms=MINUTE_MS, append_batch_bytes=3_000)
    connections = [Connection(gateway) for _ in range(3)]
    try:
        # Given three producers' requests of 1,000 record bytes each (the third fills the
        # batch)
        for partition, connection in enumerate(connections):
            connection.send(produce_request("shared", {partition: batch(bytes(1_000))}), 1)
        answers = [connection.receive(ProduceRequest)[1] for connection in connections]
    finally:
        for connection in connections:
            connection.close()

    # Then one append landed all three, and each request got its own partition's offset
    assert gateway.gateway.batcher.appends == 1
    for partition, answer in enumerate(answers):
        (produced,) = answer.responses[0].partition_responses
        assert (produced.index, produced.error_code, produced.base_offset) == (
            partition,
            ErrorCode.none,
            0,
        )
    assert sorted(r.partition for r in read_all(engine, "shared", 3)) == [0, 1, 2]


def test_pipelined_requests_of_one_connection_share_an_append_in_the_order_sent(
    engine: Engine, start_gateway: StartGateway
) -> None:
    engine.create_topic("ordered", 1)
    gateway = start_gateway(append_linger_ms=MINUTE_MS, append_batch_bytes=3_000)
    connection = Connection(gateway)
    try:
        # Given three requests sent back to back, before any answer
        for n, value in enumerate((b"a", b"b", b"c"), start=1):
            connection.send(produce_request("ordered", {0: batch(value * 1_000)}), n)
        answers = [connection.receive(ProduceRequest) for _ in range(3)]
    finally:
        connection.close()

    # Then they were appended together, in the order sent, and answered in that order
    assert gateway.gateway.batcher.appends == 1
    assert [correlation_id for correlation_id, _ in answers] == [1, 2, 3]
    assert [a.responses[0].partition_responses[0].base_offset for _, a in answers] == [0, 1, 2]
    assert [r.value[:1] for r in read_all(engine, "ordered", 1) if r.value] == [b"a", b"b", b"c"]


def test_without_a_linger_each_request_is_its_own_append(
    engine: Engine, start_gateway: StartGateway
) -> None:
    engine.create_topic("alone", 1)
    gateway = start_gateway(append_linger_ms=0)
    connection = Connection(gateway)
    try:
        for n in range(1, 4):
            connection.send(produce_request("alone", {0: batch(b"x")}), n)
            assert connection.receive(ProduceRequest)[0] == n
    finally:
        connection.close()
    assert gateway.gateway.batcher.appends == 3

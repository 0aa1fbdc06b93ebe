"""Producer ids over HTTP: unguessable and held by the principal that obtained them."""

from __future__ import annotations

import base64
import itertools
from typing import Any

from tests.integration.api.conftest import (
    ACCOUNT,
    PRODUCER,
    SAMPLE_PRODUCER_ID,
    Api,
    assert_error,
)

INTRUDER = f"arn:aws:sts::{ACCOUNT}:assumed-role/orders-producer/intruder"


def _init(api: Api, principal: str) -> int:
    reply = api.send("init_producer", principal=principal)
    assert reply.status == 200, reply.text
    assert reply.json["epoch"] == 0
    producer_id: int = reply.json["id"]
    return producer_id


def _produce(api: Api, principal: str, producer_id: int, value: str, sequence: int = 0) -> Any:
    records = [{"value": {"type": "STRING", "data": value}, "partition": 0}]
    producer = {"id": producer_id, "epoch": 0, "sequence": sequence}
    return api.send("produce", principal=principal, body={"records": records, "producer": producer})


def _stored(api: Api, offset: int) -> bytes:
    fetched = api.send("fetch", partition=0, query={"offset": offset}).json
    return base64.b64decode(fetched["records"][0]["value"])


def test_an_id_the_caller_does_not_hold_is_refused_and_the_owner_loses_nothing(
    orders: Api,
) -> None:
    owned = _init(orders, PRODUCER)

    # An intruder guesses the next id, or takes the owner's: refused, nothing written
    for guessed in (owned + 1, owned):
        reply = _produce(orders, INTRUDER, guessed, "intruder")
        body = assert_error(reply, 403, "unknown_producer")
        assert body["producer_id"] == guessed
    assert orders.engine.list_offset("orders", 0, "latest") == 0

    # The owner's next id and its first batch: stored, acknowledged at its own record
    for producer_id in (owned, _init(orders, PRODUCER)):
        reply = _produce(orders, PRODUCER, producer_id, f"owner {producer_id}")
        assert reply.status == 200, reply.text
        [ack] = reply.json["results"]
        assert _stored(orders, ack["offset"]) == f"owner {producer_id}".encode()
    assert orders.engine.list_offset("orders", 0, "latest") == 2


def test_producer_ids_are_unguessable_positive_int64s(api: Api) -> None:
    ids = [_init(api, PRODUCER) for _ in range(8)]

    assert len(set(ids)) == len(ids)
    assert all(0 < i < 2**63 for i in ids)
    assert not any(b - a == 1 for a, b in itertools.pairwise(ids))
    assert max(ids) > 2**40  # drawn from 63 bits, not counted from 1


def test_an_id_never_issued_is_refused(orders: Api) -> None:
    reply = _produce(orders, PRODUCER, SAMPLE_PRODUCER_ID + 1, "guess")

    assert_error(reply, 403, "unknown_producer")
    assert orders.engine.list_offset("orders", 0, "latest") == 0

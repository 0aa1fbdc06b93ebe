"""Every served version of every group API is answered, and its answer encodes (ADR 0016
§2 and §5): the handlers read fields that some versions lack, and build answers whose
fields differ by version; clients exercise only the versions they negotiate."""

from __future__ import annotations

import asyncio
import datetime
import io
from collections.abc import Iterator
from typing import Any

import pytest
from kio.index import load_request_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_writer

from lakelog.kafka import GatewayConfig, KafkaGateway
from lakelog.kafka import groups as group_apis
from lakelog.kafka.apis import Api, Session
from lakelog.kafka.protocol import build, item_type
from lakelog.service.engine import Engine

APIS = (
    group_apis.FIND_COORDINATOR,
    group_apis.JOIN_GROUP,
    group_apis.SYNC_GROUP,
    group_apis.HEARTBEAT,
    group_apis.LEAVE_GROUP,
    group_apis.OFFSET_COMMIT,
    group_apis.OFFSET_FETCH,
    group_apis.LIST_GROUPS,
    group_apis.DESCRIBE_GROUPS,
)
SESSION = datetime.timedelta(milliseconds=6000)


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    engine.create_topic("orders", 2)
    gateway = KafkaGateway(engine, engine.access_control("allow"), GatewayConfig(port=0))
    yield Session(gateway, "local", client_id="probe")
    asyncio.run(gateway.stop())


def _request(api: Api, version: int, group: str) -> Any:
    """A minimal request of ``api`` at ``version`` for ``group``."""
    schema = load_request_schema(api.key, version)
    fields: dict[str, Any] = {
        "group_id": group,
        "key": group,
        "coordinator_keys": (group,),
        "groups": (group,),
        "member_id": "",
        "generation_id": -1,
        "generation_id_or_member_epoch": -1,
        "session_timeout": SESSION,
        "rebalance_timeout": SESSION,
        "protocol_type": "consumer",
        "topics": (),
    }
    if api is group_apis.JOIN_GROUP:
        protocol = item_type(schema, "protocols")
        fields["protocols"] = (build(protocol, name="range", metadata=b""),)
    if api is group_apis.LEAVE_GROUP and version >= 3:
        identity = item_type(schema, "members")
        fields["members"] = (build(identity, member_id="nobody"),)
    if api is group_apis.OFFSET_COMMIT:
        topic = item_type(schema, "topics")
        partition = item_type(topic, "partitions")
        fields["topics"] = (
            build(topic, name="orders", partitions=(build(partition, committed_offset=3),)),
        )
    if api is group_apis.OFFSET_FETCH:
        if version >= 8:
            entry = item_type(schema, "groups")
            fields["groups"] = (build(entry, group_id=group, topics=None),)
        else:
            fields["topics"] = None if version >= 2 else ()
    return build(schema, **fields)


def _codes(entity: Any) -> list[ErrorCode]:
    """Every error code in an answer, depth first."""
    found: list[ErrorCode] = []
    for name in getattr(entity, "__dataclass_fields__", {}):
        value = getattr(entity, name)
        if isinstance(value, ErrorCode):
            found.append(value)
        elif isinstance(value, tuple):
            for item in value:
                found.extend(_codes(item))
        elif hasattr(value, "__dataclass_fields__"):
            found.extend(_codes(value))
    return found


EXPECTED = {
    group_apis.HEARTBEAT.key: {ErrorCode.unknown_member_id},
    group_apis.SYNC_GROUP.key: {ErrorCode.unknown_member_id},
    group_apis.LEAVE_GROUP.key: {ErrorCode.unknown_member_id, ErrorCode.none},
}
"""The codes a first request of a member nobody knows gets; others: none."""


@pytest.mark.parametrize(
    ("api", "version"),
    [
        pytest.param(api, version, id=f"{api.handle.__name__.strip('_')}-v{version}")
        for api in APIS
        for version in range(api.min_version, api.max_version + 1)
    ],
)
def test_each_served_version_is_answered_in_that_version(
    session: Session, api: Api, version: int
) -> None:
    group = f"g{api.key}v{version}"
    answer = asyncio.run(api.handle(_request(api, version, group), session))

    assert (answer.__api_key__, answer.__version__) == (api.key, version)
    entity_writer(type(answer))(io.BytesIO(), answer)  # it encodes
    codes = set(_codes(answer))
    if api is group_apis.JOIN_GROUP:
        expected = {ErrorCode.member_id_required if version >= 4 else ErrorCode.none}
    else:
        expected = EXPECTED.get(api.key, {ErrorCode.none})
    assert codes <= expected, codes

"""Kafka consumer groups' coordinator state: a port and its memory and DynamoDB adapters.

One record per Kafka group (ADR 0016 §5): its state, generation, protocol, leader,
rebalance deadline and members, replaced whole by conditional writes on a version, so
that gateways racing on one group never lose an update. The group's committed offsets
are not here: they are the lakelog group's (`lakelog.storage.groups`, ADR 0009).

Items (catalog table; keys in `lakelog.storage.keys`)
    ``pk = "g#{group}"``, ``sk = "kafka"``: ``v`` N (the version), ``state`` S,
    ``generation`` N, ``deadline_ms`` N, ``protocol_type`` S, ``protocol`` S and
    ``leader`` S (each absent when none), ``members`` L of M, one per member in join
    order: ``id`` S, ``client`` S, ``host`` S, ``session`` N and ``rebalance`` N (timeouts,
    ms), ``heard`` N (last heartbeat, epoch ms), ``joined`` BOOL, ``protocols`` L of
    L[S name, B metadata], and ``instance`` S and ``assignment`` B when present.
    ``pk = "kafka-group"``, ``sk = "{group}"``: the listing, put with the group item's
    creation in one transaction; never removed (Kafka lists empty groups too).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final, Protocol

from botocore.exceptions import ClientError

from lakelog.storage.attributes import (
    Item,
    cancellation_codes,
    cancellation_error,
    condition_failed,
    get_int,
    num,
    transaction_cancelled,
)
from lakelog.storage.errors import translate_client_errors
from lakelog.storage.keys import KAFKA_GROUP_LIST_PK, KAFKA_GROUP_SK, group_pk

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = [
    "DynamoKafkaGroupStore",
    "KafkaGroup",
    "KafkaGroupStore",
    "KafkaMember",
    "MemoryKafkaGroupStore",
]

EMPTY: Final = "Empty"


@dataclass(frozen=True, slots=True)
class KafkaMember:
    """One member of a Kafka group as the coordinator keeps it.

    ``heard_ms`` is its last heartbeat (or join, or the end of the join phase);
    ``joined`` says it joined the current ``PreparingRebalance``; ``assignment`` is what
    the leader gave it for the current generation (None before the leader's SyncGroup).
    """

    member_id: str
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    heard_ms: int
    protocols: tuple[tuple[str, bytes], ...]
    instance_id: str | None = None
    joined: bool = False
    assignment: bytes | None = None


@dataclass(frozen=True, slots=True)
class KafkaGroup:
    """A Kafka group's coordinator state; ``version`` 0 stands for a group never stored."""

    group: str
    state: str = EMPTY
    generation: int = 0
    protocol_type: str | None = None
    protocol: str | None = None
    leader: str | None = None
    deadline_ms: int = 0
    members: tuple[KafkaMember, ...] = ()
    version: int = 0


class KafkaGroupStore(Protocol):
    """Kafka groups' coordinator state, one record per group, written conditionally."""

    def read(self, group: str) -> KafkaGroup | None:
        """The group's record (strongly consistent), or None if it was never stored."""

    def write(self, group: KafkaGroup) -> bool:
        """Store ``group`` at version ``group.version + 1`` if the stored version is still
        ``group.version`` (0: none stored; the listing item is then added too); False, and
        nothing written, if not."""

    def list_groups(self) -> list[str]:
        """Every Kafka group ever stored, by name."""


class MemoryKafkaGroupStore:
    """The `KafkaGroupStore` port in memory."""

    def __init__(self) -> None:
        self._groups: dict[str, KafkaGroup] = {}
        self._lock = threading.Lock()

    def read(self, group: str) -> KafkaGroup | None:
        with self._lock:
            return self._groups.get(group)

    def write(self, group: KafkaGroup) -> bool:
        with self._lock:
            stored = self._groups.get(group.group)
            if (0 if stored is None else stored.version) != group.version:
                return False
            self._groups[group.group] = replace(group, version=group.version + 1)
            return True

    def list_groups(self) -> list[str]:
        with self._lock:
            return sorted(self._groups)


def _key(group: str) -> Item:
    return {"pk": {"S": group_pk(group)}, "sk": {"S": KAFKA_GROUP_SK}}


def _member_to_value(member: KafkaMember) -> Item:
    value: Item = {
        "id": {"S": member.member_id},
        "client": {"S": member.client_id},
        "host": {"S": member.client_host},
        "session": num(member.session_timeout_ms),
        "rebalance": num(member.rebalance_timeout_ms),
        "heard": num(member.heard_ms),
        "joined": {"BOOL": member.joined},
        "protocols": {"L": [{"L": [{"S": n}, {"B": m}]} for n, m in member.protocols]},
    }
    if member.instance_id is not None:
        value["instance"] = {"S": member.instance_id}
    if member.assignment is not None:
        value["assignment"] = {"B": member.assignment}
    return {"M": value}


def _member_from_value(value: Item) -> KafkaMember:
    fields = value["M"]
    return KafkaMember(
        member_id=fields["id"]["S"],
        client_id=fields["client"]["S"],
        client_host=fields["host"]["S"],
        session_timeout_ms=get_int(fields, "session"),
        rebalance_timeout_ms=get_int(fields, "rebalance"),
        heard_ms=get_int(fields, "heard"),
        protocols=tuple(
            (pair["L"][0]["S"], bytes(pair["L"][1]["B"])) for pair in fields["protocols"]["L"]
        ),
        instance_id=fields["instance"]["S"] if "instance" in fields else None,
        joined=bool(fields["joined"]["BOOL"]),
        assignment=bytes(fields["assignment"]["B"]) if "assignment" in fields else None,
    )


def _to_item(group: KafkaGroup, version: int) -> Item:
    item: Item = {
        **_key(group.group),
        "v": num(version),
        "state": {"S": group.state},
        "generation": num(group.generation),
        "deadline_ms": num(group.deadline_ms),
        "members": {"L": [_member_to_value(member) for member in group.members]},
    }
    for name in ("protocol_type", "protocol", "leader"):
        value = getattr(group, name)
        if value is not None:
            item[name] = {"S": value}
    return item


def _from_item(group: str, item: Item) -> KafkaGroup:
    def text(name: str) -> str | None:
        return item[name]["S"] if name in item else None

    return KafkaGroup(
        group=group,
        state=item["state"]["S"],
        generation=get_int(item, "generation"),
        protocol_type=text("protocol_type"),
        protocol=text("protocol"),
        leader=text("leader"),
        deadline_ms=get_int(item, "deadline_ms"),
        members=tuple(_member_from_value(value) for value in item["members"]["L"]),
        version=get_int(item, "v"),
    )


class DynamoKafkaGroupStore:
    """The `KafkaGroupStore` port on the catalog table (items in the module docstring)."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    @translate_client_errors
    def read(self, group: str) -> KafkaGroup | None:
        reply = self._client.get_item(TableName=self._table, Key=_key(group), ConsistentRead=True)
        item = reply.get("Item")
        return None if item is None else _from_item(group, item)

    @translate_client_errors
    def write(self, group: KafkaGroup) -> bool:
        item = _to_item(group, group.version + 1)
        try:
            if group.version == 0:
                listing: Item = {"pk": {"S": KAFKA_GROUP_LIST_PK}, "sk": {"S": group.group}}
                self._client.transact_write_items(
                    TransactItems=[
                        {
                            "Put": {
                                "TableName": self._table,
                                "Item": item,
                                "ConditionExpression": "attribute_not_exists(pk)",
                            }
                        },
                        {"Put": {"TableName": self._table, "Item": listing}},
                    ]
                )
            else:
                self._client.put_item(
                    TableName=self._table,
                    Item=item,
                    ConditionExpression="v = :v",
                    ExpressionAttributeValues={":v": num(group.version)},
                )
        except ClientError as exc:
            if condition_failed(exc):
                return False
            if transaction_cancelled(exc):
                error = cancellation_error(cancellation_codes(exc), "Kafka group write")
                if error is not None:
                    raise error from None
                return False  # a failed condition, or a racing transaction: read again
            raise
        return True

    @translate_client_errors
    def list_groups(self) -> list[str]:
        names: list[str] = []
        paginator = self._client.get_paginator("query")
        for page in paginator.paginate(
            TableName=self._table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": KAFKA_GROUP_LIST_PK}},
            ConsistentRead=True,
        ):
            names.extend(item["sk"]["S"] for item in page.get("Items", []))
        return names

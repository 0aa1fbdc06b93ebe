"""DynamoDB adapter of the `GroupStore` port: consumer groups on the catalog table.

Item attributes (the keys are in `lakelog.storage.keys`; the protocol is ADR 0009)

Member (``pk = g#{group}``, ``sk = m#{member_id}``)
    ``topics`` L[S] (sorted), ``session_timeout_ms`` N, ``expires_ms`` N (end of the
    session, epoch milliseconds), ``expires_at`` N (the table's TTL attribute, epoch
    seconds, a day after ``expires_ms``, so DynamoDB removes members that never left).
Lease (``pk = g#{group}``, ``sk = l#{topic}#{partition:05d}``)
    ``topic_id`` S, ``owner`` S (absent when free), ``lease_epoch`` N,
    ``committed_offset`` N and ``committed_ms`` N (both absent until a commit or reset).

Writes
    take and give up: one conditional ``UpdateItem`` on ``lease_epoch`` that leaves
    ``committed_offset`` alone, so a commit that lands first is never overwritten;
    commit: one ``UpdateItem`` for one offset, else one ``TransactWriteItems``, each
    conditional on ``owner`` and ``lease_epoch``; reset: ``TransactWriteItems`` of up to
    100 puts conditional on ``lease_epoch``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from lakelog.errors import UnavailableError
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
from lakelog.storage.keys import group_pk, lease_sort_key, member_sort_key, parse_group_sort_key
from lakelog.storage.ports import GroupState, LeaseRecord, MemberRecord
from lakelog.storage.resources import TTL_ATTRIBUTE
from lakelog.storage.rules import (
    TRANSACTION_ITEMS,
    commit_needed,
    fenced,
    keeps_commit,
    transaction_chunks,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from lakelog.types import OffsetCommit

__all__ = ["MEMBER_TTL_GRACE_MS", "TRANSACTION_ITEMS", "DynamoGroupStore"]

MEMBER_TTL_GRACE_MS: Final = 24 * 3600 * 1000
"""How long after its session ends a member item may be removed by DynamoDB's TTL."""

CONFLICT_ATTEMPTS: Final = 3
"""Times a transaction cancelled only by conflicts with other transactions is sent."""

_OWNED_AT_EPOCH = "attribute_exists(pk) AND #owner = :owner AND lease_epoch = :epoch"


def _member_from_item(member_id: str, item: Item) -> MemberRecord:
    return MemberRecord(
        member_id=member_id,
        topics=tuple(value["S"] for value in item.get("topics", {}).get("L", [])),
        session_timeout_ms=get_int(item, "session_timeout_ms"),
        expires_ms=get_int(item, "expires_ms"),
    )


def _lease_from_item(topic: str, partition: int, item: Item) -> LeaseRecord:
    return LeaseRecord(
        topic=topic,
        partition=partition,
        topic_id=item.get("topic_id", {}).get("S", ""),
        lease_epoch=get_int(item, "lease_epoch"),
        owner=item["owner"]["S"] if "owner" in item else None,
        committed_offset=get_int(item, "committed_offset") if "committed_offset" in item else None,
        committed_ms=get_int(item, "committed_ms") if "committed_ms" in item else None,
    )


def _epoch_condition(seen: LeaseRecord) -> tuple[str, Item]:
    """The condition "the lease is still at ``seen``'s epoch" and its values."""
    if seen.lease_epoch == 0:
        return "attribute_not_exists(pk)", {}
    return "lease_epoch = :seen", {":seen": num(seen.lease_epoch)}


class DynamoGroupStore:
    """Group members and leases in the catalog table, through an injected boto3 client."""

    def __init__(self, dynamodb_client: DynamoDBClient, table: str) -> None:
        self._ddb = dynamodb_client
        self._table = table

    @staticmethod
    def _lease_key(group: str, topic: str, partition: int) -> Item:
        return {"pk": {"S": group_pk(group)}, "sk": {"S": lease_sort_key(topic, partition)}}

    @staticmethod
    def _member_key(group: str, member_id: str) -> Item:
        return {"pk": {"S": group_pk(group)}, "sk": {"S": member_sort_key(member_id)}}

    @translate_client_errors
    def put_member(self, group: str, member: MemberRecord) -> None:
        self._ddb.put_item(
            TableName=self._table,
            Item={
                **self._member_key(group, member.member_id),
                "topics": {"L": [{"S": topic} for topic in sorted(member.topics)]},
                "session_timeout_ms": num(member.session_timeout_ms),
                "expires_ms": num(member.expires_ms),
                TTL_ATTRIBUTE: num((member.expires_ms + MEMBER_TTL_GRACE_MS) // 1000),
            },
        )

    @translate_client_errors
    def delete_member(self, group: str, member_id: str) -> None:
        self._ddb.delete_item(TableName=self._table, Key=self._member_key(group, member_id))

    def _items(self, group: str) -> Iterator[Item]:
        paginator = self._ddb.get_paginator("query")
        for page in paginator.paginate(
            TableName=self._table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": group_pk(group)}},
            ConsistentRead=True,
        ):
            yield from page["Items"]

    @translate_client_errors
    def read_group(self, group: str) -> GroupState:
        members: list[MemberRecord] = []
        leases: list[LeaseRecord] = []
        for item in self._items(group):
            named = parse_group_sort_key(item["sk"]["S"])
            if isinstance(named, str):
                members.append(_member_from_item(named, item))
            elif named is not None:
                leases.append(_lease_from_item(*named, item))
        return GroupState(members=tuple(members), leases=tuple(leases))

    def _update_lease(
        self, group: str, seen: LeaseRecord, update: str, condition: str, values: Item
    ) -> Item | None:
        """Apply ``update`` to ``seen``'s lease if ``condition`` holds: the new item, or None."""
        try:
            response = self._ddb.update_item(
                TableName=self._table,
                Key=self._lease_key(group, seen.topic, seen.partition),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if condition_failed(exc):
                return None
            raise
        return response.get("Attributes", {})

    @translate_client_errors
    def take_lease(
        self, group: str, seen: LeaseRecord, owner: str, topic_id: str
    ) -> LeaseRecord | None:
        condition, values = _epoch_condition(seen)
        update = "SET #owner = :owner, lease_epoch = :next, topic_id = :topic_id"
        if not keeps_commit(seen, topic_id):
            update += " REMOVE committed_offset, committed_ms"
        values = {
            **values,
            ":owner": {"S": owner},
            ":next": num(seen.lease_epoch + 1),
            ":topic_id": {"S": topic_id},
        }
        item = self._update_lease(group, seen, update, condition, values)
        return None if item is None else _lease_from_item(seen.topic, seen.partition, item)

    @translate_client_errors
    def give_up_lease(self, group: str, seen: LeaseRecord) -> bool:
        if seen.owner is None:
            return False
        values = {
            ":owner": {"S": seen.owner},
            ":epoch": num(seen.lease_epoch),
            ":next": num(seen.lease_epoch + 1),
        }
        update = "SET lease_epoch = :next REMOVE #owner"
        return self._update_lease(group, seen, update, _OWNED_AT_EPOCH, values) is not None

    @translate_client_errors
    def commit(
        self, group: str, member_id: str, offsets: Sequence[OffsetCommit], committed_ms: int
    ) -> None:
        if not commit_needed(offsets):
            return
        updates: list[Any] = [
            {
                "TableName": self._table,
                "Key": self._lease_key(group, commit.topic, commit.partition),
                "UpdateExpression": "SET committed_offset = :offset, committed_ms = :now",
                "ConditionExpression": _OWNED_AT_EPOCH,
                "ExpressionAttributeNames": {"#owner": "owner"},
                "ExpressionAttributeValues": {
                    ":owner": {"S": member_id},
                    ":epoch": num(commit.lease_epoch),
                    ":offset": num(commit.offset),
                    ":now": num(committed_ms),
                },
            }
            for commit in offsets
        ]
        if len(updates) == 1:
            # One lease: a plain conditional update is as atomic, at half the write cost.
            try:
                self._ddb.update_item(**updates[0])
            except ClientError as exc:
                if condition_failed(exc):
                    raise fenced(group, member_id, offsets, [True]) from None
                raise
            return
        codes = self._transact([{"Update": update} for update in updates], "offset commit")
        if codes:
            raise fenced(group, member_id, offsets, [c == "ConditionalCheckFailed" for c in codes])

    @translate_client_errors
    def reset_leases(self, group: str, resets: Sequence[tuple[LeaseRecord, LeaseRecord]]) -> bool:
        for chunk in transaction_chunks(resets):
            items: list[Any] = []
            for seen, new in chunk:
                condition, values = _epoch_condition(seen)
                item: Item = {
                    **self._lease_key(group, new.topic, new.partition),
                    "topic_id": {"S": new.topic_id},
                    "lease_epoch": num(new.lease_epoch),
                }
                if new.owner is not None:
                    item["owner"] = {"S": new.owner}
                if new.committed_offset is not None:
                    item["committed_offset"] = num(new.committed_offset)
                if new.committed_ms is not None:
                    item["committed_ms"] = num(new.committed_ms)
                put: Any = {
                    "TableName": self._table,
                    "Item": item,
                    "ConditionExpression": condition,
                }
                if values:
                    put["ExpressionAttributeValues"] = values
                items.append({"Put": put})
            if self._transact(items, "offset reset"):
                return False
        return True

    def _transact(self, items: list[Any], what: str) -> list[str | None]:
        """Send one transaction: [] when applied, else the reasons of its failed conditions.

        A transaction cancelled only by conflicts with other transactions is sent again;
        throttling and any other reason raise.
        """
        for _ in range(CONFLICT_ATTEMPTS):
            try:
                self._ddb.transact_write_items(TransactItems=items)
            except ClientError as exc:
                if not transaction_cancelled(exc):
                    raise
                codes = cancellation_codes(exc)
                error = cancellation_error(codes, what)
                if error is not None:
                    raise error from None
                if "ConditionalCheckFailed" in codes:
                    return codes
                continue
            return []
        raise UnavailableError(f"the {what} kept conflicting with other writes; retry")

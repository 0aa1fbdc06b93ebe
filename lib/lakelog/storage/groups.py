"""DynamoDB adapter of the `GroupStore` port: consumer groups on the catalog table.

Item attributes (the keys are in `lakelog.storage.keys`; the protocol is ADR 0009 and its
amendment 1)

Member (``pk = g#{group}``, ``sk = m#{member_id}``)
    ``topics`` L[S] (sorted), ``session_timeout_ms`` N, ``expires_ms`` N (end of the
    session, epoch milliseconds), ``expires_at`` N (the table's TTL attribute, epoch
    seconds, a day after ``expires_ms``, so DynamoDB removes members that never left).
Offsets item (``pk = g#{group}``, ``sk = o#{topic}#{block:03d}``)
    ``i`` S: the topic id of the write that created the item, never changed.
    ``p{partition}`` M, one per partition of the block that has a lease:

    ``k`` S
        the fencing token ``"{lease_epoch}:{owner}"`` (owner empty when free);
    ``o`` L[N, N]
        ``[committed_offset, committed_ms]`` (``[committed_offset]`` when no time was
        given), absent until a commit or reset;
    ``i`` S
        the lease's topic id, present only when it is not the item's ``i``.

Writes (each a conditional ``UpdateItem`` of one offsets item)
    take: on the token's epoch; sets the token only (a commit that lands first is kept),
    or replaces the entry when the topic id changes; give up: on the whole token; commit:
    on the token of every partition committed, one update per offsets item, several items
    in one ``TransactWriteItems``; reset: every entry of one offsets item in one update, on
    each entry's epoch, items in turn.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from lakelog.errors import LeaseFencedError, UnavailableError
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
from lakelog.storage.keys import (
    group_pk,
    member_sort_key,
    offsets_block,
    offsets_sort_key,
    parse_group_sort_key,
)
from lakelog.storage.ports import GroupState, LeaseRecord, MemberRecord
from lakelog.storage.resources import TTL_ATTRIBUTE
from lakelog.storage.rules import (
    TRANSACTION_ITEMS,
    commit_needed,
    fenced,
    keeps_commit,
    offsets_items,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from lakelog.types import OffsetCommit

__all__ = ["MEMBER_TTL_GRACE_MS", "TRANSACTION_ITEMS", "DynamoGroupStore", "lease_token"]

MEMBER_TTL_GRACE_MS: Final = 24 * 3600 * 1000
"""How long after its session ends a member item may be removed by DynamoDB's TTL."""

CONFLICT_ATTEMPTS: Final = 3
"""Times a transaction cancelled only by conflicts with other transactions is sent."""

_ENTRY_PREFIX: Final = "p"
_TOPIC_ID: Final = "i"
_TOKEN: Final = "k"
_COMMITTED: Final = "o"

ItemKey = tuple[str, int]
"""An offsets item of a group: ``(topic, block)``."""


def lease_token(lease_epoch: int, owner: str | None) -> str:
    """The fencing token an offsets item stores for a lease: ``"{epoch}:{owner}"``.

    Member ids never contain ``:``; a free lease has an empty owner.
    """
    return f"{lease_epoch}:{owner or ''}"


def _entry_name(partition: int) -> str:
    return f"{_ENTRY_PREFIX}{partition}"


def _member_from_item(member_id: str, item: Item) -> MemberRecord:
    return MemberRecord(
        member_id=member_id,
        topics=tuple(value["S"] for value in item.get("topics", {}).get("L", [])),
        session_timeout_ms=get_int(item, "session_timeout_ms"),
        expires_ms=get_int(item, "expires_ms"),
    )


def _lease_from_entry(topic: str, partition: int, entry: Item, item_topic_id: str) -> LeaseRecord:
    epoch, _, owner = entry[_TOKEN]["S"].partition(":")
    committed = [int(value["N"]) for value in entry.get(_COMMITTED, {}).get("L", [])]
    return LeaseRecord(
        topic=topic,
        partition=partition,
        topic_id=entry[_TOPIC_ID]["S"] if _TOPIC_ID in entry else item_topic_id,
        lease_epoch=int(epoch),
        owner=owner or None,
        committed_offset=committed[0] if committed else None,
        committed_ms=committed[1] if len(committed) > 1 else None,
    )


def _leases_of_item(topic: str, block: int, item: Item) -> Iterator[LeaseRecord]:
    """The leases an offsets item holds (attributes of other blocks are ignored)."""
    item_topic_id = item.get(_TOPIC_ID, {}).get("S", "")
    for name, value in item.items():
        number = name.removeprefix(_ENTRY_PREFIX)
        if name.startswith(_ENTRY_PREFIX) and number.isdigit() and "M" in value:
            partition = int(number)
            if offsets_block(partition) == block:
                yield _lease_from_entry(topic, partition, value["M"], item_topic_id)


def _stored_token(item: Item | None, partition: int) -> str | None:
    """The token an offsets item (as DynamoDB returned it) holds for ``partition``."""
    entry = (item or {}).get(_entry_name(partition), {}).get("M")
    return None if entry is None else str(entry[_TOKEN]["S"])


def _foreign_topic_id(item: Item | None, topic_id: str) -> bool:
    """Whether an offsets item (as it was before a refused write) has another topic id."""
    stored = (item or {}).get(_TOPIC_ID, {}).get("S")
    return stored is not None and stored != topic_id


class _Update:
    """One conditional update of one offsets item, with short placeholders.

    Placeholders are ``#a0, #a1, ...`` for names and ``:v0, :v1, ...`` for values, so a
    commit or reset of 100 partitions stays far under DynamoDB's 4 KB per expression.
    """

    def __init__(self, key: Item) -> None:
        self.key = key
        self.sets: list[str] = []
        self.conditions: list[str] = []
        self.names: dict[str, str] = {}
        self.values: Item = {}

    def name(self, *path: str) -> str:
        """The placeholder path of ``path`` (``entry, field`` -> ``#a3.#a0``)."""
        placeholders = []
        for part in path:
            found = next((p for p, n in self.names.items() if n == part), None)
            if found is None:
                found = f"#a{len(self.names)}"
                self.names[found] = part
            placeholders.append(found)
        return ".".join(placeholders)

    def value(self, value: Item) -> str:
        """A fresh placeholder of ``value``."""
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = value
        return placeholder

    def at_epoch(self, partition: int, epoch: int) -> None:
        """Condition: ``partition``'s lease is at ``epoch`` (0: it has no entry)."""
        if epoch == 0:
            self.conditions.append(f"attribute_not_exists({self.name(_entry_name(partition))})")
            return
        prefix = self.value({"S": lease_token(epoch, None)})
        token = self.name(_entry_name(partition), _TOKEN)
        self.conditions.append(f"begins_with({token}, {prefix})")

    def held_by(self, partition: int, epoch: int, owner: str) -> None:
        """Condition: ``owner`` holds ``partition``'s lease at ``epoch``."""
        token = self.name(_entry_name(partition), _TOKEN)
        self.conditions.append(f"{token} = {self.value({'S': lease_token(epoch, owner)})}")

    def set(self, path: tuple[str, ...], value: Item) -> None:
        """Set the attribute (or map field) at ``path`` to ``value``."""
        self.sets.append(f"{self.name(*path)} = {self.value(value)}")

    def topic_id(self, topic_id: str, *, assumed: bool) -> None:
        """Give a new item ``topic_id``; ``assumed``: also require an existing item's id to be
        ``topic_id`` (entries written without their own id then mean that one)."""
        name, value = self.name(_TOPIC_ID), self.value({"S": topic_id})
        self.sets.append(f"{name} = if_not_exists({name}, {value})")
        if assumed:
            self.conditions.append(f"(attribute_not_exists({name}) OR {name} = {value})")

    def request(self, table: str) -> dict[str, Any]:
        """The parameters of ``UpdateItem`` (or of a transaction's ``Update``)."""
        return {
            "TableName": table,
            "Key": self.key,
            "UpdateExpression": "SET " + ", ".join(self.sets),
            "ConditionExpression": " AND ".join(self.conditions),
            "ExpressionAttributeNames": self.names,
            "ExpressionAttributeValues": self.values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }


def _entry(lease: LeaseRecord, *, own_topic_id: bool) -> Item:
    """The map attribute of ``lease`` in its offsets item."""
    entry: Item = {_TOKEN: {"S": lease_token(lease.lease_epoch, lease.owner)}}
    if lease.committed_offset is not None:
        stamp = [] if lease.committed_ms is None else [num(lease.committed_ms)]
        entry[_COMMITTED] = {"L": [num(lease.committed_offset), *stamp]}
    if own_topic_id:
        entry[_TOPIC_ID] = {"S": lease.topic_id}
    return {"M": entry}


def _fenced_commit(
    group: str,
    member_id: str,
    offsets: Sequence[OffsetCommit],
    runs: Sequence[Sequence[OffsetCommit]],
    refused: Sequence[tuple[bool, Item | None]],
) -> LeaseFencedError:
    """The error of a refused commit: it names the partitions whose token was not the
    member's in the offsets items whose condition failed (``refused``, one ``(failed, item
    as it was)`` per run); all of them if that cannot be told."""
    moved = {
        (commit.topic, commit.partition): failed
        and _stored_token(item, commit.partition) != lease_token(commit.lease_epoch, member_id)
        for run, (failed, item) in zip(runs, refused, strict=True)
        for commit in run
    }
    failed = [moved[(c.topic, c.partition)] for c in offsets]
    return fenced(group, member_id, offsets, failed if any(failed) else [True] * len(offsets))


class DynamoGroupStore:
    """Group members and leases in the catalog table, through an injected boto3 client."""

    def __init__(self, dynamodb_client: DynamoDBClient, table: str) -> None:
        self._ddb = dynamodb_client
        self._table = table

    @staticmethod
    def _offsets_key(group: str, topic: str, partition: int) -> Item:
        sort_key = offsets_sort_key(topic, offsets_block(partition))
        return {"pk": {"S": group_pk(group)}, "sk": {"S": sort_key}}

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
    def delete_group(self, group: str) -> None:
        for item in list(self._items(group)):
            self._ddb.delete_item(TableName=self._table, Key={"pk": item["pk"], "sk": item["sk"]})

    @translate_client_errors
    def read_group(self, group: str) -> GroupState:
        members: list[MemberRecord] = []
        leases: list[LeaseRecord] = []
        for item in self._items(group):
            named = parse_group_sort_key(item["sk"]["S"])
            if isinstance(named, str):
                members.append(_member_from_item(named, item))
            elif named is not None:
                leases.extend(_leases_of_item(*named, item))
        leases.sort(key=lambda lease: (lease.topic, lease.partition))
        return GroupState(members=tuple(members), leases=tuple(leases))

    def _update(self, update: _Update, *, new: bool = False) -> tuple[bool, Item | None]:
        """Send one update: (True, the item as written if ``new``) or (False, the item as
        it was when the condition failed, None if it did not exist)."""
        try:
            response = self._ddb.update_item(
                **update.request(self._table), ReturnValues="ALL_NEW" if new else "NONE"
            )
        except ClientError as exc:
            if condition_failed(exc):
                old: Item | None = exc.response.get("Item")  # type: ignore[assignment]
                return False, old
            raise
        return True, response.get("Attributes", {})

    @translate_client_errors
    def take_lease(
        self, group: str, seen: LeaseRecord, owner: str, topic_id: str
    ) -> LeaseRecord | None:
        taken = LeaseRecord(seen.topic, seen.partition, topic_id, seen.lease_epoch + 1, owner)
        key = self._offsets_key(group, seen.topic, seen.partition)
        name = _entry_name(seen.partition)
        keep = seen.lease_epoch > 0 and keeps_commit(seen, topic_id)
        for own_topic_id in (False, True):
            update = _Update(key)
            update.at_epoch(seen.partition, seen.lease_epoch)
            if keep:  # same topic: the token moves, the committed offset stays
                update.set((name, _TOKEN), {"S": lease_token(taken.lease_epoch, owner)})
            else:
                update.set((name,), _entry(taken, own_topic_id=own_topic_id))
                update.topic_id(topic_id, assumed=not own_topic_id)
            applied, item = self._update(update, new=True)
            if applied:
                assert item is not None
                stored = item[name]["M"]
                return _lease_from_entry(seen.topic, seen.partition, stored, topic_id)
            if keep or own_topic_id or not _foreign_topic_id(item, topic_id):
                return None
        return None

    @translate_client_errors
    def give_up_lease(self, group: str, seen: LeaseRecord) -> bool:
        if seen.owner is None:
            return False
        update = _Update(self._offsets_key(group, seen.topic, seen.partition))
        update.held_by(seen.partition, seen.lease_epoch, seen.owner)
        token = lease_token(seen.lease_epoch + 1, None)
        update.set((_entry_name(seen.partition), _TOKEN), {"S": token})
        return self._update(update)[0]

    @translate_client_errors
    def commit(
        self, group: str, member_id: str, offsets: Sequence[OffsetCommit], committed_ms: int
    ) -> None:
        if not commit_needed(offsets):
            return
        runs = offsets_items(offsets, lambda commit: (commit.topic, commit.partition))
        updates: list[_Update] = []
        for run in runs:
            update = _Update(self._offsets_key(group, run[0].topic, run[0].partition))
            for commit in run:
                update.held_by(commit.partition, commit.lease_epoch, member_id)
                stored = {"L": [num(commit.offset), num(committed_ms)]}
                update.set((_entry_name(commit.partition), _COMMITTED), stored)
            updates.append(update)
        if len(updates) == 1:
            # One offsets item: one conditional update, the common case (ADR 0009 amendment 1).
            applied, item = self._update(updates[0])
            refused = None if applied else [(True, item)]
        else:
            refused = self._transact([update.request(self._table) for update in updates])
        if refused is not None:
            raise _fenced_commit(group, member_id, offsets, runs, refused)

    @translate_client_errors
    def reset_leases(self, group: str, resets: Sequence[tuple[LeaseRecord, LeaseRecord]]) -> bool:
        for run in offsets_items(resets, lambda pair: (pair[1].topic, pair[1].partition)):
            topic_id = run[0][1].topic_id
            for own_topic_id in (False, True):
                update = _Update(self._offsets_key(group, run[0][1].topic, run[0][1].partition))
                for seen, new in run:
                    update.at_epoch(new.partition, seen.lease_epoch)
                    own = own_topic_id or new.topic_id != topic_id
                    update.set((_entry_name(new.partition),), _entry(new, own_topic_id=own))
                update.topic_id(topic_id, assumed=not own_topic_id)
                applied, item = self._update(update)
                if applied:
                    break
                if own_topic_id or not _foreign_topic_id(item, topic_id):
                    return False
            else:
                return False
        return True

    def _transact(self, items: list[Any]) -> list[tuple[bool, Item | None]] | None:
        """Send one transaction of updates: None when applied, else per update whether its
        condition failed and the item as it was then (None if missing or not returned).

        A transaction cancelled only by conflicts with other transactions is sent again;
        throttling and any other reason raise.
        """
        for _ in range(CONFLICT_ATTEMPTS):
            try:
                self._ddb.transact_write_items(TransactItems=[{"Update": i} for i in items])
            except ClientError as exc:
                if not transaction_cancelled(exc):
                    raise
                codes = cancellation_codes(exc)
                error = cancellation_error(codes, "offset commit")
                if error is not None:
                    raise error from None
                if "ConditionalCheckFailed" in codes:
                    reasons: list[Any] = list(exc.response.get("CancellationReasons", []))
                    return [
                        (code == "ConditionalCheckFailed", reason.get("Item"))
                        for code, reason in zip(codes, reasons, strict=True)
                    ]
                continue
            return None
        raise UnavailableError("the offset commit kept conflicting with other writes; retry")

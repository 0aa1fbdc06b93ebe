"""DynamoDB adapters of the `LedgerStore` and `CatalogStore` ports.

Item attributes (the keys are in `lakelog.storage.keys`)

Ledger head (``sk = HEAD_SK``)
    ``high_watermark`` N, ``log_start_offset`` N, ``size_bytes`` N, ``max_timestamp`` N,
    ``producers`` M: ``{producer_id: {epoch N, last_sequence N, batches L[L[N]]}}``,
    ``closed`` BOOL once its topic is being deleted (a closed head reads as missing and
    fails every append's condition).
Ledger entry (``sk = last_offset``)
    ``base_offset`` N, ``segment_key`` S, ``row_group`` N, ``byte_offset`` N,
    ``byte_length`` N, ``segment_size`` N, ``footer_offset`` N, ``min_timestamp`` N,
    ``max_timestamp`` N, ``max_timestamp_cum`` N, ``size_bytes`` N.
Catalog topic
    ``topic_id`` S, ``partitions`` N, ``config`` S (JSON), ``created_ms`` N, ``version`` N.
Catalog deleted topic
    the topic attributes above plus ``name`` S and ``deleted_ms`` N.
Catalog producer id
    ``principal`` S, ``issued_ms`` N, ``epoch`` N, ``expires_at`` N (the table's TTL
    attribute, epoch seconds, `PRODUCER_ID_RETENTION_MS` after issue).
Catalog access rule
    ``principal`` S, ``topic`` S, ``effect`` S, ``operations`` SS.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from lakelog.log.records import Entry, Head, PartitionWrite, ProducerState
from lakelog.storage.attributes import (
    Item,
    cancellation_codes,
    cancellation_error,
    condition_failed,
    get_int,
    item_too_large,
    num,
    too_large_refusal,
    transaction_cancelled,
)
from lakelog.storage.errors import translate_client_errors
from lakelog.storage.keys import (
    CATALOG_ACL_PK,
    CATALOG_DELETED_TOPIC_PK,
    CATALOG_TOPIC_PK,
    HEAD_SK,
    PRODUCER_SK,
    acl_sort_key,
    producer_pk,
)
from lakelog.storage.ports import AclEntry, AppendConflict, ProducerIdRecord, TopicRecord
from lakelog.storage.resources import TTL_ATTRIBUTE
from lakelog.storage.rules import check_append_size, decode_config, encode_config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["DynamoCatalogStore", "DynamoLedgerStore", "head_item"]

_ENTRY_NUMBERS = (
    "base_offset",
    "row_group",
    "byte_offset",
    "byte_length",
    "segment_size",
    "footer_offset",
    "min_timestamp",
    "max_timestamp",
    "max_timestamp_cum",
    "size_bytes",
)
_BATCH_WRITE_LIMIT = 25
_BATCH_GET_LIMIT = 100


def _producer_to_item(state: ProducerState) -> Item:
    return {
        "M": {
            "epoch": num(state.epoch),
            "last_sequence": num(state.last_sequence),
            "batches": {"L": [{"L": [num(v) for v in batch]} for batch in state.batches]},
        }
    }


def _producer_from_item(attr: Item) -> ProducerState:
    fields = attr["M"]
    batches = tuple(tuple(int(v["N"]) for v in batch["L"]) for batch in fields["batches"]["L"])
    return ProducerState(
        epoch=int(fields["epoch"]["N"]),
        last_sequence=int(fields["last_sequence"]["N"]),
        batches=batches,  # type: ignore[arg-type]
    )


def head_item(pk: str, head: Head) -> Item:
    """The ledger item that holds ``head`` of partition ``pk``, as an append leaves it."""
    return {
        "pk": {"S": pk},
        "sk": num(HEAD_SK),
        "high_watermark": num(head.high_watermark),
        "log_start_offset": num(head.log_start_offset),
        "size_bytes": num(head.size_bytes),
        "max_timestamp": num(head.max_timestamp),
        "producers": {
            "M": {str(pid): _producer_to_item(state) for pid, state in head.producers.items()}
        },
    }


def _head_from_item(item: Item) -> Head:
    producers = item.get("producers", {}).get("M", {})
    return Head(
        high_watermark=get_int(item, "high_watermark"),
        log_start_offset=get_int(item, "log_start_offset"),
        size_bytes=get_int(item, "size_bytes"),
        max_timestamp=get_int(item, "max_timestamp", -1),
        producers={int(pid): _producer_from_item(attr) for pid, attr in producers.items()},
    )


def _entry_to_item(pk: str, entry: Entry) -> Item:
    item: Item = {
        "pk": {"S": pk},
        "sk": num(entry.last_offset),
        "segment_key": {"S": entry.segment_key},
    }
    item.update({name: num(getattr(entry, name)) for name in _ENTRY_NUMBERS})
    return item


def _entry_from_item(item: Item) -> Entry:
    return Entry(
        last_offset=int(item["sk"]["N"]),
        segment_key=item["segment_key"]["S"],
        **{name: int(item[name]["N"]) for name in _ENTRY_NUMBERS},
    )


def _is_head(item: Item) -> bool:
    return int(item["sk"]["N"]) == HEAD_SK


_CLOSED = "closed"
"""Head attribute set by `DynamoLedgerStore.close_partition`."""


def _open_head(item: Item | None) -> Head | None:
    """The head an item holds, or None when there is none or it is closed."""
    if not item or _CLOSED in item:
        return None
    return _head_from_item(item)


class DynamoLedgerStore:
    """The ledger table, through an injected boto3 DynamoDB client."""

    def __init__(self, dynamodb_client: DynamoDBClient, table: str) -> None:
        self._ddb = dynamodb_client
        self._table = table

    def _head_key(self, pk: str) -> Item:
        return {"pk": {"S": pk}, "sk": num(HEAD_SK)}

    @translate_client_errors
    def create_heads(self, pks: Sequence[str]) -> None:
        for pk in pks:
            try:
                self._ddb.put_item(
                    TableName=self._table,
                    Item=head_item(pk, Head()),
                    ConditionExpression="attribute_not_exists(pk)",
                )
            except ClientError as exc:
                if not condition_failed(exc):
                    raise

    @translate_client_errors
    def read_heads(self, pks: Sequence[str]) -> dict[str, Head]:
        heads: dict[str, Head] = {}
        for start in range(0, len(pks), _BATCH_GET_LIMIT):
            request: Any = {
                self._table: {
                    "Keys": [self._head_key(pk) for pk in pks[start : start + _BATCH_GET_LIMIT]],
                    "ConsistentRead": True,
                }
            }
            while request:
                response = self._ddb.batch_get_item(RequestItems=request)
                for item in response["Responses"].get(self._table, []):
                    if (head := _open_head(item)) is not None:
                        heads[item["pk"]["S"]] = head
                request = response.get("UnprocessedKeys") or None
        return heads

    @translate_client_errors
    def append(self, writes: Sequence[PartitionWrite]) -> None:
        check_append_size(len(writes))
        items: list[Any] = []
        for write in writes:
            names = {"#hw": "high_watermark", "#closed": _CLOSED}
            values: Item = {
                ":expected": num(write.expected_high_watermark),
                ":hw": num(write.new_high_watermark),
                ":ts": num(write.new_max_timestamp),
                ":bytes": num(write.entry.size_bytes),
            }
            update = "SET #hw = :hw, max_timestamp = :ts"
            if write.producer_id is not None and write.producer_state is not None:
                names["#pid"] = str(write.producer_id)
                values[":producer"] = _producer_to_item(write.producer_state)
                update += ", producers.#pid = :producer"
            if write.expired_producers:
                names.update({f"#x{i}": str(p) for i, p in enumerate(write.expired_producers)})
                removed = ", ".join(f"producers.#x{i}" for i in range(len(write.expired_producers)))
                update += f" REMOVE {removed}"
            items.append(
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": self._head_key(write.pk),
                        "UpdateExpression": f"{update} ADD size_bytes :bytes",
                        "ConditionExpression": "#hw = :expected AND attribute_not_exists(#closed)",
                        "ExpressionAttributeNames": names,
                        "ExpressionAttributeValues": values,
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                }
            )
            items.append(
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": _entry_to_item(write.pk, write.entry),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            )
        try:
            self._ddb.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if too_large_refusal(exc):
                raise item_too_large("append transaction") from None
            if not transaction_cancelled(exc):
                raise
            raise self._conflict(writes, exc) from None

    @staticmethod
    def _conflict(writes: Sequence[PartitionWrite], exc: ClientError) -> Exception:
        codes = cancellation_codes(exc)
        error = cancellation_error(codes, "append transaction")
        if error is not None:
            return error
        reasons: list[Any] = list(exc.response.get("CancellationReasons", []))
        heads: dict[str, Head | None] = {}
        for write, reason in zip(writes, reasons[0::2], strict=False):
            if reason.get("Code") == "ConditionalCheckFailed":
                heads[write.pk] = _open_head(reason.get("Item"))
        return AppendConflict(heads, retryable="TransactionConflict" in codes and not heads)

    @translate_client_errors
    def query(self, pk: str, from_offset: int, limit: int) -> tuple[list[Entry], Head | None]:
        response = self._ddb.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND sk >= :offset",
            ExpressionAttributeValues={":pk": {"S": pk}, ":offset": num(from_offset)},
            ConsistentRead=True,
            Limit=limit + 1,
        )
        entries: list[Entry] = []
        head: Head | None = None
        for item in response["Items"]:
            if _is_head(item):
                head = _open_head(item)
            else:
                entries.append(_entry_from_item(item))
        return entries[:limit], head

    @translate_client_errors
    def entries(self, pk: str) -> Iterator[Entry]:
        for item in self._items(pk):
            if not _is_head(item):
                yield _entry_from_item(item)

    def _items(
        self, pk: str, projection: str | None = None, entries_only: bool = False
    ) -> Iterator[Item]:
        paginator = self._ddb.get_paginator("query")
        kwargs: Any = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND sk < :head" if entries_only else "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ConsistentRead": True,
        }
        if entries_only:
            kwargs["ExpressionAttributeValues"][":head"] = num(HEAD_SK)
        if projection:
            kwargs["ProjectionExpression"] = projection
        for page in paginator.paginate(**kwargs):
            yield from page["Items"]

    @translate_client_errors
    def close_partition(self, pk: str) -> None:
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=self._head_key(pk),
                UpdateExpression="SET #closed = :true",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#closed": _CLOSED},
                ExpressionAttributeValues={":true": {"BOOL": True}},
            )
        except ClientError as exc:
            if not condition_failed(exc):
                raise
        self._delete_items(pk, entries_only=True)

    @translate_client_errors
    def delete_partition(self, pk: str) -> None:
        self._delete_items(pk)

    def _delete_items(self, pk: str, entries_only: bool = False) -> None:
        """Delete the partition's items (its entries only, or the head too), head last."""
        keys = [
            {"pk": item["pk"], "sk": item["sk"]}
            for item in self._items(pk, "pk, sk", entries_only=entries_only)
        ]
        for start in range(0, len(keys), _BATCH_WRITE_LIMIT):
            request: Any = {
                self._table: [
                    {"DeleteRequest": {"Key": key}}
                    for key in keys[start : start + _BATCH_WRITE_LIMIT]
                ]
            }
            while request:
                response = self._ddb.batch_write_item(RequestItems=request)
                request = response.get("UnprocessedItems") or None


def _topic_from_item(item: Item) -> TopicRecord:
    return TopicRecord(
        name=item["name"]["S"] if "name" in item else item["sk"]["S"],
        topic_id=item["topic_id"]["S"],
        partitions=get_int(item, "partitions"),
        config=decode_config(item["config"]["S"]),
        created_ms=get_int(item, "created_ms"),
        version=get_int(item, "version", 1),
        deleted_ms=get_int(item, "deleted_ms") if "deleted_ms" in item else None,
    )


def _topic_attributes(topic: TopicRecord) -> Item:
    return {
        "topic_id": {"S": topic.topic_id},
        "partitions": num(topic.partitions),
        "config": {"S": encode_config(topic.config)},
        "created_ms": num(topic.created_ms),
        "version": num(topic.version),
    }


class DynamoCatalogStore:
    """The catalog table, through an injected boto3 DynamoDB client."""

    def __init__(self, dynamodb_client: DynamoDBClient, table: str) -> None:
        self._ddb = dynamodb_client
        self._table = table

    @staticmethod
    def _key(pk: str, sk: str) -> Item:
        return {"pk": {"S": pk}, "sk": {"S": sk}}

    @translate_client_errors
    def get_topic(self, name: str) -> TopicRecord | None:
        response = self._ddb.get_item(
            TableName=self._table, Key=self._key(CATALOG_TOPIC_PK, name), ConsistentRead=True
        )
        item = response.get("Item")
        return _topic_from_item(item) if item else None

    def _query_pk(self, pk: str) -> Iterator[Item]:
        paginator = self._ddb.get_paginator("query")
        for page in paginator.paginate(
            TableName=self._table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": pk}},
            ConsistentRead=True,
        ):
            yield from page["Items"]

    @translate_client_errors
    def list_topics(self) -> list[TopicRecord]:
        return [_topic_from_item(item) for item in self._query_pk(CATALOG_TOPIC_PK)]

    def _put_topic_if(self, topic: TopicRecord, condition: str, values: Item) -> bool:
        """Put the topic's item if ``condition`` holds; False if it did not."""
        item = {**self._key(CATALOG_TOPIC_PK, topic.name), **_topic_attributes(topic)}
        return self._put_if(item, condition, values)

    def _put_if(self, item: Item, condition: str, values: Item | None = None) -> bool:
        """Put ``item`` if ``condition`` holds; False if it did not."""
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression=condition,
                **({"ExpressionAttributeValues": values} if values else {}),  # type: ignore[arg-type]
            )
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    @translate_client_errors
    def create_topic(self, topic: TopicRecord) -> bool:
        return self._put_topic_if(topic, "attribute_not_exists(pk)", {})

    @translate_client_errors
    def update_topic(self, topic: TopicRecord, expected_version: int) -> bool:
        return self._put_topic_if(
            topic,
            "version = :v AND topic_id = :id",
            {":v": num(expected_version), ":id": {"S": topic.topic_id}},
        )

    def _marker(self, topic: TopicRecord, deleted_ms: int) -> Item:
        """The deleted-topic marker item of ``topic``."""
        return {
            **self._key(CATALOG_DELETED_TOPIC_PK, topic.topic_id),
            **_topic_attributes(topic),
            "name": {"S": topic.name},
            "deleted_ms": num(deleted_ms),
        }

    @translate_client_errors
    def mark_deleted_topic(self, topic: TopicRecord, deleted_ms: int) -> None:
        self._ddb.put_item(TableName=self._table, Item=self._marker(topic, deleted_ms))

    @translate_client_errors
    def delete_topic(self, topic: TopicRecord, deleted_ms: int) -> bool:
        marker = self._marker(topic, deleted_ms)
        try:
            self._ddb.transact_write_items(
                TransactItems=[
                    {
                        "Delete": {
                            "TableName": self._table,
                            "Key": self._key(CATALOG_TOPIC_PK, topic.name),
                            "ConditionExpression": "topic_id = :id AND version = :v",
                            "ExpressionAttributeValues": {
                                ":id": {"S": topic.topic_id},
                                ":v": num(topic.version),
                            },
                        }
                    },
                    {"Put": {"TableName": self._table, "Item": marker}},
                ]
            )
        except ClientError as exc:
            if transaction_cancelled(exc):
                return False
            raise
        return True

    @translate_client_errors
    def deleted_topics(self) -> list[TopicRecord]:
        return [_topic_from_item(item) for item in self._query_pk(CATALOG_DELETED_TOPIC_PK)]

    @translate_client_errors
    def forget_deleted_topic(self, topic_id: str) -> None:
        self._ddb.delete_item(
            TableName=self._table, Key=self._key(CATALOG_DELETED_TOPIC_PK, topic_id)
        )

    @translate_client_errors
    def register_producer(self, record: ProducerIdRecord) -> bool:
        item = {
            **self._key(producer_pk(record.producer_id), PRODUCER_SK),
            "principal": {"S": record.principal},
            "issued_ms": num(record.issued_ms),
            "epoch": num(record.epoch),
            TTL_ATTRIBUTE: num(record.expires_ms // 1000),
        }
        return self._put_if(item, "attribute_not_exists(pk)")

    @translate_client_errors
    def get_producer(self, producer_id: int) -> ProducerIdRecord | None:
        response = self._ddb.get_item(
            TableName=self._table,
            Key=self._key(producer_pk(producer_id), PRODUCER_SK),
            ConsistentRead=True,
        )
        item = response.get("Item")
        if not item:
            return None
        return ProducerIdRecord(
            producer_id=producer_id,
            principal=item["principal"]["S"],
            issued_ms=get_int(item, "issued_ms"),
            epoch=get_int(item, "epoch"),
        )

    @translate_client_errors
    def list_acls(self) -> list[AclEntry]:
        return [
            AclEntry(
                principal=item["principal"]["S"],
                topic=item["topic"]["S"],
                effect=item["effect"]["S"],
                operations=frozenset(item["operations"]["SS"]),
            )
            for item in self._query_pk(CATALOG_ACL_PK)
        ]

    def _acl_key(self, entry: AclEntry) -> Item:
        return self._key(CATALOG_ACL_PK, acl_sort_key(entry.topic, entry.effect, entry.principal))

    @translate_client_errors
    def add_acl(self, entry: AclEntry) -> None:
        self._ddb.update_item(
            TableName=self._table,
            Key=self._acl_key(entry),
            UpdateExpression="SET principal = :p, topic = :t, effect = :e ADD operations :ops",
            ExpressionAttributeValues={
                ":p": {"S": entry.principal},
                ":t": {"S": entry.topic},
                ":e": {"S": entry.effect},
                ":ops": {"SS": sorted(entry.operations)},
            },
        )

    @translate_client_errors
    def remove_acl(self, entry: AclEntry) -> bool:
        try:
            response = self._ddb.update_item(
                TableName=self._table,
                Key=self._acl_key(entry),
                UpdateExpression="DELETE operations :ops",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":ops": {"SS": sorted(entry.operations)}},
                ReturnValues="ALL_OLD",
            )
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        before = set(response.get("Attributes", {}).get("operations", {}).get("SS", []))
        if not before & entry.operations:
            return False
        if not before - entry.operations:
            try:
                self._ddb.delete_item(
                    TableName=self._table,
                    Key=self._acl_key(entry),
                    ConditionExpression="attribute_not_exists(operations)",
                )
            except ClientError as exc:
                if not condition_failed(exc):  # re-granted meanwhile: keep the rule
                    raise
        return True

"""DynamoDB adapters of the `LedgerStore` and `CatalogStore` ports.

The ledger's items (chain items, meta, producer states) are packed as ADR 0012 (1.1)
lays them out; `lakelog.storage.attributes` encodes and decodes them.

Item attributes (the keys are in `lakelog.storage.keys`)

Chain item (``pk = t#{topic_id}#0``, ``sk = seq``)
    ``v`` N (format), ``t`` N, ``m`` N, ``n`` N; ``g`` B (24-byte segment id), ``z`` N,
    ``f`` N for an append; ``s`` N (sticky partition), ``h`` B (snapshot), ``b`` B
    (batches), ``p`` B (producer stamp) when present; ``k`` S = ``seal`` on the seal.
Chain meta (``sk = HEAD_SK``)
    ``v`` N, ``ls`` B, ``lb`` B, ``l1`` B, ``ce`` B (one varint per partition), ``cs`` N,
    ``ver`` N, ``sealed`` N once the deletion sealed the chain.
L1 entry (``pk = p#{topic_id}#{partition}``, ``sk = last_offset``)
    ``v`` N (2), ``lvl`` N (1), ``base_offset`` N, ``segment_key`` S, ``row_group`` N,
    ``byte_offset`` N, ``byte_length`` N, ``segment_size`` N, ``footer_offset`` N,
    ``min_timestamp`` N, ``max_timestamp`` N, ``max_timestamp_cum`` N, ``size_bytes`` N,
    ``cumulative_bytes`` N, ``row_count`` N (-1: one row per offset; 0 with ``segment_key``
    empty: every offset compacted away).
Producer state (``pk = pr#{topic_id}#{producer_id}``, ``sk = 0``)
    ``v`` N, ``e`` N, ``l`` N, ``r`` B (last requests), ``expires_at`` N (the table's TTL
    attribute, epoch seconds rounded up).
Catalog topic
    ``topic_id`` S, ``partitions`` N, ``config`` S (JSON), ``created_ms`` N, ``version`` N.
Catalog deleted topic
    the topic attributes above plus ``name`` S and ``deleted_ms`` N.
Catalog producer id
    ``principal`` S, ``issued_ms`` N, ``epoch`` N, ``expires_at`` N (the table's TTL
    attribute, epoch seconds, `PRODUCER_ID_RETENTION_MS` after issue).
Catalog access rule
    ``principal`` S, ``topic`` S, ``effect`` S, ``operations`` SS.
Catalog subscription
    as `lakelog.storage.subscriptions` lays it out (shared with the memory adapter).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from lakelog.log.records import (
    ChainItem,
    ChainMeta,
    Entry,
    ProducerUpdate,
    TopicProducerState,
)
from lakelog.storage.attributes import (
    Item,
    cancellation_codes,
    cancellation_error,
    chain_item_from_item,
    chain_item_to_item,
    check_item_size,
    condition_failed,
    entry_from_item,
    entry_to_item,
    get_int,
    item_too_large,
    meta_from_item,
    meta_to_item,
    num,
    producer_attributes,
    producer_from_item,
    too_large_refusal,
    transaction_cancelled,
    ttl_seconds,
)
from lakelog.storage.errors import translate_client_errors
from lakelog.storage.keys import (
    CATALOG_ACL_PK,
    CATALOG_DELETED_TOPIC_PK,
    CATALOG_TOPIC_PK,
    HEAD_SK,
    PRODUCER_SK,
    acl_sort_key,
    chain_pk,
    l1_entries_pk,
    producer_pk,
    producer_state_pk,
    subscription_pk,
)
from lakelog.storage.ports import (
    AclEntry,
    ChainConflict,
    ProducerIdRecord,
    TopicRecord,
)
from lakelog.storage.resources import TTL_ATTRIBUTE
from lakelog.storage.rules import (
    continued_sequence,
    decode_config,
    encode_config,
)
from lakelog.storage.subscriptions import subscription_from_item, subscription_item

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from lakelog.types import Subscription

__all__ = ["DynamoCatalogStore", "DynamoLedgerStore"]

_BATCH_WRITE_LIMIT = 25


def _is_head(item: Item) -> bool:
    return int(item["sk"]["N"]) == HEAD_SK


def _put_if(
    ddb: DynamoDBClient, table: str, item: Item, condition: str, values: Item | None = None
) -> bool:
    """Put ``item`` in ``table`` if ``condition`` holds; False if it did not."""
    try:
        ddb.put_item(
            TableName=table,
            Item=item,
            ConditionExpression=condition,
            **({"ExpressionAttributeValues": values} if values else {}),  # type: ignore[arg-type]
        )
    except ClientError as exc:
        if condition_failed(exc):
            return False
        raise
    return True


class DynamoLedgerStore:
    """The `LedgerStore` port on the ledger table (ADR 0012), through an injected client.

    A plain append is one ``PutItem``; an idempotent one a ``TransactWriteItems`` of the
    chain put and the producer item's conditional update. Both return the items whose
    condition failed (``ALL_OLD``); a backend that does not is answered by reading them.
    """

    def __init__(self, dynamodb_client: DynamoDBClient, table: str) -> None:
        self._ddb = dynamodb_client
        self._table = table

    def _chain_items(self, pk: str, projection: str | None = None) -> Iterator[Item]:
        """Every item of ``pk`` below `HEAD_SK` (the chain items, or every L1 entry), in
        sort-key order."""
        paginator = self._ddb.get_paginator("query")
        kwargs: Any = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND sk < :head",
            "ExpressionAttributeValues": {":pk": {"S": pk}, ":head": num(HEAD_SK)},
            "ConsistentRead": True,
        }
        if projection:
            kwargs["ProjectionExpression"] = projection
        for page in paginator.paginate(**kwargs):
            yield from page["Items"]

    def _key(self, pk: str, sk: int) -> Item:
        return {"pk": {"S": pk}, "sk": num(sk)}

    def _get(self, pk: str, sk: int) -> Item | None:
        response = self._ddb.get_item(
            TableName=self._table, Key=self._key(pk, sk), ConsistentRead=True
        )
        return response.get("Item") or None

    def _put_if_absent(self, item: Item, what: str) -> Item | None:
        """Put ``item`` unless its key is taken; None if put, else the item there (if any)."""
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(sk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if too_large_refusal(exc):
                raise item_too_large(what) from None
            if not condition_failed(exc):
                raise
            old: Item | None = exc.response.get("Item")  # type: ignore[assignment]
            return old or self._get(item["pk"]["S"], int(item["sk"]["N"])) or {}
        return None

    @translate_client_errors
    def create_chain(self, topic_id: str, meta: ChainMeta, genesis: ChainItem) -> None:
        pk = chain_pk(topic_id)
        self._put_if_absent(meta_to_item(pk, meta), "meta put")
        self._put_if_absent(chain_item_to_item(pk, genesis), "genesis put")

    @translate_client_errors
    def read_tail(self, topic_id: str) -> tuple[ChainItem, ChainMeta] | None:
        response = self._ddb.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": chain_pk(topic_id)}},
            ScanIndexForward=False,
            Limit=2,
            ConsistentRead=True,
        )
        items = response["Items"]
        if len(items) < 2 or not _is_head(items[0]):
            return None
        return chain_item_from_item(items[1]), meta_from_item(items[0])

    @translate_client_errors
    def read_meta(self, topic_id: str) -> ChainMeta | None:
        item = self._get(chain_pk(topic_id), HEAD_SK)
        return None if item is None else meta_from_item(item)

    @translate_client_errors
    def put_item(
        self, topic_id: str, item: ChainItem, producer: ProducerUpdate | None = None
    ) -> None:
        attrs = chain_item_to_item(chain_pk(topic_id), item)
        check_item_size(attrs, "chain put")  # DynamoDB would refuse it: spare the request
        if producer is None:
            current = self._put_if_absent(attrs, "chain put")
            if current is not None:
                raise ChainConflict(chain_item_from_item(current) if current else None)
            return
        try:
            self._ddb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": attrs,
                            "ConditionExpression": "attribute_not_exists(sk)",
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                        }
                    },
                    {"Update": self._producer_update(topic_id, producer)},
                ]
            )
        except ClientError as exc:
            if too_large_refusal(exc):
                raise item_too_large("chain put") from None
            if not transaction_cancelled(exc):
                raise
            raise self._conflict(topic_id, item.seq, producer, exc) from None

    def _producer_update(self, topic_id: str, producer: ProducerUpdate) -> Any:
        """The producer item's conditional update of an idempotent append (ADR 0012, 1.3)."""
        attrs = producer_attributes(producer.state)
        names = {f"#{name}": name for name in (*attrs, "r")}
        values: Item = {f":{name}": value for name, value in attrs.items()}
        values[":now"] = num(ttl_seconds(producer.now_ms))
        update = "SET " + ", ".join(f"#{name} = :{name}" for name in attrs)
        if "r" not in attrs:
            update += " REMOVE #r"
        expires = f"#{TTL_ATTRIBUTE}"
        if producer.continues:
            values[":prev"] = num(continued_sequence(producer))
            condition = f"#e = :e AND #l = :prev AND {expires} >= :now"
        else:
            condition = f"attribute_not_exists(pk) OR #e < :e OR {expires} < :now"
        return {
            "TableName": self._table,
            "Key": self._key(producer_state_pk(topic_id, producer.state.producer_id), 0),
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    def _conflict(
        self, topic_id: str, seq: int, producer: ProducerUpdate, exc: ClientError
    ) -> Exception:
        """The error of a cancelled idempotent put: `ChainConflict` naming what failed."""
        codes = cancellation_codes(exc)
        error = cancellation_error(codes, "chain put")
        if error is not None:
            return error
        reasons: list[Any] = list(exc.response.get("CancellationReasons", []))
        failed = [code == "ConditionalCheckFailed" for code in codes] + [False, False]
        if not failed[0] and not failed[1]:
            return ChainConflict(retryable="TransactionConflict" in codes)
        current = None
        if failed[0]:
            stored = reasons[0].get("Item") or self._get(chain_pk(topic_id), seq)
            current = chain_item_from_item(stored) if stored else None
        state = None
        if failed[1]:
            pk = producer_state_pk(topic_id, producer.state.producer_id)
            stored = reasons[1].get("Item") or self._get(pk, 0)
            state = producer_from_item(stored) if stored else None
        return ChainConflict(current, producer_failed=failed[1], producer=state)

    @translate_client_errors
    def get_item(self, topic_id: str, seq: int) -> ChainItem | None:
        item = self._get(chain_pk(topic_id), seq)
        return None if item is None else chain_item_from_item(item)

    @translate_client_errors
    def query(
        self, topic_id: str, from_seq: int, limit: int
    ) -> tuple[list[ChainItem], ChainMeta | None]:
        # One query of limit + 1 items: the meta item sorts after every chain item.
        response = self._ddb.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND sk >= :sk",
            ExpressionAttributeValues={":pk": {"S": chain_pk(topic_id)}, ":sk": num(from_seq)},
            ConsistentRead=True,
            Limit=limit + 1,
        )
        items: list[ChainItem] = []
        meta: ChainMeta | None = None
        for item in response["Items"]:
            if _is_head(item):
                meta = meta_from_item(item)
            else:
                items.append(chain_item_from_item(item))
        return items[:limit], meta

    @translate_client_errors
    def chain(self, topic_id: str) -> Iterator[ChainItem]:
        for item in self._chain_items(chain_pk(topic_id)):
            yield chain_item_from_item(item)

    @translate_client_errors
    def update_meta(self, topic_id: str, meta: ChainMeta, expected_version: int) -> bool:
        return _put_if(
            self._ddb,
            self._table,
            meta_to_item(chain_pk(topic_id), meta, expected_version + 1),
            "ver = :expected",
            {":expected": num(expected_version)},
        )

    @translate_client_errors
    def read_producer(self, topic_id: str, producer_id: int) -> TopicProducerState | None:
        item = self._get(producer_state_pk(topic_id, producer_id), 0)
        return None if item is None else producer_from_item(item)

    @translate_client_errors
    def delete_chain(self, topic_id: str) -> None:
        pk = chain_pk(topic_id)
        keys = [{"pk": item["pk"], "sk": item["sk"]} for item in self._chain_items(pk, "pk, sk")]
        self._batch_delete(keys)
        self._ddb.delete_item(TableName=self._table, Key=self._key(pk, HEAD_SK))  # meta last

    def _batch_delete(self, keys: Sequence[Item]) -> None:
        """Delete ``keys`` with ``BatchWriteItem``, 25 a request, until none is left over."""
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

    @translate_client_errors
    def delete_items(self, topic_id: str, seqs: Sequence[int]) -> None:
        pk = chain_pk(topic_id)
        self._batch_delete([self._key(pk, seq) for seq in sorted(set(seqs)) if seq != HEAD_SK])

    @translate_client_errors
    def put_entries(self, topic_id: str, partition: int, entries: Sequence[Entry]) -> None:
        pk = l1_entries_pk(topic_id, partition)
        items = [entry_to_item(pk, entry) for entry in entries]
        for item in items:
            check_item_size(item, "entry put")
        for item in items:
            self._put_if_absent(item, "entry put")

    @translate_client_errors
    def replace_entry(
        self, topic_id: str, partition: int, entry: Entry, replaced: Sequence[Entry]
    ) -> bool:
        pk = l1_entries_pk(topic_id, partition)
        item = entry_to_item(pk, entry)
        check_item_size(item, "entry put")
        last = replaced[-1]
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="(segment_key = :ok AND row_group = :og) OR "
                "(segment_key = :nk AND row_group = :ng)",
                ExpressionAttributeValues=_names_row_group(last, ":o")
                | _names_row_group(entry, ":n"),
            )
        except ClientError as exc:
            if not condition_failed(exc):
                raise
            return False
        for old in sorted(replaced[:-1], key=lambda e: e.last_offset, reverse=True):
            try:
                self._ddb.delete_item(
                    TableName=self._table,
                    Key=self._key(pk, old.last_offset),
                    ConditionExpression="segment_key = :ok AND row_group = :og",
                    ExpressionAttributeValues=_names_row_group(old, ":o"),
                )
            except ClientError as exc:
                if not condition_failed(exc):
                    raise
        return True

    @translate_client_errors
    def query_entries(
        self, topic_id: str, partition: int, from_offset: int, limit: int
    ) -> list[Entry]:
        response = self._ddb.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND sk >= :sk",
            ExpressionAttributeValues={
                ":pk": {"S": l1_entries_pk(topic_id, partition)},
                ":sk": num(from_offset),
            },
            ConsistentRead=True,
            Limit=limit,
        )
        return [entry_from_item(item) for item in response["Items"]]

    @translate_client_errors
    def entries(self, topic_id: str, partition: int) -> Iterator[Entry]:
        for item in self._chain_items(l1_entries_pk(topic_id, partition)):
            yield entry_from_item(item)

    @translate_client_errors
    def delete_entries(self, topic_id: str, partition: int, last_offsets: Sequence[int]) -> None:
        pk = l1_entries_pk(topic_id, partition)
        self._batch_delete([self._key(pk, offset) for offset in sorted(set(last_offsets))])


def _names_row_group(entry: Entry, prefix: str) -> Item:
    """Expression values naming ``entry``'s segment (``{prefix}k``) and row group
    (``{prefix}g``): what `replace_entry`'s conditions compare."""
    return {f"{prefix}k": {"S": entry.segment_key}, f"{prefix}g": num(entry.row_group)}


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
        return _put_if(self._ddb, self._table, item, condition, values)

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
            refreshed_ms=get_int(item, "refreshed_ms") if "refreshed_ms" in item else None,
        )

    @translate_client_errors
    def refresh_producer(self, producer_id: int, principal: str, refreshed_ms: int) -> bool:
        record = ProducerIdRecord(producer_id, principal, 0, refreshed_ms=refreshed_ms)
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=self._key(producer_pk(producer_id), PRODUCER_SK),
                UpdateExpression="SET refreshed_ms = :r, #ttl = :t",
                ConditionExpression="attribute_exists(pk) AND principal = :p",
                ExpressionAttributeNames={"#ttl": TTL_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":r": num(refreshed_ms),
                    ":t": num(record.expires_ms // 1000),
                    ":p": {"S": principal},
                },
            )
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

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

    @translate_client_errors
    def create_subscription(self, subscription: Subscription) -> bool:
        return self._put_if(subscription_item(subscription), "attribute_not_exists(pk)")

    @translate_client_errors
    def get_subscription(self, topic: str, name: str) -> Subscription | None:
        response = self._ddb.get_item(
            TableName=self._table,
            Key=self._key(subscription_pk(topic), name),
            ConsistentRead=True,
        )
        item = response.get("Item")
        return subscription_from_item(item) if item else None

    @translate_client_errors
    def list_subscriptions(self, topic: str) -> list[Subscription]:
        return [subscription_from_item(item) for item in self._query_pk(subscription_pk(topic))]

    @translate_client_errors
    def delete_subscription(self, topic: str, name: str) -> bool:
        response = self._ddb.delete_item(
            TableName=self._table,
            Key=self._key(subscription_pk(topic), name),
            ReturnValues="ALL_OLD",
        )
        return bool(response.get("Attributes"))

"""What a group commit costs on DynamoDB: one conditional write per offsets item, whatever
the number of partitions (ADR 0009 amendment 1, whose table quotes these figures).

Write units are measured on moto with the benchmark's recorder (`benchmarks.recorder`):
the larger of the item's sizes before and after each write, 1 unit per started KB,
transactions twice. Member ids are service-made (32 hex characters), topic ids uuids,
offsets six digits and times thirteen, as in a running group.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from benchmarks.meter import item_size
from benchmarks.recorder import Call, CallRecorder

from lakelog import OffsetCommit
from lakelog.limits import DYNAMODB_ITEM_BYTES, MAX_TOPIC_NAME_LENGTH
from lakelog.storage import DynamoGroupStore, ResourceNames
from lakelog.storage.keys import group_pk, offsets_sort_key
from lakelog.storage.ports import LeaseRecord
from tests.contract.backends import new_client

START_MS = 1_741_774_530_000
EXPRESSION_BYTES = 4096
"""DynamoDB's limit on the length of one expression string."""
EXPRESSION_OPERATORS = 300
"""DynamoDB's limit on the operators and functions of one expression."""


class _Group:
    """A group on moto whose one member holds partitions 0 .. n-1 of topic "orders"."""

    def __init__(self, names: ResourceNames, partitions: int, member: str, topic_id: str) -> None:
        client = new_client("dynamodb")
        self.recorder = CallRecorder(new_client("dynamodb"))
        self.recorder.attach(client)
        self.store = DynamoGroupStore(client, names.catalog_table)
        self.names = names
        self.member = member
        self.epochs: dict[int, int] = {}
        stored = {x.partition: x for x in self.store.read_group("g").leases}
        for partition in range(partitions):
            seen = stored.get(partition) or LeaseRecord.missing("orders", partition)
            taken = self.store.take_lease("g", seen, member, topic_id)
            assert taken is not None
            self.epochs[partition] = taken.lease_epoch

    def commit(self, offset: int, now_ms: int = START_MS) -> list[Call]:
        """Commit ``offset`` on every partition held: the calls it made."""
        offsets = [OffsetCommit("orders", p, offset, e) for p, e in self.epochs.items()]
        with self.recorder.capture() as calls:
            self.store.commit("g", self.member, offsets, now_ms)
        return calls

    def offsets_item(self, block: int = 0) -> dict[str, Any]:
        client = new_client("dynamodb")
        key = {"pk": {"S": group_pk("g")}, "sk": {"S": offsets_sort_key("orders", block)}}
        item: dict[str, Any] = client.get_item(
            TableName=self.names.catalog_table, Key=key, ConsistentRead=True
        )["Item"]
        return item


def _operators(expression: str) -> int:
    """Comparators, logical operators and functions in a DynamoDB expression."""
    return len(re.findall(r"\bAND\b|\bOR\b|=|\b[a-z_]+\(", expression))


@pytest.mark.parametrize(("partitions", "units"), [(1, 1), (12, 1), (100, 6)])
def test_a_commit_is_one_conditional_write_of_a_few_units(
    resources: ResourceNames, partitions: int, units: int
) -> None:
    # Given a member holding every partition of a topic of 1, 12 or 100 partitions
    group = _Group(resources, partitions, uuid.uuid4().hex, str(uuid.uuid4()))
    group.commit(100_000)  # the first commit grows the item; the steady state follows

    # When it commits every partition again
    calls = group.commit(123_456, START_MS + 5000)

    # Then that is one UpdateItem (no transaction) of ``units`` write units
    assert [(c.operation, c.status) for c in calls] == [("UpdateItem", 200)]
    assert calls[0].write_units == units
    # and its expressions stay within DynamoDB's limits
    params = calls[0].params
    for expression in (params["ConditionExpression"], params["UpdateExpression"]):
        assert len(expression.encode()) < EXPRESSION_BYTES
        assert _operators(expression) < EXPRESSION_OPERATORS
    leases = group.store.read_group("g").leases
    assert {(x.committed_offset, x.committed_ms) for x in leases} == {(123_456, START_MS + 5000)}


def test_a_commit_over_two_offsets_items_is_one_transaction_of_both(
    resources: ResourceNames,
) -> None:
    # Given a member holding partitions 0 .. 119 (items of partitions 0-99 and 100-119)
    group = _Group(resources, 120, uuid.uuid4().hex, str(uuid.uuid4()))
    del group.epochs[0]  # a commit carries at most 100 offsets: 1 .. 119 is 119, so cut
    for partition in range(1, 20):
        del group.epochs[partition]

    # When it commits partitions 20 .. 119
    calls = group.commit(7)

    # Then one transaction wrote both items, all or nothing
    assert [(c.operation, len(c.params["TransactItems"])) for c in calls] == [
        ("TransactWriteItems", 2)
    ]
    committed = {x.partition: x.committed_offset for x in group.store.read_group("g").leases}
    assert {committed[p] for p in range(20, 120)} == {7}
    assert {committed[p] for p in range(20)} == {None}


def test_a_full_offsets_item_stays_far_under_the_item_limit_at_the_longest_names(
    resources: ResourceNames,
) -> None:
    # Given 100 leases of the longest member id, each with its own topic id (a topic
    # re-created under the same name) and committed offsets of 19 digits
    longest = "m" * MAX_TOPIC_NAME_LENGTH
    _Group(resources, 1, longest, "id-of-the-deleted-topic")  # the item's own topic id
    topic_id = str(uuid.uuid4())
    group = _Group(resources, 100, longest, topic_id)
    group.commit(2**63 - 1, 2**63 - 1)
    assert {(x.topic_id, x.owner) for x in group.store.read_group("g").leases} == {
        (topic_id, longest)
    }

    # Then the item stays under a tenth of DynamoDB's 400 KB
    assert item_size(group.offsets_item()) < DYNAMODB_ITEM_BYTES // 10

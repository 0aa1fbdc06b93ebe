"""The subscription part of the `CatalogStore` contract (ADR 0015 §1): put only if absent,
read back whole by every store, listed per topic by name, deleted once. Run on every
backend, bare and inside the fault wrapper with no fault armed."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from lakelog.storage.faults import FaultInjector, FaultyCatalogStore
from lakelog.storage.ports import CatalogStore
from lakelog.storage.subscriptions import subscription_from_item, subscription_item
from lakelog.types import OnFailure, Subscription
from tests.contract.backends import Backend, Stores

WRAPPERS: dict[str, Callable[[CatalogStore], CatalogStore]] = {
    "bare": lambda store: store,
    "faulty": lambda store: FaultyCatalogStore(store, FaultInjector()),
}


@pytest.fixture(params=sorted(WRAPPERS))
def catalog(request: pytest.FixtureRequest, stores: Stores) -> CatalogStore:
    return WRAPPERS[request.param](stores[2])


def subscription(topic: str, name: str, **options: object) -> Subscription:
    fields: dict[str, object] = {
        "function_arn": "arn:aws:lambda:eu-west-1:123456789012:function:billing",
        "topic_id": "id-1",
        "created_ms": 1_700_000_000_123,
        **options,
    }
    return Subscription(name=name, topic=topic, **fields)  # type: ignore[arg-type]


def test_a_subscription_is_read_back_whole_by_every_store(backend: Backend, ns: str) -> None:
    writer, reader = backend.stores()[2], backend.stores()[2]
    every_option = subscription(
        ns,
        "billing",
        batch_size=10_000,
        max_batching_window_ms=300_000,
        starting_position="AT_TIMESTAMP",
        starting_position_timestamp_ms=1_699_999_999_999,
        maximum_retry_attempts=-1,
        maximum_record_age_ms=604_800_000,
        bisect_batch_on_function_error=True,
        report_batch_item_failures=True,
        on_failure=OnFailure(sqs_arn="arn:aws:sqs:eu-west-1:123456789012:dlq"),
        start_offsets=(0, 17, 2**53),
    )
    defaults = subscription(ns, "audit", on_failure=OnFailure(topic=f"{ns}-dlq"))

    assert writer.create_subscription(every_option)
    assert writer.create_subscription(defaults)

    assert reader.get_subscription(ns, "billing") == every_option
    assert reader.get_subscription(ns, "audit") == defaults
    assert reader.get_subscription(ns, "never") is None
    assert reader.get_subscription(f"{ns}-other", "billing") is None
    assert reader.list_subscriptions(ns) == [defaults, every_option]


def test_an_item_written_before_start_offsets_reads_back_without_them(
    backend: Backend, ns: str
) -> None:
    # Items of subscriptions created before the start offsets were stored: delivery of
    # every partition without a committed offset starts at 0, as it did then
    catalog = backend.stores()[2]
    item = subscription_item(subscription(ns, "old", start_offsets=(5,)))
    options = json.loads(item["options"]["S"])
    del options["start_offsets"]
    item["options"] = {"S": json.dumps(options)}

    old = subscription_from_item(item)

    assert old == subscription(ns, "old")
    assert (old.start_offsets, old.start_offset(0), old.start_offset(3)) == ((), 0, 0)
    assert catalog.create_subscription(old)
    assert catalog.get_subscription(ns, "old") == old


def test_a_subscription_is_created_only_once_per_topic_and_name(
    catalog: CatalogStore, ns: str
) -> None:
    assert catalog.create_subscription(subscription(ns, "s"))

    assert not catalog.create_subscription(subscription(ns, "s", batch_size=5))
    assert catalog.get_subscription(ns, "s") == subscription(ns, "s")
    assert catalog.create_subscription(subscription(f"{ns}-b", "s", batch_size=5))


def test_subscriptions_are_listed_per_topic_by_name(catalog: CatalogStore, ns: str) -> None:
    for name in ("c", "a", "b"):
        catalog.create_subscription(subscription(ns, name))
    catalog.create_subscription(subscription(f"{ns}.x", "z"))  # a topic whose name extends it

    assert [s.name for s in catalog.list_subscriptions(ns)] == ["a", "b", "c"]
    assert catalog.list_subscriptions(f"{ns}.x") == [subscription(f"{ns}.x", "z")]
    assert catalog.list_subscriptions(f"{ns}-none") == []


def test_a_subscription_is_deleted_once_and_its_name_can_be_reused(
    catalog: CatalogStore, ns: str
) -> None:
    catalog.create_subscription(subscription(ns, "s"))
    catalog.create_subscription(subscription(ns, "t"))

    assert catalog.delete_subscription(ns, "s")
    assert not catalog.delete_subscription(ns, "s")
    assert not catalog.delete_subscription(ns, "never")
    assert catalog.get_subscription(ns, "s") is None
    assert [s.name for s in catalog.list_subscriptions(ns)] == ["t"]
    assert catalog.create_subscription(subscription(ns, "s", topic_id="id-2"))
    assert catalog.get_subscription(ns, "s") == subscription(ns, "s", topic_id="id-2")

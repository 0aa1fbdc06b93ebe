"""The `ObjectStore` contract: immutable objects by key, ranged reads, listings, deletes."""

from __future__ import annotations

import time
from typing import Any, cast

import pytest

from lakelog.errors import CorruptSegmentError, UnavailableError
from lakelog.storage.memory import MemoryStorage
from lakelog.storage.ports import ObjectStore
from lakelog.storage.s3 import S3ObjectStore
from tests.contract.backends import Backend, Stores

LISTING_PAGE = 1000
"""Keys S3 returns per listing page (and deletes per request)."""


@pytest.fixture
def objects(stores: Stores) -> ObjectStore:
    return stores[0]


def test_a_put_object_reads_back_in_any_range(objects: ObjectStore, ns: str) -> None:
    objects.put(f"{ns}/a", b"0123456789")

    assert objects.get_range(f"{ns}/a", 0, 10) == b"0123456789"
    assert objects.get_range(f"{ns}/a", 3, 7) == b"3456"
    assert objects.get_range(f"{ns}/a", 9, 10) == b"9"


def test_a_put_replaces_the_object_and_another_store_sees_it_at_once(
    backend: Backend, ns: str
) -> None:
    writer, reader = backend.stores()[0], backend.stores()[0]
    writer.put(f"{ns}/a", b"first")
    writer.put(f"{ns}/a", b"second!")

    assert reader.get_range(f"{ns}/a", 0, 7) == b"second!"
    assert [(i.key, i.size) for i in reader.list(f"{ns}/")] == [(f"{ns}/a", 7)]


@pytest.mark.parametrize(
    ("key", "start", "end", "reason"),
    [
        ("missing", 0, 1, "NoSuchKey"),
        ("ten", 10, 12, "InvalidRange"),
        ("ten", 11, 12, "InvalidRange"),
        ("ten", 8, 12, "asked for bytes [8, 12) and got 2 bytes"),
        ("empty", 0, 1, "InvalidRange"),
    ],
)
def test_a_range_past_the_end_or_of_a_missing_object_is_a_corrupt_segment(
    objects: ObjectStore, ns: str, key: str, start: int, end: int, reason: str
) -> None:
    objects.put(f"{ns}/ten", b"0123456789")
    objects.put(f"{ns}/empty", b"")

    with pytest.raises(CorruptSegmentError, match=reason.replace("[", r"\[").replace(")", r"\)")):
        objects.get_range(f"{ns}/{key}", start, end)


def test_an_empty_object_reads_back_empty(objects: ObjectStore, ns: str) -> None:
    objects.put(f"{ns}/empty", b"")

    assert objects.get_range(f"{ns}/empty", 0, 0) == b""
    assert [(i.key, i.size) for i in objects.list(f"{ns}/")] == [(f"{ns}/empty", 0)]


def test_a_listing_has_every_key_under_the_prefix_in_key_order_with_sizes(
    objects: ObjectStore, ns: str
) -> None:
    before_ms = int(time.time() * 1000)
    for key, body in [("b/2", b"22"), ("a", b"1"), ("b/1", b"333"), ("bz", b""), ("c", b"4")]:
        objects.put(f"{ns}/{key}", body)
    after_ms = int(time.time() * 1000)

    listing = list(objects.list(f"{ns}/b"))

    assert [(i.key, i.size) for i in listing] == [
        (f"{ns}/b/1", 3),
        (f"{ns}/b/2", 2),
        (f"{ns}/bz", 0),
    ]
    # S3 keeps whole seconds; allow a clock skew of a few seconds for real AWS.
    assert all(before_ms - 5000 <= i.last_modified_ms <= after_ms + 5000 for i in listing)
    assert list(objects.list(f"{ns}/nothing-here")) == []


def test_delete_removes_the_keys_given_and_ignores_missing_ones(
    objects: ObjectStore, ns: str
) -> None:
    for key in ("a", "b", "c"):
        objects.put(f"{ns}/{key}", key.encode())

    objects.delete([f"{ns}/a", f"{ns}/c", f"{ns}/never"])
    objects.delete([])

    assert [i.key for i in objects.list(f"{ns}/")] == [f"{ns}/b"]
    with pytest.raises(CorruptSegmentError):
        objects.get_range(f"{ns}/a", 0, 1)


def test_listing_and_deleting_go_past_one_page(objects: ObjectStore, ns: str) -> None:
    keys = [f"{ns}/{i:05d}" for i in range(LISTING_PAGE + 1)]
    for key in keys:
        objects.put(key, b"x")

    assert [i.key for i in objects.list(f"{ns}/")] == keys
    objects.delete(keys)
    assert list(objects.list(f"{ns}/")) == []


def test_memory_objects_take_their_time_from_the_injected_clock() -> None:
    now = [1_000]
    objects = MemoryStorage(clock_ms=lambda: now[0]).stores()[0]
    objects.put("a", b"1")
    now[0] = 5_000
    objects.put("b", b"2")

    assert [(i.key, i.last_modified_ms) for i in objects.list("")] == [("a", 1_000), ("b", 5_000)]


class _KeepingS3:
    """An S3 client whose DeleteObjects answers 200 but lists the keys it kept."""

    def delete_objects(self, Bucket: str, Delete: dict[str, Any]) -> dict[str, Any]:  # noqa: N803
        kept = Delete["Objects"][0]["Key"]
        return {"Errors": [{"Key": kept, "Code": "AccessDenied", "Message": "Access Denied"}]}


def test_s3_keys_a_delete_left_in_place_are_an_error_not_a_silent_success() -> None:
    objects = S3ObjectStore(cast("Any", _KeepingS3()), "bucket")

    with pytest.raises(UnavailableError, match=r"kept 1 of 2 objects, e\.g\. t/a: AccessDenied"):
        objects.delete(["t/a", "t/b"])

"""What every use case shares: the stores, a clock and the caches in front of them."""

from __future__ import annotations

import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Concatenate, ParamSpec, TypeVar

from lakelog.errors import InvalidRequestError, StaleTopicError, TopicNotFoundError
from lakelog.limits import validate_topic_name
from lakelog.log.codec import SegmentReader
from lakelog.log.records import Head
from lakelog.storage.keys import partition_pk
from lakelog.storage.ports import CatalogStore, LedgerStore, ObjectStore, TopicRecord

__all__ = [
    "Caches",
    "EngineContext",
    "HeadCache",
    "SegmentReaderCache",
    "TopicCache",
    "now_ms",
    "retry_if_stale",
]

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")

TOPIC_CACHE_SECONDS = 30.0
"""How long a process trusts a cached topic (partition count, config) before re-reading."""


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch: the engine's clock unless one is injected."""
    return int(time.time() * 1000)


class TopicCache:
    """Topics by name, re-read from the catalog after `TOPIC_CACHE_SECONDS`.

    Ages are measured on ``clock_ms``, the engine's clock (a clock that went back counts
    as expired).
    """

    def __init__(
        self,
        catalog: CatalogStore,
        ttl_seconds: float = TOPIC_CACHE_SECONDS,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self._catalog = catalog
        self._ttl_ms = ttl_seconds * 1000
        self._clock_ms = clock_ms
        self._topics: dict[str, tuple[int, TopicRecord]] = {}
        self._lock = threading.Lock()

    def get(self, name: str, min_partitions: object = 0) -> TopicRecord:
        """The topic ``name``; raises `TopicNotFoundError` (or `InvalidRequestError`).

        A cached topic with fewer than ``min_partitions`` partitions is read again: another
        process may have added partitions since.
        """
        validate_topic_name(name)
        with self._lock:
            cached = self._topics.get(name)
        wanted = min_partitions if isinstance(min_partitions, int) else 0
        if cached and self._fresh(cached[0]) and cached[1].partitions >= wanted:
            return cached[1]
        topic = self._catalog.get_topic(name)
        if topic is None:
            self.invalidate(name)
            raise TopicNotFoundError(name)
        self.put(topic)
        return topic

    def put(self, topic: TopicRecord) -> None:
        """Remember ``topic`` as current."""
        with self._lock:
            self._topics[topic.name] = (self._clock_ms(), topic)

    def _fresh(self, cached_ms: int) -> bool:
        return 0 <= self._clock_ms() - cached_ms < self._ttl_ms

    def invalidate(self, name: str) -> None:
        """Forget ``name``; the next `get` reads the catalog."""
        with self._lock:
            self._topics.pop(name, None)


class HeadCache:
    """The last head this process saw per partition: a hint the ledger condition checks."""

    def __init__(self) -> None:
        self._heads: dict[str, Head] = {}
        self._lock = threading.Lock()

    def get_many(self, ledger: LedgerStore, pks: Sequence[str]) -> dict[str, Head]:
        """Cached heads of ``pks``, reading the missing ones in one batch."""
        with self._lock:
            heads = {pk: self._heads[pk] for pk in pks if pk in self._heads}
        missing = [pk for pk in pks if pk not in heads]
        if missing:
            fresh = ledger.read_heads(missing)
            self.update(fresh)
            heads.update(fresh)
        return heads

    def peek(self, pk: str) -> Head | None:
        """The cached head of ``pk`` without reading the ledger."""
        with self._lock:
            return self._heads.get(pk)

    def update(self, heads: dict[str, Head]) -> None:
        """Remember ``heads`` as the latest known."""
        with self._lock:
            self._heads.update(heads)

    def forget(self, pks: Sequence[str]) -> None:
        """Drop ``pks`` (their partitions were deleted)."""
        with self._lock:
            for pk in pks:
                self._heads.pop(pk, None)


class SegmentReaderCache:
    """Parsed footers of recently read segments (segments are immutable), LRU-bounded."""

    def __init__(self, capacity: int = 256) -> None:
        self._capacity = capacity
        self._readers: OrderedDict[str, SegmentReader] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> SegmentReader | None:
        """The cached reader of segment ``key``, if any."""
        with self._lock:
            reader = self._readers.get(key)
            if reader is not None:
                self._readers.move_to_end(key)
            return reader

    def put(self, reader: SegmentReader) -> None:
        """Cache ``reader``, evicting the least recently used beyond capacity."""
        with self._lock:
            self._readers[reader.key] = reader
            self._readers.move_to_end(reader.key)
            while len(self._readers) > self._capacity:
                self._readers.popitem(last=False)


@dataclass
class Caches:
    """The per-process caches; all are hints, never trusted for correctness."""

    topics: TopicCache
    heads: HeadCache = field(default_factory=HeadCache)
    segments: SegmentReaderCache = field(default_factory=SegmentReaderCache)


@dataclass
class EngineContext:
    """Stores, caches and clock one engine's use cases share."""

    objects: ObjectStore
    ledger: LedgerStore
    catalog: CatalogStore
    caches: Caches
    clock_ms: Callable[[], int] = now_ms

    @classmethod
    def create(
        cls,
        objects: ObjectStore,
        ledger: LedgerStore,
        catalog: CatalogStore,
        clock_ms: Callable[[], int] = now_ms,
    ) -> EngineContext:
        """A context with fresh caches."""
        topics = TopicCache(catalog, clock_ms=clock_ms)
        return cls(objects, ledger, catalog, Caches(topics=topics), clock_ms)

    def partition_pk(self, topic: TopicRecord, partition: object) -> str:
        """Ledger key of ``partition`` of ``topic``, checking that the partition exists."""
        if isinstance(partition, bool) or not isinstance(partition, int):
            raise InvalidRequestError(f"partition must be an integer, not {partition!r}")
        if not 0 <= partition < topic.partitions:
            raise InvalidRequestError(
                f"partition {partition} does not exist: topic {topic.name!r} has "
                f"partitions 0..{topic.partitions - 1}"
            )
        return partition_pk(topic.topic_id, partition)

    def current_topic(self, name: str) -> TopicRecord:
        """The topic ``name`` read strongly from the catalog (and cached), for use cases
        that must not act on a stale copy; raises `TopicNotFoundError`."""
        validate_topic_name(name)
        topic = self.catalog.get_topic(name)
        if topic is None:
            self.caches.topics.invalidate(name)
            raise TopicNotFoundError(name)
        self.caches.topics.put(topic)
        return topic

    def head(self, topic: TopicRecord, partition: int) -> Head:
        """The current head of one partition, read strongly; `StaleTopicError` if gone."""
        pk = self.partition_pk(topic, partition)
        heads = self.ledger.read_heads([pk])
        if pk not in heads:
            raise self.stale(topic)
        self.caches.heads.update(heads)
        return heads[pk]

    def stale(self, topic: TopicRecord) -> StaleTopicError:
        """Forget a topic whose ledger is gone; the error to raise."""
        self.caches.topics.invalidate(topic.name)
        return StaleTopicError(topic.name)


def retry_if_stale(
    method: Callable[Concatenate[S, P], R],
) -> Callable[Concatenate[S, P], R]:
    """Run a use case once more if the topic it had cached turned out deleted.

    The second run reads the catalog afresh: it finds the topic re-created under a new id,
    or raises `TopicNotFoundError`. Only used where the first run wrote nothing visible.
    """

    @functools.wraps(method)
    def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except StaleTopicError:
            return method(self, *args, **kwargs)

    return wrapper

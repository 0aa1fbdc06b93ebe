"""What every use case shares: the stores, a clock and the caches in front of them."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Concatenate, Final, ParamSpec, TypeVar

from lakelog.errors import (
    InvalidRequestError,
    PartitionNotFoundError,
    StaleTopicError,
    TopicNotFoundError,
)
from lakelog.limits import validate_topic_name
from lakelog.log.codec import SegmentReader
from lakelog.log.records import ChainItem, ChainMeta
from lakelog.storage.ports import (
    CatalogStore,
    LedgerStore,
    ObjectStore,
    TopicRecord,
)

__all__ = [
    "Caches",
    "ChainCache",
    "EngineContext",
    "SegmentBytesCache",
    "SegmentReaderCache",
    "TopicCache",
    "TopicState",
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


class ChainCache:
    """Chain items this process wrote or read, by topic id and seq (items never change),
    and the newest item seen per topic: hints, never trusted for correctness.

    The newest item serves as a lower bound of high watermarks when a fetch did not reach
    the end of the chain; the items serve the offset searches' probes. LRU-bounded.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._items: OrderedDict[tuple[str, int], ChainItem] = OrderedDict()
        self._newest: dict[str, ChainItem] = {}
        self._lock = threading.Lock()

    def get(self, topic_id: str, seq: int) -> ChainItem | None:
        """The cached item ``seq`` of the topic, if any."""
        with self._lock:
            item = self._items.get((topic_id, seq))
            if item is not None:
                self._items.move_to_end((topic_id, seq))
            return item

    def newest(self, topic_id: str) -> ChainItem | None:
        """The item of highest seq this process saw in the topic."""
        with self._lock:
            return self._newest.get(topic_id)

    def put(self, topic_id: str, items: Sequence[ChainItem]) -> None:
        """Remember ``items`` of the topic."""
        with self._lock:
            for item in items:
                self._items[(topic_id, item.seq)] = item
                self._items.move_to_end((topic_id, item.seq))
                newest = self._newest.get(topic_id)
                if newest is None or newest.seq < item.seq:
                    self._newest[topic_id] = item
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def forget(self, topic_id: str) -> None:
        """Drop what is known of a deleted topic's newest item."""
        with self._lock:
            self._newest.pop(topic_id, None)


@dataclass(frozen=True, slots=True)
class TopicState:
    """A topic's ledger read at one instant: the chain's last item and the meta item."""

    tail: ChainItem
    meta: ChainMeta

    def high_watermark(self, partition: int) -> int:
        """The partition's high watermark."""
        return self.tail.mark(partition).high_watermark

    def log_start_offset(self, partition: int) -> int:
        """The partition's first readable offset."""
        return self.meta.log_start_offset(partition)

    def size_bytes(self, partition: int) -> int:
        """Bytes of the partition's batches at or above its log start."""
        below = self.meta.bytes_below
        return self.tail.mark(partition).cumulative_bytes - (
            below[partition] if partition < len(below) else 0
        )


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


SEGMENT_BYTES_CACHED: Final = 64 << 20
"""Bytes of recently read segment ranges a process keeps (`SegmentBytesCache`): more than
the largest L1 read ahead (1.5 times `lakelog.service.fetch.L1_READ_AHEAD`), which a range
larger than the cache would not be kept for the next fetch."""


class SegmentBytesCache:
    """Byte ranges of recently read segments, LRU-bounded by their total size.

    Segments never change, so a range read once serves every later read inside it: a
    member whose fetch stopped inside a segment reads the rest without a second GET, and
    the consumer groups a warm function serves share the GETs of the segments they all
    read. A range that overlaps or touches the one kept of its segment is joined to it.
    Threads reading one segment at once take turns (`filling`), so the later ones find
    what the first one read instead of each sending the same GET.
    """

    def __init__(self, capacity_bytes: int = SEGMENT_BYTES_CACHED) -> None:
        self._capacity = capacity_bytes
        self._ranges: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self._filling: dict[str, tuple[threading.Lock, int]] = {}

    def readers(self, key: str) -> int:
        """Threads holding or waiting for segment ``key``'s turn (`filling`)."""
        with self._lock:
            return self._filling.get(key, (None, 0))[1]

    @contextlib.contextmanager
    def filling(self, key: str) -> Iterator[None]:
        """Hold segment ``key``'s turn to read it while the block runs (one thread at a
        time per segment; other segments are not held up)."""
        with self._lock:
            lock, users = self._filling.get(key, (threading.Lock(), 0))
            self._filling[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._lock:
                lock, users = self._filling[key]
                if users == 1:
                    del self._filling[key]
                else:
                    self._filling[key] = (lock, users - 1)

    def get(self, key: str, start: int, end: int) -> bytes | None:
        """Bytes ``[start, end)`` of segment ``key`` if one cached range holds them."""
        with self._lock:
            cached = self._ranges.get(key)
            if cached is None:
                return None
            offset, data = cached
            if offset > start or offset + len(data) < end:
                return None
            self._ranges.move_to_end(key)
            return data[start - offset : end - offset]

    def put(self, key: str, start: int, data: bytes) -> None:
        """Keep ``data`` (the bytes of ``key`` from ``start``), evicting the oldest ranges."""
        if len(data) > self._capacity:
            return
        with self._lock:
            previous = self._ranges.pop(key, None)
            if previous is not None:
                self._size -= len(previous[1])
                start, data = _joined(previous, (start, data), self._capacity)
            self._ranges[key] = (start, data)
            self._size += len(data)
            while self._size > self._capacity:
                _, (_, evicted) = self._ranges.popitem(last=False)
                self._size -= len(evicted)


def _joined(kept: tuple[int, bytes], new: tuple[int, bytes], capacity: int) -> tuple[int, bytes]:
    """``new``, joined with ``kept`` when the two ranges overlap or touch (and fit)."""
    (a, old), (b, data) = kept, new
    low, high = min(a, b), max(a + len(old), b + len(data))
    if b > a + len(old) or a > b + len(data) or high - low > capacity:
        return new
    joined = bytearray(high - low)
    joined[a - low : a - low + len(old)] = old
    joined[b - low : b - low + len(data)] = data
    return low, bytes(joined)


@dataclass
class Caches:
    """The per-process caches; all are hints, never trusted for correctness."""

    topics: TopicCache
    chain: ChainCache = field(default_factory=ChainCache)
    segments: SegmentReaderCache = field(default_factory=SegmentReaderCache)
    segment_bytes: SegmentBytesCache = field(default_factory=SegmentBytesCache)


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

    def check_partition(self, topic: TopicRecord, partition: object) -> int:
        """``partition`` if it is a partition of ``topic``; `InvalidRequestError` if not."""
        if isinstance(partition, bool) or not isinstance(partition, int):
            raise InvalidRequestError(f"partition must be an integer, not {partition!r}")
        if not 0 <= partition < topic.partitions:
            raise PartitionNotFoundError(
                f"partition {partition} does not exist: topic {topic.name!r} has "
                f"partitions 0..{topic.partitions - 1}"
            )
        return partition

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

    def topic_state(self, topic: TopicRecord) -> TopicState:
        """The topic's chain tail and meta item, read strongly in one request.

        Raises `StaleTopicError` when the topic's ledger is gone or sealed for deletion.
        """
        found = self.ledger.read_tail(topic.topic_id)
        if found is None or found[0].kind == "seal" or found[1].sealed_ms is not None:
            raise self.stale(topic)
        tail, meta = found
        self.caches.chain.put(topic.topic_id, [tail])
        return TopicState(tail, meta)

    def stale(self, topic: TopicRecord) -> StaleTopicError:
        """Forget a topic whose ledger is gone or sealed; the error to raise."""
        self.caches.topics.invalidate(topic.name)
        self.caches.chain.forget(topic.topic_id)
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

"""Partition choice: explicit, by key with Kafka's murmur2, or sticky round-robin."""

from __future__ import annotations

import itertools
import random
import threading

__all__ = ["StickyPartitioner", "murmur2", "partition_for_key", "to_positive"]

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def _to_int32(value: int) -> int:
    value &= _MASK
    return value - (1 << 32) if value & 0x80000000 else value


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2``: the signed 32-bit hash the Java client partitions keys by."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length - (length & 3)
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    rest = length & 3
    if rest == 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return _to_int32(h)


def to_positive(value: int) -> int:
    """Kafka's ``Utils.toPositive``: clear the sign bit of a signed 32-bit int."""
    return value & 0x7FFFFFFF


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key``."""
    return to_positive(murmur2(key)) % partitions


class StickyPartitioner:
    """Keyless records: all of one append go to one partition, the next append to the next.

    Thread-safe; each topic keeps its own round-robin position, starting at a random
    partition so that many short-lived processes do not all begin with partition 0.
    """

    def __init__(self, seed: int | None = None) -> None:
        self._counters: dict[str, itertools.count[int]] = {}
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def next_partition(self, topic: str, partitions: int) -> int:
        """The partition for the keyless records of the next append to ``topic``."""
        with self._lock:
            counter = self._counters.get(topic)
            if counter is None:
                counter = self._counters[topic] = itertools.count(self._random.randrange(1 << 30))
            return next(counter) % partitions

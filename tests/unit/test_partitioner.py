"""Partition choice: Kafka's murmur2 for keys, sticky round-robin for keyless records.

The key vectors are the ones Kafka itself publishes (``UtilsTest.testMurmur2`` and
``DefaultPartitionerTest`` / ``BuiltInPartitionerTest``), so a key lands on the same
partition from a Java producer and from lakelog.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter

import pytest

from lakelog.log.partitioner import StickyPartitioner, murmur2, partition_for_key, to_positive

# Kafka's org.apache.kafka.common.utils.UtilsTest#testMurmur2
KAFKA_MURMUR2_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]

# toPositive(murmur2(key)) % 1000, as the Java DefaultPartitioner computes it.
KAFKA_PARTITIONS_OF_1000 = [
    (b"", 681),
    (b"a", 524),
    (b"abc", 107),
    (b"123456789", 566),
]


@pytest.mark.parametrize(("data", "expected"), KAFKA_MURMUR2_VECTORS)
def test_murmur2_equals_kafka_published_vectors(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


@pytest.mark.parametrize(("key", "expected"), KAFKA_PARTITIONS_OF_1000)
def test_partition_for_key_equals_kafka_default_partitioner(key: bytes, expected: int) -> None:
    assert partition_for_key(key, 1000) == expected


@pytest.mark.parametrize("length", range(12))
def test_murmur2_is_a_signed_32_bit_int_for_every_tail_length(length: int) -> None:
    # Given keys whose lengths exercise the 0..3 byte tail and several whole words
    data = bytes((i * 37 + 11) & 0xFF for i in range(length))

    # When hashed twice
    first, second = murmur2(data), murmur2(data)

    # Then the hash is deterministic and fits Java's int
    assert first == second
    assert -(2**31) <= first < 2**31


def test_murmur2_uses_high_bytes_as_unsigned() -> None:
    # Java sign-extends bytes before masking with 0xff; a port that forgets the mask
    # (or forgets that Python bytes are already unsigned) differs on bytes >= 0x80.
    assert murmur2(b"\xff\xfe\xfd\xfc\x80") != murmur2(b"\x7f\x7e\x7d\x7c\x00")
    assert murmur2(bytes([0x80])) != murmur2(bytes([0x00]))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (1, 1),
        (2**31 - 1, 2**31 - 1),
        (-1, 2**31 - 1),
        (-(2**31), 0),
        (-973932308, -973932308 & 0x7FFFFFFF),
    ],
)
def test_to_positive_clears_the_sign_bit_like_kafka(value: int, expected: int) -> None:
    assert to_positive(value) == expected


def test_to_positive_is_not_abs() -> None:
    # Kafka deliberately avoids Math.abs: abs(-2**31) overflows and abs(-5) != toPositive(-5)
    assert to_positive(-5) == 2**31 - 5
    assert to_positive(-5) != abs(-5)


@pytest.mark.parametrize("partitions", [1, 2, 3, 7, 1000])
def test_partition_for_key_is_stable_and_in_range(partitions: int) -> None:
    keys = [f"key-{i}".encode() for i in range(200)]

    chosen = [partition_for_key(key, partitions) for key in keys]

    assert chosen == [partition_for_key(key, partitions) for key in keys]
    assert all(0 <= partition < partitions for partition in chosen)


def test_partition_for_key_spreads_keys_over_partitions() -> None:
    counts = Counter(partition_for_key(f"user-{i}".encode(), 8) for i in range(8000))

    assert set(counts) == set(range(8))
    assert min(counts.values()) > 800  # 1000 expected per partition


# Sticky partitioner -----------------------------------------------------------------


def test_sticky_partitioner_rotates_over_every_partition_in_turn() -> None:
    sticky = StickyPartitioner(seed=7)

    chosen = [sticky.next_partition("orders", 5) for _ in range(15)]

    # Then each next append goes to the next partition, wrapping around
    for previous, current in itertools.pairwise(chosen):
        assert current == (previous + 1) % 5
    assert Counter(chosen) == {p: 3 for p in range(5)}


def test_sticky_partitioner_is_reproducible_with_a_seed() -> None:
    first = StickyPartitioner(seed=42)
    second = StickyPartitioner(seed=42)

    assert [first.next_partition("t", 1000) for _ in range(5)] == [
        second.next_partition("t", 1000) for _ in range(5)
    ]


def test_sticky_partitioner_starts_at_a_random_partition() -> None:
    # Many short-lived processes must not all begin with partition 0.
    starts = {StickyPartitioner(seed=seed).next_partition("t", 100) for seed in range(50)}

    assert len(starts) > 10


def test_sticky_partitioner_keeps_one_position_per_topic() -> None:
    sticky = StickyPartitioner(seed=3)
    a0 = sticky.next_partition("a", 4)
    b0 = sticky.next_partition("b", 4)

    # When topic b advances many times
    for _ in range(3):
        sticky.next_partition("b", 4)

    # Then topic a continues from its own position
    assert sticky.next_partition("a", 4) == (a0 + 1) % 4
    assert sticky.next_partition("b", 4) == (b0 + 4) % 4


def test_sticky_partitioner_follows_a_partition_count_that_grew() -> None:
    sticky = StickyPartitioner(seed=1)

    chosen = [sticky.next_partition("t", 2) for _ in range(4)]
    grown = [sticky.next_partition("t", 6) for _ in range(12)]

    assert all(0 <= p < 2 for p in chosen)
    assert set(grown) == set(range(6))


def test_sticky_partitioner_is_thread_safe() -> None:
    # Given many threads sharing one partitioner
    sticky = StickyPartitioner(seed=11)
    threads_count, calls, partitions = 8, 2000, 7
    barrier = threading.Barrier(threads_count)
    results: list[list[int]] = [[] for _ in range(threads_count)]

    def work(index: int) -> None:
        barrier.wait()
        for _ in range(calls):
            results[index].append(sticky.next_partition("shared", partitions))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then every call got its own turn: the round-robin is exactly balanced
    counts = Counter(p for chosen in results for p in chosen)
    assert sum(counts.values()) == threads_count * calls
    assert set(counts) == set(range(partitions))
    assert max(counts.values()) - min(counts.values()) <= 1

"""What the contract tests share besides fixtures: ledger writes, racing threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from lakelog.log.records import Entry, PartitionWrite

__all__ = ["entry", "race", "write"]

T = TypeVar("T")


def race(threads: int, action: Callable[[int], T]) -> list[T | BaseException]:
    """Run ``action(i)`` in ``threads`` threads released together by one barrier.

    Returns each thread's result, or the exception it raised, by thread index.
    """
    barrier = threading.Barrier(threads)
    results: list[T | BaseException] = [RuntimeError("did not run")] * threads

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = action(index)
        except BaseException as exc:
            results[index] = exc

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results


def entry(base: int, count: int = 1, size: int = 10, ts: int = 100) -> Entry:
    """An entry of ``count`` offsets from ``base`` (its segment need not exist)."""
    return Entry(
        base_offset=base,
        last_offset=base + count - 1,
        segment_key=f"segments/t/L0/{base:013d}.parquet",
        row_group=0,
        byte_offset=4,
        byte_length=size,
        segment_size=size + 8,
        footer_offset=size + 4,
        min_timestamp=ts,
        max_timestamp=ts,
        max_timestamp_cum=ts,
        size_bytes=size,
    )


def write(pk: str, head: int, count: int = 1, **fields: object) -> PartitionWrite:
    """The write appending ``count`` offsets after a head at ``head``."""
    return PartitionWrite(
        pk=pk,
        expected_high_watermark=head,
        new_high_watermark=head + count,
        new_max_timestamp=100,
        entry=entry(head, count),
        **fields,  # type: ignore[arg-type]
    )

"""What the contract tests share besides fixtures: racing threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["race"]

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

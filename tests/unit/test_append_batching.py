"""The gateway's append batching (ADR 0016 §3.1): requests of many connections become one
append per topic, in arrival order, and one bad request fails only itself."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from lakelog.errors import InvalidRequestError, PayloadTooLargeError, UnavailableError
from lakelog.kafka.batching import AppendBatcher
from lakelog.types import Record, RecordMetadata

HOUR_MS = 3_600_000
"""A linger no test waits out: a test that depended on it would time out."""


class ScriptedLog:
    """Appends to in-memory topics; records each append; can hold or fail appends."""

    def __init__(self) -> None:
        self.appends: list[tuple[str, list[bytes | None]]] = []
        self.offsets: dict[str, int] = {}
        self.hold: asyncio.Event | None = None
        self.started = asyncio.Event()
        self.fail_with: Exception | None = None
        self.refuse: bytes | None = None

    async def append(self, topic: str, records: Sequence[Record]) -> list[RecordMetadata]:
        self.started.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.fail_with is not None:
            raise self.fail_with
        if self.refuse is not None and any(r.value == self.refuse for r in records):
            raise PayloadTooLargeError("record too large")
        self.appends.append((topic, [r.value for r in records]))
        start = self.offsets.get(topic, 0)
        self.offsets[topic] = start + len(records)
        return [RecordMetadata(topic, 0, start + i, 0) for i in range(len(records))]


def records(*values: bytes) -> list[Record]:
    return [Record(value=v) for v in values]


def run(coro: object) -> object:
    return asyncio.run(asyncio.wait_for(coro, 5))  # type: ignore[arg-type]


def test_requests_within_the_linger_become_one_append_in_arrival_order() -> None:
    async def scenario() -> None:
        log = ScriptedLog()
        batcher = AppendBatcher(log.append, linger_ms=50)
        a, b, c = await asyncio.gather(
            batcher.append("t", records(b"a1", b"a2")),
            batcher.append("t", records(b"b1")),
            batcher.append("t", records(b"c1", b"c2")),
        )
        assert log.appends == [("t", [b"a1", b"a2", b"b1", b"c1", b"c2"])]
        assert [m.offset for m in a] == [0, 1]
        assert [m.offset for m in b] == [2]
        assert [m.offset for m in c] == [3, 4]

    run(scenario())


def test_a_full_batch_is_appended_without_waiting_for_the_linger() -> None:
    async def scenario() -> None:
        log = ScriptedLog()
        batcher = AppendBatcher(log.append, linger_ms=HOUR_MS, max_records=3)
        first, second = await asyncio.gather(
            batcher.append("t", records(b"1", b"2")), batcher.append("t", records(b"3"))
        )
        assert log.appends == [("t", [b"1", b"2", b"3"])]
        assert [m.offset for m in first + second] == [0, 1, 2]

    run(scenario())


def test_a_request_that_does_not_fit_starts_the_next_batch_appended_after_the_first() -> None:
    async def scenario() -> None:
        log = ScriptedLog()
        log.hold = asyncio.Event()
        batcher = AppendBatcher(log.append, linger_ms=HOUR_MS, max_records=2)
        first = asyncio.create_task(batcher.append("t", records(b"1", b"2")))  # full
        await log.started.wait()  # the first batch's append is under way, held
        second = asyncio.create_task(batcher.append("t", records(b"3", b"4")))  # full too
        for _ in range(10):
            await asyncio.sleep(0)
        assert log.appends == []  # the second batch waits for the first
        log.hold.set()
        await asyncio.gather(first, second)
        assert log.appends == [("t", [b"1", b"2"]), ("t", [b"3", b"4"])]

    run(scenario())


def test_one_bad_request_fails_alone_and_the_others_are_appended() -> None:
    async def scenario() -> None:
        log = ScriptedLog()
        log.refuse = b"huge"
        batcher = AppendBatcher(log.append, linger_ms=20)
        good, bad, other = await asyncio.gather(
            batcher.append("t", records(b"a")),
            batcher.append("t", records(b"huge")),
            batcher.append("t", records(b"b")),
            return_exceptions=True,
        )
        assert isinstance(bad, PayloadTooLargeError)
        assert log.appends == [("t", [b"a"]), ("t", [b"b"])]
        assert [m.offset for m in good] == [0]  # type: ignore[union-attr]
        assert [m.offset for m in other] == [1]  # type: ignore[union-attr]

    run(scenario())


def test_an_unavailable_ledger_fails_every_request_of_the_batch_and_appends_nothing() -> None:
    async def scenario() -> None:
        log = ScriptedLog()
        log.fail_with = UnavailableError("ledger unavailable")
        batcher = AppendBatcher(log.append, linger_ms=20)
        results = await asyncio.gather(
            batcher.append("t", records(b"a")),
            batcher.append("t", records(b"b")),
            return_exceptions=True,
        )
        assert all(isinstance(r, UnavailableError) for r in results)
        assert batcher.appends == 1
        assert log.appends == []

    run(scenario())


def test_topics_are_batched_apart() -> None:
    async def scenario() -> None:
        log = ScriptedLog()
        batcher = AppendBatcher(log.append, linger_ms=20)
        await asyncio.gather(
            batcher.append("x", records(b"x1")),
            batcher.append("y", records(b"y1")),
            batcher.append("x", records(b"x2")),
        )
        assert sorted(log.appends) == [("x", [b"x1", b"x2"]), ("y", [b"y1"])]

    run(scenario())


def test_an_empty_request_is_refused() -> None:
    async def scenario() -> None:
        batcher = AppendBatcher(ScriptedLog().append)
        with pytest.raises(InvalidRequestError, match="at least one record"):
            await batcher.append("t", [])

    run(scenario())

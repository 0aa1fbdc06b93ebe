"""Append batching: Produce requests of many connections become one append per topic
(ADR 0016 §3.1).

Kafka clients send small requests often (librdkafka lingers 5 ms); lakelog bills an append
per S3 PUT and ledger item, whatever its size. So a gateway holds the plain
(non-idempotent) records it receives for a topic up to ``linger_ms`` (or until the batch
reaches the append limits) and appends them together, in arrival order, as one `Append`;
each request is answered with its own records' offsets once that append is durable. A
topic's batches are appended one after another, so records keep their arrival order
across batches too.

Failure cases:

- The combined append fails for a reason one request may have caused (bad input, too
  large): each request of the batch is appended alone, so one bad request fails only
  itself.
- It fails for any other reason (unavailable, throttled, topic deleted): every request of
  the batch gets that error, as each would have alone; nothing was appended (an append is
  all-or-nothing), so a client's retry does not duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from lakelog.errors import InvalidRequestError
from lakelog.limits import (
    KAFKA_APPEND_LINGER_MS,
    MAX_APPEND_BYTES,
    MAX_APPEND_RECORDS,
    record_size,
)
from lakelog.types import Record, RecordMetadata

__all__ = ["DEFAULT_LINGER_MS", "AppendBatcher", "AppendFn"]

DEFAULT_LINGER_MS: Final = KAFKA_APPEND_LINGER_MS
"""How long a gateway holds a topic's first pending records before appending them."""

AppendFn = Callable[[str, Sequence[Record]], Awaitable[list[RecordMetadata]]]
"""Appends records to a topic (one `Append`), off the event loop."""


@dataclass
class _Pending:
    """One request's records waiting in a batch, and its answer."""

    records: Sequence[Record]
    size: int
    answer: asyncio.Future[list[RecordMetadata]]


@dataclass
class _Batch:
    after: asyncio.Future[None] | None
    """Done when the topic's previous batch is appended (or failed)."""
    done: asyncio.Future[None]
    pending: list[_Pending] = field(default_factory=list)
    size: int = 0
    count: int = 0
    full: asyncio.Event = field(default_factory=asyncio.Event)


class AppendBatcher:
    """Batches plain appends per topic for ``linger_ms`` (0: each request alone).

    Parameters
    ----------
    append
        Appends one batch to a topic.
    linger_ms
        The longest a request waits for others to join its batch.
    max_bytes, max_records
        A batch is appended as soon as the next request would not fit (the engine's
        append limits by default); a request larger than that is appended alone.
    """

    def __init__(
        self,
        append: AppendFn,
        linger_ms: float = DEFAULT_LINGER_MS,
        max_bytes: int = MAX_APPEND_BYTES,
        max_records: int = MAX_APPEND_RECORDS,
    ) -> None:
        self._append = append
        self.linger_ms = linger_ms
        self.max_bytes = max_bytes
        self.max_records = max_records
        self._open: dict[str, _Batch] = {}
        self._last: dict[str, asyncio.Future[None]] = {}
        self._flushers: set[asyncio.Task[None]] = set()
        self.appends = 0
        """Appends made (for metrics and tests)."""

    async def append(self, topic: str, records: Sequence[Record]) -> list[RecordMetadata]:
        """Append ``records`` to ``topic`` with whatever else arrives within the linger;
        where they landed, in order. Raises what the append raised."""
        return await self.submit(topic, records)

    def submit(self, topic: str, records: Sequence[Record]) -> asyncio.Future[list[RecordMetadata]]:
        """Add ``records`` to ``topic``'s open batch now (a caller that must keep its
        requests in order submits them in that order) and return where they will land."""
        if not records:
            raise InvalidRequestError("an append needs at least one record")
        size = sum(record_size(r.key, r.value, r.headers) for r in records)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[list[RecordMetadata]] = loop.create_future()
        pending = _Pending(records, size, answer)
        batch = self._open.get(topic)
        if batch is not None and not self._fits(batch, pending):
            batch.full.set()  # its flusher takes it now; this request starts the next
            batch = None
        if batch is None:
            batch = _Batch(after=self._last.get(topic), done=loop.create_future())
            self._open[topic] = batch
            self._last[topic] = batch.done
            task = loop.create_task(self._flush_later(topic, batch))
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        batch.pending.append(pending)
        batch.size += size
        batch.count += len(records)
        if batch.size >= self.max_bytes or batch.count >= self.max_records:
            batch.full.set()
        return answer

    def _fits(self, batch: _Batch, pending: _Pending) -> bool:
        return (
            batch.size + pending.size <= self.max_bytes
            and batch.count + len(pending.records) <= self.max_records
        )

    async def _flush_later(self, topic: str, batch: _Batch) -> None:
        if self.linger_ms > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(batch.full.wait(), self.linger_ms / 1000)
        else:
            await asyncio.sleep(0)  # requests already queued on the loop may still join
        if self._open.get(topic) is batch:
            del self._open[topic]
        try:
            if batch.after is not None:  # a topic's batches are appended in opening order
                await batch.after
            await self._flush(topic, batch.pending)
        finally:
            batch.done.set_result(None)
            if self._last.get(topic) is batch.done:
                del self._last[topic]

    async def _flush(self, topic: str, pending: list[_Pending]) -> None:
        records = [record for p in pending for record in p.records]
        try:
            self.appends += 1
            landed = await self._append(topic, records)
        except InvalidRequestError as error:
            if len(pending) == 1:
                _fail(pending, error)
                return
            for one in pending:  # find who caused it: each request alone
                await self._flush(topic, [one])
            return
        except Exception as error:
            _fail(pending, error)
            return
        start = 0
        for p in pending:
            if not p.answer.done():
                p.answer.set_result(landed[start : start + len(p.records)])
            start += len(p.records)


def _fail(pending: Sequence[_Pending], error: BaseException) -> None:
    for p in pending:
        if not p.answer.done():
            p.answer.set_exception(error)

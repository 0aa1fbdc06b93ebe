"""Wakes the gateway's waiting fetches when this process commits an append (ADR 0016 §4).

The gateway watches its engine's appends (`Appender.watch`): an append made through any
connection of this process (Kafka Produce, or anything else on the same engine) resolves
the futures fetches wait on, so a long-polling consumer sees it at once. Appends made by
other processes (other gateways, the HTTP API in Lambda) are found by the fetch's bounded
poll instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["AppendSignal"]


class AppendSignal:
    """Futures resolved at this process's next committed append, of any topic.

    `next` is called on the event loop *before* a fetch reads, and awaited after it found
    too little: an append committed meanwhile has already resolved it, so no wake-up is
    lost between the read and the wait.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: asyncio.Future[None] | None = None
        self._unwatch: Callable[[], None] | None = None
        self.stopped = False
        """The gateway is stopping: waiting fetches answer with what they have."""

    def start(self, watch: Callable[[Callable[[str], None]], Callable[[], None]]) -> None:
        """Listen on the running loop to the appends ``watch`` reports (`Appender.watch`)."""
        self._loop = asyncio.get_running_loop()
        self._unwatch = watch(self.appended)

    def stop(self) -> None:
        """Stop listening, and wake every waiting fetch (on the event loop)."""
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        self.stopped = True
        self._wake()

    def next(self) -> asyncio.Future[None]:
        """A future resolved at the next append (shared by every fetch waiting for it)."""
        if self._waiting is None or self._waiting.done():
            self._waiting = asyncio.get_running_loop().create_future()
        return self._waiting

    def appended(self, topic_id: str) -> None:
        """An append committed (called on the appending thread: returns at once)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

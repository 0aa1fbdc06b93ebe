"""The trigger dispatcher of the local dev server, driven by appends in-process.

Lambda's dispatcher is started by the ledger's DynamoDB stream, which the emulated
DynamoDB of ``lakelog dev`` does not drive; here the engine's append hook
(`lakelog.service.produce.AppendHook`) queues each appended topic with `LocalDispatcher.notify`
and a background thread hands the queued topics to the same dispatcher's ``on_appended``,
so an append never waits for a subscribed function. The thread also runs ``resume_due``
every ``resume_every`` seconds, as a deployment's schedule does every minute (ADR 0015 §4).
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Final, TextIO

from lakelog.dispatcher_handler import DispatcherCalls

__all__ = ["DEFAULT_RESUME_EVERY", "LocalDispatcher"]

DEFAULT_RESUME_EVERY: Final = 1.0
"""Seconds between two ``resume_due`` calls of the dev server."""


class LocalDispatcher:
    """Runs ``on_appended`` for queued topics and ``resume_due`` on a schedule, one call at
    a time, in a background thread (or in the caller's, with `run_once`).

    Parameters
    ----------
    make_dispatcher
        Builds the dispatcher on the first run; None when this build has none (then
        nothing is delivered and queued topics are dropped).
    resume_every
        Seconds between ``resume_due`` calls.
    log
        Where failures are reported (they never stop the worker).
    clock
        Seconds of a monotonic clock, for ``resume_every``.
    """

    def __init__(
        self,
        make_dispatcher: Callable[[], DispatcherCalls | None],
        resume_every: float = DEFAULT_RESUME_EVERY,
        log: TextIO | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._make = make_dispatcher
        self._made = False
        self._dispatcher: DispatcherCalls | None = None
        self.resume_every = resume_every
        self._log = log
        self._clock = clock
        self._next_resume = clock()
        self._pending: dict[str, None] = {}
        self._retry: dict[str, None] = {}
        self._busy = False
        self._stopping = False
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def notify(self, topic_id: str) -> None:
        """Queue ``topic_id`` for ``on_appended`` (the engine's append hook: never blocks)."""
        with self._changed:
            self._pending[topic_id] = None
            self._changed.notify_all()

    def run_once(self) -> None:
        """Hand the queued topics to ``on_appended``, then call ``resume_due`` if it is due.

        Topics whose ``on_appended`` raised are queued again at the next ``resume_due``."""
        with self._changed:
            topics = list(self._pending)
            self._pending.clear()
            self._busy = True
        try:
            dispatcher = self._get()
            if dispatcher is not None and topics:
                self._call(lambda: dispatcher.on_appended(topics), "on_appended", topics)
            now = self._clock()
            if now >= self._next_resume:
                self._next_resume = now + self.resume_every
                with self._changed:
                    retry = list(self._retry)
                    self._retry.clear()
                if dispatcher is not None and retry:
                    self._call(lambda: dispatcher.on_appended(retry), "on_appended", retry)
                if dispatcher is not None:
                    self._call(dispatcher.resume_due, "resume_due", [])
        finally:
            with self._changed:
                self._busy = False
                self._changed.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no topic is queued and no call runs; False if ``timeout`` passed."""
        with self._changed:
            return self._changed.wait_for(
                lambda: not self._pending and not self._busy, timeout=timeout
            )

    def start(self) -> None:
        """Start the background worker."""
        if self._thread is not None:
            return
        with self._changed:
            self._stopping = False
        self._thread = threading.Thread(
            target=self._loop, name="lakelog-dev-dispatcher", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker after the call it is running (waited for up to ``timeout`` s)."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._changed:
                if not self._pending and not self._stopping:
                    self._changed.wait(max(0.0, self._next_resume - self._clock()))
                if self._stopping:
                    return
            self.run_once()

    def _get(self) -> DispatcherCalls | None:
        if not self._made:
            self._made = True
            try:
                self._dispatcher = self._make()
            except Exception:
                self._report("building the dispatcher failed; subscriptions are not delivered")
        return self._dispatcher

    def _call(self, call: Callable[[], object], name: str, topics: list[str]) -> None:
        try:
            call()
        except Exception:
            if topics:
                with self._changed:
                    self._retry.update(dict.fromkeys(topics))
            self._report(f"{name} failed")

    def _report(self, what: str) -> None:
        out = self._log or sys.stderr
        print(f"lakelog dev: the trigger dispatcher's {what}:", file=out)
        traceback.print_exc(file=out)

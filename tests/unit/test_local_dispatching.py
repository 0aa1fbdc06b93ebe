"""``lakelog dev``'s dispatcher: the engine's append hook, the worker that hands appended
topics to ``on_appended`` off the append path, and ``resume_due`` every second."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from lakelog import Engine, Record
from lakelog.errors import TopicNotFoundError, UnavailableError
from lakelog.local.dispatching import LocalDispatcher

WAIT = 60.0
"""Seconds a test waits for another thread's event before failing (never slept): a backstop
only a hang reaches (a loaded machine may stall a thread for seconds)."""


class Recording:
    """A dispatcher that records its calls; ``on_appended`` may wait on ``gate``."""

    def __init__(self, gate: threading.Event | None = None, failures: int = 0) -> None:
        self.appended: list[list[str]] = []
        self.resumed = 0
        self.entered = threading.Event()
        self._gate = gate
        self._failures = failures

    def on_appended(self, topic_ids: Sequence[str]) -> object:
        self.appended.append(list(topic_ids))
        self.entered.set()
        if self._gate is not None:
            assert self._gate.wait(WAIT)
        if self._failures:
            self._failures -= 1
            raise UnavailableError("throttled")
        return None

    def resume_due(self) -> object:
        self.resumed += 1
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_appends_call_the_hook_with_the_topic_id_after_commit(
    make_engine: Callable[..., Engine],
) -> None:
    seen: list[tuple[str, int]] = []
    engine: Engine

    def hook(topic_id: str) -> None:
        # the item is committed when the hook hears of it: a fetch already sees it
        seen.append((topic_id, len(engine.fetch("orders", 0, 0).records)))

    engine = make_engine(on_append=hook)
    engine.create_topic("orders", partitions=1)
    engine.append("orders", [Record(value=b"a")])
    engine.append("orders", [Record(value=b"b"), Record(value=b"c")])
    topic_id = engine.describe_topic("orders").topic_id
    assert seen == [(topic_id, 1), (topic_id, 3)]


def test_a_failed_append_tells_the_hook_nothing(make_engine: Callable[..., Engine]) -> None:
    seen: list[str] = []
    engine = make_engine(on_append=seen.append)
    with pytest.raises(TopicNotFoundError):
        engine.append("missing", [Record(value=b"a")])
    engine.create_topic("orders", partitions=1)
    assert seen == []


def test_a_failing_hook_never_fails_the_committed_append(
    make_engine: Callable[..., Engine], caplog: pytest.LogCaptureFixture
) -> None:
    def hook(topic_id: str) -> None:
        raise RuntimeError("queue full")

    engine = make_engine(on_append=hook)
    engine.create_topic("orders", partitions=1)
    [written] = engine.append("orders", [Record(value=b"a")])
    assert written.offset == 0
    assert "the append hook failed" in caplog.text


def test_queued_topics_are_handed_over_once_each_in_order() -> None:
    dispatcher = Recording()
    clock = Clock()
    local = LocalDispatcher(lambda: dispatcher, clock=clock)
    for topic in ("a", "b", "a", "c"):
        local.notify(topic)
    local.run_once()
    assert dispatcher.appended == [["a", "b", "c"]]
    local.run_once()  # nothing new queued
    assert dispatcher.appended == [["a", "b", "c"]]


def test_resume_due_runs_every_resume_interval() -> None:
    dispatcher = Recording()
    clock = Clock()
    local = LocalDispatcher(lambda: dispatcher, resume_every=1.0, clock=clock)
    local.run_once()  # due at start
    clock.now += 0.5
    local.run_once()
    assert dispatcher.resumed == 1
    clock.now += 0.5
    local.run_once()
    assert dispatcher.resumed == 2


def test_topics_whose_notification_failed_are_handed_over_again_at_the_next_resume() -> None:
    dispatcher = Recording(failures=1)
    clock = Clock()
    log = io.StringIO()
    local = LocalDispatcher(lambda: dispatcher, resume_every=1.0, log=log, clock=clock)
    local.run_once()  # the first resume
    local.notify("a")
    local.run_once()  # fails: a waits for the next resume
    assert "on_appended failed" in log.getvalue()
    assert dispatcher.appended == [["a"]]
    clock.now += 1.0
    local.run_once()
    assert dispatcher.appended == [["a"], ["a"]]
    assert dispatcher.resumed == 2


def test_without_a_dispatcher_queued_topics_are_dropped_and_the_factory_runs_once() -> None:
    made: list[int] = []

    def make() -> Any:
        made.append(1)
        return None

    local = LocalDispatcher(make)
    local.notify("a")
    local.run_once()
    local.run_once()
    assert made == [1]
    assert local.wait_idle(0)


def test_a_factory_that_fails_is_reported_and_delivers_nothing() -> None:
    def make() -> Any:
        raise ValueError("no tables")

    log = io.StringIO()
    local = LocalDispatcher(make, log=log)
    local.notify("a")
    local.run_once()
    assert "building the dispatcher failed" in log.getvalue()


def test_appends_never_wait_for_the_worker_and_reach_on_appended(
    make_engine: Callable[..., Engine],
) -> None:
    # Given the worker running, with a dispatcher stuck in a slow function
    gate = threading.Event()
    dispatcher = Recording(gate=gate)
    local = LocalDispatcher(lambda: dispatcher, resume_every=3600.0)
    engine = make_engine(on_append=local.notify)
    engine.create_topic("orders", partitions=1)
    topic_id = engine.describe_topic("orders").topic_id
    local.start()
    try:
        engine.append("orders", [Record(value=b"a")])
        assert dispatcher.entered.wait(WAIT)

        # When more appends arrive while on_appended is still running
        engine.append("orders", [Record(value=b"b")])
        engine.append("orders", [Record(value=b"c")])

        # Then they returned at once, and are handed over together once it returns
        assert dispatcher.appended == [[topic_id]]
        gate.set()
        assert local.wait_idle(WAIT)
        assert dispatcher.appended == [[topic_id], [topic_id]]
    finally:
        gate.set()
        local.stop()

"""`Appender.watch`: callers in the process hear of each committed append, beside the
engine's own append hook, until they stop watching."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lakelog.errors import TopicNotFoundError
from lakelog.service.engine import Engine
from lakelog.types import Record


def test_watchers_hear_of_each_committed_append_after_the_hook(
    make_engine: Callable[..., Engine],
) -> None:
    heard: list[tuple[str, str]] = []
    engine = make_engine(on_append=lambda topic_id: heard.append(("hook", topic_id)))
    engine.appender.watch(lambda topic_id: heard.append(("first", topic_id)))
    engine.appender.watch(lambda topic_id: heard.append(("second", topic_id)))
    engine.create_topic("orders", partitions=1)

    engine.append("orders", [Record(value=b"a")])

    topic_id = engine.describe_topic("orders").topic_id
    assert heard == [("hook", topic_id), ("first", topic_id), ("second", topic_id)]


def test_a_watcher_that_stopped_watching_hears_nothing(engine: Engine) -> None:
    heard: list[str] = []
    unwatch = engine.appender.watch(heard.append)
    engine.create_topic("orders", partitions=1)
    engine.append("orders", [Record(value=b"a")])

    unwatch()
    engine.append("orders", [Record(value=b"b")])
    unwatch()  # twice is harmless

    assert len(heard) == 1


def test_failed_appends_tell_watchers_nothing(engine: Engine) -> None:
    heard: list[str] = []
    engine.appender.watch(heard.append)
    with pytest.raises(TopicNotFoundError):
        engine.append("missing", [Record(value=b"a")])
    assert heard == []


def test_a_failing_watcher_neither_fails_the_append_nor_silences_the_others(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    heard: list[str] = []

    def failing(topic_id: str) -> None:
        raise RuntimeError("closed")

    engine.appender.watch(failing)
    engine.appender.watch(heard.append)
    engine.create_topic("orders", partitions=1)

    [written] = engine.append("orders", [Record(value=b"a")])

    assert written.offset == 0
    assert len(heard) == 1
    assert "the append hook failed" in caplog.text

"""A consumer holds no lock while it waits on the service.

A `Gate` stops one operation of the transport until the test opens it, so the test knows
a request is out. Meanwhile other threads use the consumer: each must get its answer
without waiting for the request. Timeouts only bound how long a failure takes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal, TypeVar

import pytest

from lakelog import Engine, TopicPartition
from lakelog.client import Client, Consumer
from lakelog.contract.operations import Operation
from lakelog.types import Record
from tests.integration.group_support import Clock
from tests.integration.sdk.conftest import operation_name

WAIT_S = 60.0
"""How long a test waits for something that happens at once when the code is right: a
backstop only a hang reaches (a loaded machine may stall a thread for seconds)."""

TP = TopicPartition("gated", 0)
R = TypeVar("R")


class Gate:
    """A transport in front of another; the calls of ``held`` wait until ``opened`` is set.

    ``entered`` is set when a held call arrives (the request is out); ``calls`` counts the
    calls of each operation, and ``called[name]`` is set at each call of ``name``.
    """

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.held: str | None = None
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.called: dict[str, threading.Event] = {}

    def call(self, op: Operation[R]) -> R:
        name = operation_name(op)
        self.called.setdefault(name, threading.Event()).set()
        if name == self.held and not self.opened.is_set():
            self.entered.set()
            assert self.opened.wait(WAIT_S), f"{name} was never let through"
        return self.inner.call(op)

    @property
    def max_request_bytes(self) -> int:
        return self.inner.max_request_bytes

    def request_bytes(self, record: Record) -> int:
        return self.inner.request_bytes(record)

    def compressed(self, compression: Literal["gzip"] | None) -> Gate:
        return self

    def close(self) -> None:
        self.inner.close()

    def call_of(self, name: str) -> threading.Event:
        """An event set at the next call of ``name`` (from now on)."""
        event = self.called[name] = threading.Event()
        return event


@pytest.fixture
def threads() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        yield pool


@pytest.fixture
def gated(make_engine: Callable[..., Engine], clock: Clock) -> Iterator[tuple[Client, Gate]]:
    """A client whose transport is a `Gate`; topic ``gated`` holds records 0, 1 and 2.

    Its engine keeps time on ``clock``, which `_member` gives its consumer too."""
    engine = make_engine(clock_ms=clock)
    engine.create_topic("gated")
    gate = Gate(engine)
    client = Client(transport=gate)
    with client.producer(linger_ms=0) as producer:
        for i in range(3):
            producer.send("gated", value=b"%d" % i, partition=0)
    yield client, gate
    gate.opened.set()  # a failed test must not leave a thread waiting at the gate


def _answer(threads: ThreadPoolExecutor, work: Callable[[], Any]) -> Any:
    """What ``work`` returns, run on another thread; fails if it waits for the gate."""
    future: Future[Any] = threads.submit(work)
    return future.result(timeout=WAIT_S)


def test_position_seek_and_assignment_answer_while_a_fetch_is_out(
    gated: tuple[Client, Gate], threads: ThreadPoolExecutor
) -> None:
    client, gate = gated
    consumer = client.consumer(auto_offset_reset="earliest")
    consumer.assign([TP])
    gate.held = "fetch_many"
    polled = threads.submit(consumer.poll, timeout_ms=WAIT_S * 1000)
    assert gate.entered.wait(WAIT_S)

    # While the fetch from offset 0 waits on the service
    assert _answer(threads, consumer.assignment) == {TP}
    assert _answer(threads, lambda: consumer.position(TP)) == 0
    _answer(threads, lambda: consumer.seek(TP, 1))
    assert _answer(threads, lambda: consumer.position(TP)) == 1

    gate.opened.set()
    # The records fetched from 0 belong to the reading before the seek: they are dropped
    assert [r.offset for r in polled.result(timeout=WAIT_S)[TP]] == [1, 2]
    assert consumer.position(TP) == 3
    consumer.close()


SESSION_MS = 1500
HEARTBEAT_MS = SESSION_MS // 3


def _member(client: Client, clock: Clock) -> Consumer:
    consumer = client.consumer(
        "gated",
        group_id="g",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=SESSION_MS,  # a heartbeat every 500 ms of ``clock``
        fetch_max_wait_ms=0,  # every poll fetches: no pause after reading to the end
        _clock=clock,
    )
    assert [r.offset for r in consumer.poll(timeout_ms=WAIT_S * 1000)[TP]] == [0, 1, 2]
    return consumer


def test_the_heartbeat_thread_runs_while_a_fetch_is_out(
    gated: tuple[Client, Gate], threads: ThreadPoolExecutor, clock: Clock
) -> None:
    client, gate = gated
    consumer = _member(client, clock)
    gate.held = "fetch_many"
    polled = threads.submit(consumer.poll, timeout_ms=0)
    assert gate.entered.wait(WAIT_S)

    # The heartbeat falls due while the fetch waits: the background thread sends it
    heartbeat = gate.call_of("join_group")
    clock.advance(HEARTBEAT_MS)
    assert heartbeat.wait(WAIT_S)

    gate.opened.set()
    assert polled.result(timeout=WAIT_S) == {}
    consumer.close()


def test_the_consumer_answers_while_a_heartbeat_is_out_and_close_waits_for_it(
    gated: tuple[Client, Gate], threads: ThreadPoolExecutor, clock: Clock
) -> None:
    client, gate = gated
    consumer = _member(client, clock)
    gate.held = "join_group"
    clock.advance(HEARTBEAT_MS)  # a heartbeat falls due
    assert gate.entered.wait(WAIT_S)  # the background heartbeat waits on the service

    assert _answer(threads, consumer.assignment) == {TP}
    assert _answer(threads, lambda: consumer.position(TP)) == 3
    _answer(threads, lambda: consumer.seek(TP, 2))
    polled = _answer(threads, lambda: consumer.poll(timeout_ms=0))  # skips its heartbeat
    assert [r.offset for r in polled[TP]] == [2]

    closed = threads.submit(consumer.close)  # leaves only after the heartbeat answered
    gate.opened.set()
    closed.result(timeout=WAIT_S)
    assert client.describe_group("g").members == ()  # the heartbeat did not join it again

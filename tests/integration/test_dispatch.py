"""The dispatcher's delivery protocol (ADR 0015 §2) and the invariants it must keep.

Time is a fake clock shared by engine and dispatchers; functions are scripted; races use
events and threads, never sleeps. Faults are injected at the group store's commit.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import pytest

from lakelog import Engine, ResetTarget, ResourceNames, ToOffset, TopicNotFoundError, ToTimestamp
from lakelog.service.dispatch import (
    DEFAULT_SESSION_MS,
    INLINE_WINDOW_MS,
    MAX_EVENT_BYTES,
    Dispatcher,
    backoff_ms,
)
from lakelog.service.groups import GroupView
from lakelog.service.invoke import InvokeOutcome
from lakelog.service.subscriptions import delivery_state_text
from lakelog.storage.delivery import (
    DeliveryState,
    DynamoDeliveryStateStore,
    MemoryDeliveryStateStore,
    RunGuard,
)
from lakelog.storage.faults import FailPoint, InjectedFaultError
from lakelog.storage.memory import MemoryStorage
from lakelog.types import OnFailure, Subscription
from tests.conftest import MakeFaulty, new_client
from tests.integration.dispatch_support import Functions, Harness, records_of, values_of
from tests.integration.group_support import START_MS, Clock

WAIT_S = 60.0
"""Longest a thread waits for another's progress: a backstop only a hang reaches, never what
a test waits for (a loaded machine may stall a thread for seconds)."""


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def eng(make_engine: Callable[..., Engine], clock: Clock) -> Iterator[Engine]:
    engine = make_engine(clock_ms=clock, sleep=lambda _s: None)
    yield engine
    engine.close()


def subscription(topic: str, **options: Any) -> Subscription:
    return Subscription(
        name="s1",
        topic=topic,
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
        **{"max_batching_window_ms": 0, **options},
    )


def fails_on(bad: bytes, error: str = "Unhandled: poison") -> Callable[..., InvokeOutcome]:
    """A function that fails every batch holding a record of value ``bad``."""

    def behaviour(event: Mapping[str, Any]) -> InvokeOutcome:
        return InvokeOutcome(error=error) if bad in values_of(event) else InvokeOutcome()

    return behaviour


def test_each_partition_arrives_in_order_across_many_batches(eng: Engine) -> None:
    eng.create_topic("orders", 3)
    sub = subscription("orders", batch_size=7)
    h = Harness(eng, sub)
    dispatcher = h.dispatcher()
    for round_ in range(5):
        for partition in range(3):
            h.append("orders", partition, *[f"{round_}-{i}".encode() for i in range(10)])
        report = dispatcher.on_appended([h.topic_id("orders")])
        assert report.records_delivered == 30
    for partition in range(3):
        assert h.functions.offsets(f"orders-{partition}") == list(range(50))
        assert all(len(b) <= 7 for b in h.functions.batches(f"orders-{partition}"))
        assert h.committed(sub, partition) == 50
    assert h.states.due(10**15) == []  # caught up: no state left


def test_a_short_batch_waits_for_its_window_and_a_full_one_does_not(
    eng: Engine, clock: Clock
) -> None:
    # A window longer than the dispatcher waits for itself is left to the schedule
    eng.create_topic("orders")
    sub = subscription("orders", batch_size=10, max_batching_window_ms=INLINE_WINDOW_MS + 1)
    h = Harness(eng, sub)
    dispatcher = h.dispatcher(sleep=pytest.fail)
    h.append("orders", 0, b"a", b"b", b"c")
    assert dispatcher.on_appended([h.topic_id("orders")]).invocations == 0
    clock.advance(INLINE_WINDOW_MS)
    assert dispatcher.resume_due().invocations == 0
    clock.advance(1)
    report = dispatcher.resume_due()
    assert (report.invocations, report.records_delivered) == (1, 3)
    h.append("orders", 0, *[bytes([i]) for i in range(10)])  # a full batch: no wait
    assert dispatcher.on_appended([h.topic_id("orders")]).records_delivered == 10
    assert h.functions.batches("orders-0") == [[0, 1, 2], list(range(3, 13))]


@pytest.mark.parametrize("window_ms", [500, INLINE_WINDOW_MS])
def test_a_short_window_is_waited_for_in_the_delivery_then_the_batch_goes_out(
    eng: Engine, clock: Clock, window_ms: int
) -> None:
    # Given a subscription whose window ends within the bound the dispatcher waits itself
    eng.create_topic("orders")
    sub = subscription("orders", batch_size=10, max_batching_window_ms=window_ms)
    h = Harness(eng, sub)
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # a record arrives while the window runs
        slept.append(seconds)
        h.append("orders", 0, b"d")
        clock.advance(round(seconds * 1000))

    dispatcher = h.dispatcher(sleep=sleep)
    h.append("orders", 0, b"a", b"b", b"c")

    # When the append's trigger runs
    report = dispatcher.on_appended([h.topic_id("orders")])

    # Then it waited out the window once and delivered one batch with what it gathered,
    # leaving nothing for the schedule
    assert slept == [window_ms / 1000]
    assert (report.invocations, report.records_delivered) == (1, 4)
    assert h.functions.batches("orders-0") == [[0, 1, 2, 3]]
    assert h.committed(sub, 0) == 4
    assert h.states.due(10**15) == []


def test_a_batch_is_cut_before_the_event_exceeds_lambdas_payload_limit(eng: Engine) -> None:
    eng.create_topic("orders")
    sub = subscription("orders", batch_size=100)
    h = Harness(eng, sub)
    for _ in range(4):
        h.append("orders", 0, b"x" * (1 << 20))  # 1 MiB each, 1.33 MiB once base64
    h.append("orders", 0, b"x" * (1 << 20), b"x" * (1 << 20))
    h.dispatcher().on_appended([h.topic_id("orders")])
    batches = h.functions.batches("orders-0")
    assert [o for b in batches for o in b] == list(range(6))
    assert len(batches) == 2
    assert all(len(json.dumps(e).encode()) <= MAX_EVENT_BYTES for _, e in h.functions.calls)


def _dlq_records(eng: Engine, topic: str) -> list[dict[str, Any]]:
    return [json.loads(r.value or b"") for r in eng.fetch(topic, 0, 0).records]


def test_retries_back_off_then_the_batch_goes_to_a_topic_and_later_records_arrive(
    eng: Engine, clock: Clock
) -> None:
    eng.create_topic("orders")
    eng.create_topic("orders-dlq")
    sub = subscription(
        "orders",
        batch_size=2,
        maximum_retry_attempts=2,
        on_failure=OnFailure(topic="orders-dlq"),
    )
    h = Harness(eng, sub, functions=Functions(fails_on(b"bad")))
    dispatcher = h.dispatcher()
    h.append("orders", 0, b"bad", b"in the same batch")
    report = dispatcher.on_appended([h.topic_id("orders")])
    assert (report.invocations, report.failures) == (1, 1)
    h.append("orders", 0, b"later")
    assert dispatcher.on_appended([h.topic_id("orders")]).invocations == 0  # backoff stands
    clock.advance(backoff_ms(1) - 1)
    assert dispatcher.resume_due().invocations == 0
    clock.advance(1)
    assert dispatcher.resume_due().invocations == 1
    clock.advance(backoff_ms(2))
    report = dispatcher.resume_due()  # 3rd failure: to the dlq, then the later record
    assert (report.invocations, report.records_failed, report.records_delivered) == (2, 2, 1)
    assert h.functions.batches("orders-0") == [[0, 1], [0, 1], [0, 1], [2]]
    (failed,) = _dlq_records(eng, "orders-dlq")
    assert failed["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failed["requestContext"]["approximateInvokeCount"] == 3
    assert failed["responseContext"]["functionError"] == "Unhandled: poison"
    assert failed["KafkaBatchInfo"]["firstOffset"] == 0
    assert failed["KafkaBatchInfo"]["lastOffset"] == 1
    assert failed["subscription"]["name"] == "s1"
    assert [r["offset"] for r in records_of(failed["payload"])] == [0, 1]
    assert h.committed(sub, 0) == 3
    assert h.states.due(10**15) == []


THROTTLED = InvokeOutcome(error="TooManyRequestsException: Rate exceeded", throttled=True)


def throttled_for(calls: int) -> Callable[..., InvokeOutcome]:
    """A function whose first ``calls`` invocations are throttled (it never runs)."""
    seen: list[None] = []

    def behaviour(_event: Mapping[str, Any]) -> InvokeOutcome:
        seen.append(None)
        return THROTTLED if len(seen) <= calls else InvokeOutcome()

    return behaviour


def test_a_throttled_batch_backs_off_without_spending_retry_attempts_or_splitting(
    eng: Engine, clock: Clock
) -> None:
    # Given a subscription with no retries and bisect on, whose function is throttled
    # three times (as Lambda's event source mappings, throttles are no function error)
    eng.create_topic("orders")
    eng.create_topic("orders-dlq")
    sub = subscription(
        "orders",
        batch_size=2,
        maximum_retry_attempts=0,
        bisect_batch_on_function_error=True,
        on_failure=OnFailure(topic="orders-dlq"),
    )
    h = Harness(eng, sub, functions=Functions(throttled_for(3)))
    dispatcher = h.dispatcher()
    h.append("orders", 0, b"a", b"b")

    # When it is delivered, then retried as each backoff ends
    assert dispatcher.on_appended([h.topic_id("orders")]).failures == 1
    state = h.states.get(sub.group, 0)
    assert state is not None
    assert (state.attempts, state.throttles, state.due_ms) == (1, 1, START_MS + backoff_ms(1))
    h.append("orders", 0, b"c")
    assert dispatcher.on_appended([h.topic_id("orders")]).invocations == 0  # backoff stands
    for attempt in (1, 2):
        clock.advance(backoff_ms(attempt))
        assert dispatcher.resume_due().failures == 1
    clock.advance(backoff_ms(3))
    report = dispatcher.resume_due()

    # Then the whole batch went again each time (never split), then on, and none failed
    assert (report.failures, report.records_delivered) == (0, 3)
    assert h.functions.batches("orders-0") == [[0, 1]] * 4 + [[2]]
    assert eng.fetch("orders-dlq", 0, 0).records == []
    assert h.committed(sub, 0) == 3
    assert h.states.due(10**15) == []


def test_a_throttled_batch_goes_to_the_destination_once_older_than_the_record_age(
    eng: Engine, clock: Clock
) -> None:
    # Given a function throttled for good, and a record age limit of a minute
    eng.create_topic("orders")
    eng.create_topic("orders-dlq")
    sub = subscription(
        "orders",
        maximum_record_age_ms=60_000,
        on_failure=OnFailure(topic="orders-dlq"),
    )
    h = Harness(eng, sub, functions=Functions(throttled_for(10**6)))
    dispatcher = h.dispatcher()
    h.append("orders", 0, b"a")
    dispatcher.on_appended([h.topic_id("orders")])

    # When the schedule retries it as each backoff ends, past the record's age
    while h.committed(sub, 0) is None:
        state = h.states.get(sub.group, 0)
        assert state is not None and state.attempts < 10
        clock.advance(state.due_ms - clock())
        dispatcher.resume_due()

    # Then it went to the destination as expired, never invoked
    (failed,) = _dlq_records(eng, "orders-dlq")
    assert failed["requestContext"]["condition"] == "RecordAgeExceeded"
    assert failed["requestContext"]["approximateInvokeCount"] == 0
    assert clock() - START_MS > 60_000
    assert h.committed(sub, 0) == 1


def test_a_failed_batch_goes_to_sqs(
    make_engine: Callable[..., Engine], clock: Clock, aws: None
) -> None:
    eng = make_engine(clock_ms=clock, sleep=lambda _s: None)
    sqs = new_client("sqs")
    url = sqs.create_queue(QueueName="orders-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]

    class SqsSender:
        def send(self, queue_arn: str, body: str) -> None:
            name = queue_arn.rsplit(":", 1)[1]
            sqs.send_message(
                QueueUrl=sqs.get_queue_url(QueueName=name)["QueueUrl"], MessageBody=body
            )

    eng.create_topic("orders")
    sub = subscription("orders", maximum_retry_attempts=0, on_failure=OnFailure(sqs_arn=arn))
    h = Harness(eng, sub, functions=Functions(fails_on(b"bad")))
    h.queues = SqsSender()  # type: ignore[assignment]
    dispatcher = h.dispatcher()
    h.append("orders", 0, b"bad")
    report = dispatcher.on_appended([h.topic_id("orders")])
    assert (report.invocations, report.records_failed) == (1, 1)
    h.append("orders", 0, b"fine")
    assert dispatcher.on_appended([h.topic_id("orders")]).records_delivered == 1
    (message,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    body = json.loads(message["Body"])
    assert body["KafkaBatchInfo"]["topic"] == "orders"
    assert values_of(body["payload"]) == [b"bad"]
    eng.close()


def test_a_failure_record_keeps_only_the_records_that_fit_its_destination(eng: Engine) -> None:
    eng.create_topic("orders")
    sub = subscription("orders", maximum_retry_attempts=0, on_failure=OnFailure(sqs_arn="arn:q"))
    h = Harness(eng, sub, functions=Functions(fails_on(b"x" * 100_000)))
    h.append("orders", 0, *[b"x" * 100_000] * 3)  # 3 x 133 KB once base64 > 256 KiB
    h.dispatcher().on_appended([h.topic_id("orders")])
    ((_, body),) = h.queues.sent
    assert len(body.encode()) <= 256 * 1024
    failed = json.loads(body)
    assert [r["offset"] for r in records_of(failed["payload"])] == [0]
    assert failed["payloadOmitted"] == 2
    assert failed["KafkaBatchInfo"]["batchSize"] == 3


def test_without_a_destination_a_spent_batch_is_skipped_with_a_log_line(
    eng: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    eng.create_topic("orders")
    sub = subscription("orders", maximum_retry_attempts=0)
    h = Harness(eng, sub, functions=Functions(fails_on(b"bad")))
    h.append("orders", 0, b"bad")
    with caplog.at_level("WARNING"):
        report = h.dispatcher().on_appended([h.topic_id("orders")])
    assert report.records_failed == 1
    assert "no on-failure destination" in caplog.text
    assert h.committed(sub, 0) == 1


def test_bisect_isolates_the_one_poison_record(eng: Engine) -> None:
    eng.create_topic("orders")
    eng.create_topic("orders-dlq")
    sub = subscription(
        "orders",
        batch_size=8,
        bisect_batch_on_function_error=True,
        maximum_retry_attempts=0,
        on_failure=OnFailure(topic="orders-dlq"),
    )
    h = Harness(eng, sub, functions=Functions(fails_on(b"5")))
    h.append("orders", 0, *[str(i).encode() for i in range(8)])
    h.dispatcher().on_appended([h.topic_id("orders")])
    (failed,) = _dlq_records(eng, "orders-dlq")
    assert [r["offset"] for r in records_of(failed["payload"])] == [5]
    acknowledged = [o for b in h.functions.batches("orders-0") if 5 not in b for o in b]
    assert acknowledged == [0, 1, 2, 3, 4, 6, 7]  # each once, in order
    assert h.committed(sub, 0) == 8
    h.append("orders", 0, *[str(i).encode() for i in range(10, 18)])
    h.dispatcher().on_appended([h.topic_id("orders")])
    assert h.functions.batches("orders-0")[-1] == list(range(8, 16))  # sizes back to normal


def test_partial_failures_resume_at_the_first_failed_offset(eng: Engine, clock: Clock) -> None:
    eng.create_topic("orders")
    sub = subscription("orders", batch_size=10, report_batch_item_failures=True)
    replies = iter(
        [
            {
                "batchItemFailures": [
                    {"itemIdentifier": {"partition": "orders-0", "offset": 6}},
                    {"itemIdentifier": {"partition": "orders-0", "offset": 3}},
                ]
            },
            {"batchItemFailures": [{"itemIdentifier": {"partition": "orders-0", "offset": 99}}]},
            {"batchItemFailures": []},
        ]
    )
    h = Harness(eng, sub, functions=Functions(lambda _e: InvokeOutcome(payload=next(replies))))
    dispatcher = h.dispatcher()
    h.append("orders", 0, *[bytes([i]) for i in range(10)])
    report = dispatcher.on_appended([h.topic_id("orders")])
    assert (report.records_delivered, report.failures) == (3, 1)
    assert h.committed(sub, 0) == 3
    clock.advance(backoff_ms(1))
    report = dispatcher.resume_due()  # an offset not in the batch: the whole batch failed
    assert (report.records_delivered, report.failures) == (0, 1)
    clock.advance(backoff_ms(2))
    assert dispatcher.resume_due().records_delivered == 7
    assert h.functions.batches("orders-0") == [list(range(10)), *[list(range(3, 10))] * 2]
    assert h.committed(sub, 0) == 10


def test_records_older_than_the_age_limit_go_to_the_destination(eng: Engine, clock: Clock) -> None:
    eng.create_topic("orders")
    eng.create_topic("orders-dlq")
    sub = subscription(
        "orders", maximum_record_age_ms=60_000, on_failure=OnFailure(topic="orders-dlq")
    )
    h = Harness(eng, sub, functions=Functions(lambda _e: InvokeOutcome(error="Timeout")))
    dispatcher = h.dispatcher()
    h.append("orders", 0, b"a")
    dispatcher.on_appended([h.topic_id("orders")])
    for _ in range(3):  # retried with the longest backoff until the record is too old
        clock.advance(backoff_ms(99))
        if dispatcher.resume_due().records_failed:
            break
    (failed,) = _dlq_records(eng, "orders-dlq")
    assert failed["requestContext"]["condition"] == "RecordAgeExceeded"
    assert 60_000 < clock.now_ms - failed["KafkaBatchInfo"]["firstRecordTimestamp"] <= 120_000
    assert h.committed(sub, 0) == 1


def test_two_dispatchers_never_deliver_one_partition_at_once(eng: Engine) -> None:
    eng.create_topic("orders")
    sub = subscription("orders", batch_size=2)
    entered, release = threading.Event(), threading.Event()

    def slow_first(event: Mapping[str, Any]) -> InvokeOutcome:
        if records_of(event)[0]["offset"] == 0:
            entered.set()
            assert release.wait(WAIT_S)
        return InvokeOutcome()

    h = Harness(eng, sub, functions=Functions(slow_first))
    first, second = h.dispatcher(), h.dispatcher()
    h.append("orders", 0, b"0", b"1")
    thread = threading.Thread(target=first.on_appended, args=([h.topic_id("orders")],))
    thread.start()
    assert entered.wait(WAIT_S)
    h.append("orders", 0, b"2", b"3")
    assert second.on_appended([h.topic_id("orders")]).invocations == 0  # lease held: woken
    release.set()
    thread.join(WAIT_S)
    assert not thread.is_alive()  # its delivery ended: the woken state is the rest
    second.resume_due()
    assert h.functions.offsets("orders-0") == [0, 1, 2, 3]  # each once, in order
    assert h.functions.max_in_flight["orders-0"] == 1
    assert h.committed(sub, 0) == 4
    assert h.states.due(10**15) == []


def test_a_delivery_whose_lease_moved_commits_nothing(eng: Engine, clock: Clock) -> None:
    eng.create_topic("orders")
    sub = subscription("orders", batch_size=10)
    h = Harness(eng, sub)
    late = h.dispatcher()
    other = h.dispatcher()

    def outlives_its_session(event: Mapping[str, Any]) -> InvokeOutcome:
        if len(h.functions.calls) == 1:  # the late dispatcher's call
            clock.advance(DEFAULT_SESSION_MS + 1)
            h.append("orders", 0, b"c")
            assert other.on_appended([h.topic_id("orders")]).records_delivered == 3
        return InvokeOutcome()

    h.functions.behaviour = outlives_its_session
    h.append("orders", 0, b"a", b"b")
    report = late.on_appended([h.topic_id("orders")])
    assert report.records_delivered == 2  # the function acknowledged, the commit was fenced
    assert h.committed(sub, 0) == 3  # not moved back by the late commit
    assert h.functions.offsets("orders-0") == [0, 1, 0, 1, 2]  # at least once


def test_a_crash_between_invoke_and_commit_redelivers_the_batch(
    make_faulty: MakeFaulty, clock: Clock
) -> None:
    eng, injector = make_faulty(clock_ms=clock)
    eng.create_topic("orders")
    sub = subscription("orders")
    h = Harness(eng, sub)
    h.append("orders", 0, b"a", b"b")
    injector.arm(FailPoint.BEFORE_COMMIT)
    with pytest.raises(InjectedFaultError):
        h.dispatcher().on_appended([h.topic_id("orders")])
    assert h.committed(sub, 0) is None
    assert h.dispatcher().resume_due().invocations == 0  # the stall guard waits the session
    clock.advance(DEFAULT_SESSION_MS)
    assert h.dispatcher().resume_due().records_delivered == 2
    assert h.functions.offsets("orders-0") == [0, 1, 0, 1]
    assert h.committed(sub, 0) == 2
    eng.close()


class _Reads:
    """Wraps a store and records the first argument of every call (topic id or key)."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.seen: list[str] = []

    def _seen(self, name: str, args: tuple[Any, ...]) -> str:
        return str(args[0]) if args else name

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.seen.append(self._seen(name, args))
            return method(*args, **kwargs)

        return call


class _Calls(_Reads):
    """Wraps a store and records the name of every method called."""

    def _seen(self, name: str, args: tuple[Any, ...]) -> str:
        return name


def test_an_idle_topic_is_never_read(clock: Clock) -> None:
    storage = MemoryStorage(clock)
    objects, ledger, catalog, groups = storage.stores()
    watched_ledger, watched_objects = _Reads(ledger), _Reads(objects)
    eng = Engine(watched_objects, watched_ledger, catalog, groups, clock_ms=clock)
    eng.create_topic("idle")
    eng.create_topic("busy")
    h = Harness(eng, subscription("idle"), subscription("busy"))
    h.append("idle", 0, b"old")  # delivered once, then the topic goes quiet
    h.dispatcher().on_appended([h.topic_id("idle")])
    idle_id = h.topic_id("idle")
    watched_ledger.seen.clear()
    watched_objects.seen.clear()
    dispatcher = h.dispatcher()
    for _ in range(3):
        h.append("busy", 0, b"x")
        assert dispatcher.on_appended([h.topic_id("busy")]).records_delivered == 1
        clock.advance(60_000)
        assert dispatcher.resume_due().invocations == 0
    assert watched_ledger.seen and not any(idle_id in seen for seen in watched_ledger.seen)
    assert not any(idle_id in seen for seen in watched_objects.seen)
    assert h.states.queries == 3  # the schedule: one query each time, nothing else
    eng.close()


def test_records_appended_while_the_holder_finishes_are_delivered_by_it(eng: Engine) -> None:
    eng.create_topic("orders")
    sub = subscription("orders")
    h = Harness(eng, sub)
    holder, latecomer = h.dispatcher(), h.dispatcher()
    get, finish = h.states.get, h.states.finish
    late: list[int] = []

    def after_a_late_append(group: str, partition: int) -> None:
        if h.functions.calls and not late:  # the holder read everything and checks its
            late.append(partition)  # state: records arrive before it finishes
            h.append("orders", 0, b"late")
            assert latecomer.on_appended([h.topic_id("orders")]).invocations == 0

    def get_after_a_late_append(group: str, partition: int) -> DeliveryState | None:
        after_a_late_append(group, partition)
        return get(group, partition)

    def finish_after_a_late_append(group: str, partition: int) -> bool:
        after_a_late_append(group, partition)
        return finish(group, partition)

    h.states.get = get_after_a_late_append  # type: ignore[method-assign]
    h.states.finish = finish_after_a_late_append  # type: ignore[method-assign]
    h.append("orders", 0, b"first")
    report = holder.on_appended([h.topic_id("orders")])
    assert late == [0]
    assert report.records_delivered == 2  # the woken state kept the holder reading
    assert h.functions.offsets("orders-0") == [0, 1]
    assert h.states.due_work(10**15) == ([], [])


def test_a_long_backlog_is_left_to_the_schedule_after_a_bounded_delivery(eng: Engine) -> None:
    eng.create_topic("orders")
    sub = subscription("orders", batch_size=2)
    h = Harness(eng, sub)
    dispatcher = h.dispatcher(max_batches=2)
    h.append("orders", 0, *[bytes([i]) for i in range(9)])
    assert dispatcher.on_appended([h.topic_id("orders")]).records_delivered == 4
    assert dispatcher.resume_due().records_delivered == 4  # due at once
    assert dispatcher.resume_due().records_delivered == 1
    assert dispatcher.resume_due().invocations == 0
    assert h.functions.offsets("orders-0") == list(range(9))
    assert h.states.due(10**15) == []


def test_records_already_too_old_go_to_the_destination_without_an_invocation(
    eng: Engine, clock: Clock
) -> None:
    eng.create_topic("orders")
    eng.create_topic("orders-dlq")
    sub = subscription(
        "orders", maximum_record_age_ms=60_000, on_failure=OnFailure(topic="orders-dlq")
    )
    h = Harness(eng, sub)
    h.append("orders", 0, b"old", b"older")
    clock.advance(60_001)
    h.append("orders", 0, b"fresh")
    report = h.dispatcher().on_appended([h.topic_id("orders")])
    assert (report.invocations, report.records_failed, report.records_delivered) == (1, 2, 1)
    assert h.functions.offsets("orders-0") == [2]
    (failed,) = _dlq_records(eng, "orders-dlq")
    assert failed["requestContext"]["condition"] == "RecordAgeExceeded"
    assert values_of(failed["payload"]) == [b"old", b"older"]


def test_the_schedule_drops_the_state_of_a_deleted_subscription(eng: Engine, clock: Clock) -> None:
    eng.create_topic("orders")
    sub = subscription("orders")
    h = Harness(eng, sub, functions=Functions(fails_on(b"bad")))
    h.append("orders", 0, b"bad")
    h.dispatcher().on_appended([h.topic_id("orders")])
    assert h.states.get(sub.group, 0) is not None  # retrying
    h.subscriptions.by_topic.clear()
    clock.advance(backoff_ms(1))
    assert h.dispatcher().resume_due().invocations == 0
    assert h.states.get(sub.group, 0) is None


def test_a_failing_destination_holds_back_its_batch_but_not_other_subscriptions(
    eng: Engine, clock: Clock
) -> None:
    eng.create_topic("orders")
    broken = subscription("orders", maximum_retry_attempts=0, on_failure=OnFailure(topic="nope"))
    healthy = Subscription(
        name="s2", topic="orders", function_arn="arn:f2", max_batching_window_ms=0
    )
    h = Harness(eng, broken, healthy)

    def only_the_healthy_function_succeeds(_event: Mapping[str, Any]) -> InvokeOutcome:
        arn = h.functions.calls[-1][0]  # the call being made
        return InvokeOutcome() if arn == healthy.function_arn else InvokeOutcome(error="Unhandled")

    h.functions.behaviour = only_the_healthy_function_succeeds
    h.append("orders", 0, b"a")
    with pytest.raises(TopicNotFoundError):  # the trigger fails: the stream retries it
        h.dispatcher().on_appended([h.topic_id("orders")])
    assert (h.committed(broken, 0), h.committed(healthy, 0)) == (None, 1)
    eng.create_topic("nope")
    clock.advance(DEFAULT_SESSION_MS)  # the stall guard brings the batch back
    assert h.dispatcher().resume_due().records_failed == 1
    assert h.committed(broken, 0) == 1
    assert len(eng.fetch("nope", 0, 0).records) == 1


@pytest.mark.parametrize(
    ("to", "first"),
    [("earliest", 0), ("latest", 10), (ToOffset(6), 6), (ToTimestamp(START_MS + 3), 3)],
)
def test_delivery_starts_at_the_offsets_the_subscription_committed(
    eng: Engine, clock: Clock, to: ResetTarget, first: int
) -> None:
    eng.create_topic("orders")
    sub = subscription("orders")
    h = Harness(eng, sub)
    for i in range(10):  # a busy topic: one record a millisecond
        h.append("orders", 0, bytes([i]))
        clock.advance(1)
    eng.reset_offsets(sub.group, "orders", to)  # what creating the subscription commits
    h.append("orders", 0, b"new")
    h.dispatcher().on_appended([h.topic_id("orders")])
    assert h.functions.offsets("orders-0") == list(range(first, 11))


@pytest.mark.moto
def test_a_crashed_delivery_is_resumed_through_the_dynamodb_state_store(
    make_faulty: MakeFaulty, clock: Clock, resources: ResourceNames
) -> None:
    eng, injector = make_faulty(clock_ms=clock)
    states = DynamoDeliveryStateStore(new_client("dynamodb"), resources.catalog_table)
    eng.create_topic("orders", 2)
    sub = subscription("orders", batch_size=3)
    h = Harness(eng, sub, states=states)
    h.append("orders", 1, *[bytes([i]) for i in range(5)])
    injector.arm(FailPoint.BEFORE_COMMIT)
    with pytest.raises(InjectedFaultError):
        h.dispatcher().on_appended([h.topic_id("orders")])
    # the run's guard (its deliveries had no state item) stays, due when the session lapses
    assert states.due_work(clock.now_ms + DEFAULT_SESSION_MS - 1) == ([], [])
    due, [guard] = states.due_work(clock.now_ms + DEFAULT_SESSION_MS)
    assert due == []
    assert guard.topic_ids == (h.topic_id("orders"),)
    clock.advance(DEFAULT_SESSION_MS)
    assert h.dispatcher().resume_due().records_delivered == 5
    assert h.functions.batches("orders-1") == [[0, 1, 2], [0, 1, 2], [3, 4]]
    assert states.due_work(10**15) == ([], [])
    eng.close()


def test_a_delivery_keeps_its_lease_until_the_member_leaves(clock: Clock) -> None:
    storage = MemoryStorage(clock)
    objects, ledger, catalog, groups = storage.stores()
    watched = _Calls(groups)
    eng = Engine(objects, ledger, catalog, watched, clock_ms=clock)
    eng.create_topic("orders")
    sub = subscription("orders", max_batching_window_ms=0)
    h = Harness(eng, sub)
    dispatcher = h.dispatcher()
    for value in (b"a", b"b"):
        h.append("orders", 0, value)
        watched.seen.clear()
        assert dispatcher.on_appended([h.topic_id("orders")]).records_delivered == 1
        # one lease write for the first delivery, none for the next one; never a give-up
        moves = [name for name in watched.seen if name in {"take_lease", "give_up_lease"}]
        assert moves == (["take_lease"] if value == b"a" else [])
    view = GroupView.of(groups.read_group(sub.group), clock())
    assert view.lease("orders", 0).owner == dispatcher.member_id
    assert dispatcher.member_id not in view.live  # the member left: the lease is free
    other = h.dispatcher()
    h.append("orders", 0, b"c")
    assert other.on_appended([h.topic_id("orders")]).records_delivered == 1
    assert h.functions.offsets("orders-0") == [0, 1, 2]
    assert h.committed(sub, 0) == 3


def _iso(ms: int) -> str:
    at = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def test_describe_reports_each_partitions_delivery_state_from_the_store(
    make_engine: Callable[..., Engine], clock: Clock
) -> None:
    # Given an engine that reads the dispatcher's delivery states, and a subscription with
    # a window the schedule resumes and a function failing on "bad"
    states = MemoryDeliveryStateStore()
    eng = make_engine(clock_ms=clock, sleep=lambda _s: None, deliveries=states)
    eng.create_topic("orders", 3)
    sub = subscription("orders", max_batching_window_ms=INLINE_WINDOW_MS + 1_000)
    eng.create_subscription(sub)
    h = Harness(eng, sub, functions=Functions(fails_on(b"bad")), states=states)
    dispatcher = h.dispatcher(sleep=pytest.fail)

    # When partition 1's batch fails once and partition 0's waits for its window
    h.append("orders", 1, b"bad")
    dispatcher.on_appended([h.topic_id("orders")])
    clock.advance(sub.max_batching_window_ms)
    assert dispatcher.resume_due().invocations == 1
    h.append("orders", 0, b"a")
    dispatcher.on_appended([h.topic_id("orders")])
    status = eng.describe_subscription("orders", "s1")

    # Then describe says so per partition; partition 2, caught up, has no state
    now = clock()
    assert status.state == {
        0: f"waiting for window (until {_iso(now + sub.max_batching_window_ms)})",
        1: f"retrying (attempt 2, next at {_iso(now + backoff_ms(1))})",
    }
    assert [p.lag for p in status.partitions] == [1, 1, 0]


def test_delivery_state_texts() -> None:
    state = DeliveryState("g", "orders", "s1", 0, due_ms=START_MS)
    assert delivery_state_text(None, True, START_MS) == "delivering"
    assert delivery_state_text(state, True, START_MS - 1) == "delivering"
    assert delivery_state_text(state, False, START_MS) == f"due (since {_iso(START_MS)})"
    assert delivery_state_text(replace(state, attempts=3), True, START_MS) == (
        f"retrying (attempt 4, next at {_iso(START_MS)})"
    )


# Concurrent deliveries (ADR 0015 §2, "Concurrency") -----------------------------------------


def meets_at(barrier: threading.Barrier) -> Callable[..., InvokeOutcome]:
    """A function whose first ``barrier.parties`` invocations wait for each other at
    ``barrier``: they return only once that many are in flight at once (the barrier is
    broken after `WAIT_S` otherwise); later invocations return at once."""
    calls = itertools.count()

    def behaviour(_event: Mapping[str, Any]) -> InvokeOutcome:
        if next(calls) < barrier.parties:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(WAIT_S)
        return InvokeOutcome()

    return behaviour


def test_a_triggers_partitions_are_delivered_at_once(eng: Engine) -> None:
    # Given three partitions with records and a function that returns only once all three
    # partitions' first invocations are in flight together
    eng.create_topic("orders", 3)
    sub = subscription("orders", batch_size=2)
    barrier = threading.Barrier(3)
    threads: set[int] = set()

    def together(event: Mapping[str, Any]) -> InvokeOutcome:
        threads.add(threading.get_ident())
        barrier.wait(WAIT_S)  # raises BrokenBarrierError unless all three are in flight
        return InvokeOutcome()

    h = Harness(eng, sub, functions=Functions(together))
    for partition in range(3):
        h.append("orders", partition, b"a", b"b")

    # When one trigger delivers them
    report = h.dispatcher().on_appended([h.topic_id("orders")])

    # Then the three deliveries ran at once, in threads other than the caller's
    assert (report.invocations, report.records_delivered, report.failures) == (3, 6, 0)
    assert not barrier.broken
    assert len(threads) == 3 and threading.get_ident() not in threads
    assert [h.committed(sub, p) for p in range(3)] == [2, 2, 2]
    assert h.states.due(10**15) == []


def test_two_subscriptions_of_a_topic_are_delivered_at_once(eng: Engine) -> None:
    eng.create_topic("orders")
    first = subscription("orders")
    second = Subscription(
        name="s2", topic="orders", function_arn="arn:f2", max_batching_window_ms=0
    )
    barrier = threading.Barrier(2)

    def together(_event: Mapping[str, Any]) -> InvokeOutcome:
        barrier.wait(WAIT_S)
        return InvokeOutcome()

    h = Harness(eng, first, second, functions=Functions(together))
    h.append("orders", 0, b"a")
    report = h.dispatcher().on_appended([h.topic_id("orders")])
    assert (report.invocations, report.records_delivered) == (2, 2)
    assert (h.committed(first, 0), h.committed(second, 0)) == (1, 1)


def test_one_concurrent_delivery_delivers_in_the_calling_thread_one_after_another(
    eng: Engine,
) -> None:
    eng.create_topic("orders", 3)
    sub = subscription("orders")
    threads: list[int] = []

    def where(_event: Mapping[str, Any]) -> InvokeOutcome:
        threads.append(threading.get_ident())
        return InvokeOutcome()

    h = Harness(eng, sub, functions=Functions(where))
    for partition in range(3):
        h.append("orders", partition, b"a")
    dispatcher = h.dispatcher(max_concurrent_deliveries=1, executor=pytest.fail)
    assert dispatcher.on_appended([h.topic_id("orders")]).records_delivered == 3
    assert threads == [threading.get_ident()] * 3
    assert h.functions.batches("orders-0") == [[0]]
    with pytest.raises(ValueError, match="max_concurrent_deliveries"):
        h.dispatcher(max_concurrent_deliveries=0)


def test_pooled_dispatchers_racing_never_deliver_one_partition_twice(eng: Engine) -> None:
    # Given two dispatchers, each delivering concurrently, started together on a topic
    # whose four partitions have records, and a function held until every partition is in
    # flight somewhere
    eng.create_topic("orders", 4)
    sub = subscription("orders", batch_size=3)
    in_flight = threading.Barrier(4)
    h = Harness(eng, sub, functions=Functions(meets_at(in_flight)))
    for partition in range(4):
        h.append("orders", partition, *[bytes([i]) for i in range(7)])
    first, second = h.dispatcher(), h.dispatcher()
    start = threading.Barrier(2)
    reports: list[int] = []
    failures: list[BaseException] = []

    def trigger(dispatcher: Dispatcher) -> None:
        start.wait(WAIT_S)
        try:
            reports.append(dispatcher.on_appended([h.topic_id("orders")]).records_delivered)
        except BaseException as error:
            failures.append(error)

    # When both triggers race on the same partitions
    threads = [threading.Thread(target=trigger, args=(d,)) for d in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
        assert not thread.is_alive()
    first.resume_due()  # records left to a woken state, if any

    # Then each partition was held by one delivery at a time: every record reached the
    # function exactly once, in order, and never two invocations of a partition overlapped
    assert failures == []
    assert sum(reports) == 28
    for partition in range(4):
        key = f"orders-{partition}"
        assert h.functions.offsets(key) == list(range(7))
        assert h.functions.max_in_flight[key] == 1
        assert h.committed(sub, partition) == 7
    assert not in_flight.broken
    assert h.states.due(10**15) == []


def test_a_crash_in_one_concurrent_delivery_leaves_the_others_committed(
    make_faulty: MakeFaulty, clock: Clock
) -> None:
    # Given three partitions delivered at once, and a commit that fails once
    eng, injector = make_faulty(clock_ms=clock)
    eng.create_topic("orders", 3)
    sub = subscription("orders")
    h = Harness(eng, sub, functions=Functions(meets_at(threading.Barrier(3))))
    for partition in range(3):
        h.append("orders", partition, b"a", b"b")
    injector.arm(FailPoint.BEFORE_COMMIT)

    # When the trigger runs, one delivery crashes between its invoke and its commit
    with pytest.raises(InjectedFaultError):
        h.dispatcher().on_appended([h.topic_id("orders")])

    # Then the other two committed; the crashed one is redelivered once its session lapsed
    committed = [h.committed(sub, p) for p in range(3)]
    assert sorted(committed, key=lambda c: c or 0) == [None, 2, 2]
    crashed = committed.index(None)
    assert h.dispatcher().resume_due().invocations == 0
    clock.advance(DEFAULT_SESSION_MS)
    assert h.dispatcher().resume_due().records_delivered == 2
    assert h.functions.offsets(f"orders-{crashed}") == [0, 1, 0, 1]
    assert [h.committed(sub, p) for p in range(3)] == [2, 2, 2]
    eng.close()


# The run guard (ADR 0015 §2, "Stall guards") ------------------------------------------------


def test_deliveries_that_succeed_first_time_write_no_state_item(eng: Engine) -> None:
    # Given three partitions with records and no delivery state
    eng.create_topic("orders", 3)
    sub = subscription("orders")
    states = MemoryDeliveryStateStore()
    watched = _Calls(states)
    h = Harness(eng, sub, states=watched)  # type: ignore[arg-type]
    for partition in range(3):
        h.append("orders", partition, b"a", b"b")

    # When one trigger delivers them all
    assert h.dispatcher().on_appended([h.topic_id("orders")]).records_delivered == 6

    # Then the run wrote its guard and deleted it; each delivery only read its state
    # before and after (no put, no delete of a state item of its own)
    writes = [name for name in watched.seen if name not in {"get"}]
    assert writes == ["put_guard", "delete_guard"]
    assert watched.seen.count("get") == 6
    assert states.due_work(10**15) == ([], [])


def test_a_trigger_with_nothing_to_deliver_writes_no_guard(eng: Engine) -> None:
    eng.create_topic("orders")
    states = MemoryDeliveryStateStore()
    watched = _Calls(states)
    h = Harness(eng, subscription("orders"), states=watched)  # type: ignore[arg-type]
    assert h.dispatcher().on_appended([h.topic_id("orders")]).invocations == 0
    assert watched.seen == []


def test_a_lapsed_run_guard_is_replaced_before_its_topics_are_delivered(
    make_faulty: MakeFaulty, clock: Clock
) -> None:
    # Given a trigger that crashed between invoke and commit (its guard left behind)
    eng, injector = make_faulty(clock_ms=clock)
    eng.create_topic("orders")
    sub = subscription("orders")
    h = Harness(eng, sub)
    h.append("orders", 0, b"a")
    injector.arm(FailPoint.BEFORE_COMMIT)
    with pytest.raises(InjectedFaultError):
        h.dispatcher().on_appended([h.topic_id("orders")])
    _, [first] = h.states.due_work(clock.now_ms + DEFAULT_SESSION_MS)

    # When the schedule resumes it once the session lapsed, and crashes the same way
    clock.advance(DEFAULT_SESSION_MS)
    injector.arm(FailPoint.BEFORE_COMMIT)
    with pytest.raises(InjectedFaultError):
        h.dispatcher().resume_due()

    # Then a new guard of the same topics replaced the lapsed one, and brings the
    # batch back once this run's session lapsed in turn
    _, [second] = h.states.due_work(clock.now_ms + DEFAULT_SESSION_MS)
    assert second.run_id != first.run_id and second.topic_ids == first.topic_ids
    assert h.dispatcher().resume_due().invocations == 0
    clock.advance(DEFAULT_SESSION_MS)
    assert h.dispatcher().resume_due().records_delivered == 1
    assert h.functions.offsets("orders-0") == [0, 0, 0]
    assert h.committed(sub, 0) == 1
    assert h.states.due_work(10**15) == ([], [])
    eng.close()


def test_a_partition_with_a_due_state_and_a_lapsed_guard_is_delivered_once(
    eng: Engine, clock: Clock
) -> None:
    # Given a partition whose retry is due and whose topic a lapsed run guard names
    eng.create_topic("orders", 2)
    sub = subscription("orders")
    h = Harness(eng, sub)
    h.append("orders", 0, b"a")
    h.append("orders", 1, b"b")
    now = clock()
    h.states.put(DeliveryState(sub.group, "orders", sub.name, 0, now, attempts=1, error="e"))
    h.states.put_guard(RunGuard("lapsed", (h.topic_id("orders"),), now))

    # When the schedule runs
    report = h.dispatcher().resume_due()

    # Then each partition went out once, the retry counted from its state, and nothing
    # is left: neither the state, nor the lapsed guard, nor the run's own
    assert (report.invocations, report.records_delivered) == (2, 2)
    assert h.functions.offsets("orders-0") == [0]
    assert h.functions.offsets("orders-1") == [0]
    assert h.states.due_work(10**15) == ([], [])


def test_a_failed_planning_keeps_the_lapsed_guard(eng: Engine, clock: Clock) -> None:
    # Given a lapsed run guard, and a group store that fails to put the member once
    eng.create_topic("orders")
    sub = subscription("orders")
    h = Harness(eng, sub)
    h.append("orders", 0, b"a")
    guard = RunGuard("lapsed", (h.topic_id("orders"),), clock())
    h.states.put_guard(guard)
    store = eng.groups.store
    put_member = store.put_member
    failures = [InjectedFaultError(FailPoint.BEFORE_LEASE)]

    def fails_once(group: str, member: Any) -> None:
        if failures:
            raise failures.pop()
        put_member(group, member)

    store.put_member = fails_once  # type: ignore[method-assign]

    # When the schedule cannot plan the guard's topics, the guard stays for the next run
    with pytest.raises(InjectedFaultError):
        h.dispatcher().resume_due()
    assert h.states.due_work(clock()) == ([], [guard])
    assert h.functions.calls == []

    # Then the next run delivers them and removes it
    assert h.dispatcher().resume_due().records_delivered == 1
    assert h.states.due_work(10**15) == ([], [])


def test_a_trigger_that_cannot_plan_a_subscription_leaves_a_guard_of_its_topics(
    eng: Engine, clock: Clock
) -> None:
    # Given a group store that fails to put the member once
    eng.create_topic("orders")
    sub = subscription("orders")
    h = Harness(eng, sub)
    h.append("orders", 0, b"a")
    store = eng.groups.store
    put_member = store.put_member
    failures = [InjectedFaultError(FailPoint.BEFORE_LEASE)]

    def fails_once(group: str, member: Any) -> None:
        if failures:
            raise failures.pop()
        put_member(group, member)

    store.put_member = fails_once  # type: ignore[method-assign]

    # When the append's trigger cannot plan the subscription
    with pytest.raises(InjectedFaultError):
        h.dispatcher().on_appended([h.topic_id("orders")])

    # Then a guard of the topic brings it back once the session lapsed, besides the
    # stream's retry
    _, [guard] = h.states.due_work(clock() + DEFAULT_SESSION_MS)
    assert guard.topic_ids == (h.topic_id("orders"),)
    clock.advance(DEFAULT_SESSION_MS)
    assert h.dispatcher().resume_due().records_delivered == 1
    assert h.states.due_work(10**15) == ([], [])

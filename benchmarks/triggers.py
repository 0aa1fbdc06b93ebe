"""The trigger benchmark: delivery lag, batching and the dispatcher's cost (ADR 0015 §4, §5).

Everything runs the real dispatcher (`lakelog.service.dispatch.Dispatcher` over the DynamoDB
delivery states) on in-process moto with the cost benchmark's recorder
(`benchmarks.simulation.TimedRecorder`: every S3 request and DynamoDB unit as AWS bills
them, and their CPU left out of the dispatcher's). Nothing reaches AWS.

- **Lag** (real time): ``lakelog dev``'s wiring: an engine whose append hook is
  `LocalDispatcher.notify`, its worker thread (``resume_due`` every second) and a
  ``local:`` function recording when each record arrives. One-record appends every
  `TriggerWorkload.lag_gap_s`; the lag of a record is its arrival minus the return of its
  append. With the default 500 ms batching window a batch short of 100 records waits for
  its window, then for the next ``resume_due``.
- **W1** (a fake clock): W1's stream (3 appends a second of 341 keyed 1 KiB records over
  12 partitions) with one subscription of the defaults (batch 100, window 500 ms). As the
  event source mapping CDK sets (batch 1,000, window 1 s) calls the dispatcher at most
  once a second, ``on_appended`` runs once per modeled second, ``resume_due`` once a
  minute. The dispatcher's CPU is measured in every thread (moto and the recorder
  excluded) and each run's duration modeled (`run_seconds`): the calling thread's path
  (planning before the deliveries, leaving the groups after them) plus the longest of the
  delivery threads' paths, which run at once (`Dispatcher` delivers a trigger's partitions
  concurrently), each path its CPU, its calls' latencies (`benchmarks.simulation.io_seconds`)
  and `INVOKE_WAIT_S` per invocation of the subscribed function, one after another; never
  less than the threads' CPU together (one vCPU at 1,769 MB, one GIL). Lambda bills that
  wall-clock duration, not the sum of the paths. `price_w1` scales a month from it.
  Moto is not thread-safe: its requests are served one at a time (`serialized_moto`),
  which changes real time only, not the model.
- **W3** (an idle subscription): one ``resume_due`` measured; `price_w3`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import boto3
from moto import mock_aws

from benchmarks.cost import RECORD_BYTES, REGION
from benchmarks.pricing import (
    DYNAMODB_READ_UNIT,
    DYNAMODB_WRITE_UNIT,
    LAMBDA_ARM_GB_SECOND,
    LAMBDA_REQUEST,
    MONTH_S,
    S3_GET_REQUEST,
    lambda_duration,
)
from benchmarks.recorder import Call
from benchmarks.simulation import CpuAccount, SimClock, TimedRecorder, io_seconds
from benchmarks.workloads import make_values
from lakelog import Engine, Record, ResourceNames
from lakelog.dispatcher_handler import DEFAULT_BOOTSTRAP_SERVERS
from lakelog.local.dispatching import LocalDispatcher
from lakelog.service.dispatch import Dispatcher
from lakelog.service.invoke import InvokeOutcome, Invoker
from lakelog.service.invokers import LocalInvoker, RoutingInvoker
from lakelog.service.subscriptions import FunctionPolicy
from lakelog.storage import create_resources
from lakelog.storage.delivery import DynamoDeliveryStateStore
from lakelog.types import Subscription

__all__ = [
    "DISPATCHER_MEMORY_MB",
    "INVOKE_WAIT_S",
    "DeliveryPath",
    "LagReport",
    "MonthlyDispatch",
    "TriggerReport",
    "TriggerWorkload",
    "W1Dispatch",
    "arrived",
    "percentile",
    "price_w1",
    "price_w3",
    "run_seconds",
    "run_triggers",
    "serialized_moto",
]

R = TypeVar("R")

DISPATCHER_MEMORY_MB: Final = 1769
"""The dispatcher function's memory in prod (ADR 0015 §4)."""
INVOKE_WAIT_S: Final = 0.05
"""Modeled wait of one synchronous Invoke of a short subscribed function."""
ESM_WINDOW_S: Final = 1.0
"""The event source mapping's batching window on the ledger stream (CDK)."""
SCHEDULE_S: Final = 60.0
ALARMS: Final = 3
"""Prod's dispatcher alarms (standard metrics, $0.10 each a month)."""
ALARM_MONTH: Final = 0.10
LOG_LINE_GB: Final = 250 / 1e9
"""One log line a run (ADR 0015 §4)."""
LOGS_GB: Final = 0.50
W1_APPENDS_PER_S: Final = 3.0
W1_PARTITIONS: Final = 12
W1_RECORDS_PER_APPEND: Final = round((1 << 20) / RECORD_BYTES / W1_APPENDS_PER_S)
_FUNCTION: Final = "local:benchmarks.triggers:arrived"
_ARRIVALS: list[tuple[float, int, int]] = []
_ARRIVALS_LOCK = threading.Lock()
_INVOCATIONS: list[float] = []


def arrived(event: dict[str, Any], context: object) -> None:
    """The subscribed ``local:`` function: remembers when each record arrived."""
    del context
    now = time.monotonic()
    with _ARRIVALS_LOCK:
        _INVOCATIONS.append(now)
        for records in event["records"].values():
            _ARRIVALS.extend((now, r["partition"], r["offset"]) for r in records)


@dataclass(frozen=True, slots=True)
class DeliveryPath:
    """What one thread of a dispatcher run did, one thing after another."""

    calls: tuple[Call, ...] = ()
    cpu_s: float = 0.0
    invocations: int = 0

    @property
    def seconds(self) -> float:
        """Modeled time of the path: its CPU, each call's latency and each Invoke's wait."""
        return self.cpu_s + io_seconds(self.calls) + self.invocations * INVOKE_WAIT_S


def run_seconds(
    caller: DeliveryPath, deliveries: Sequence[DeliveryPath], waited_s: float = 0.0
) -> float:
    """Modeled wall-clock duration of one dispatcher run, what Lambda bills.

    The calling thread plans the deliveries before they start and leaves the groups after
    they end, so its path adds to theirs. The delivery threads run at the same time: the
    run lasts as long as the longest of them, not their sum, but never less than their CPU
    together (1,769 MB is one vCPU, and Python runs one thread at a time). ``waited_s``,
    the short batching windows waited for in process, is how far the run moved the one
    simulated clock (each wait ends at an absolute time); it is added whole, as if every
    wait lay on the longest path (an upper bound).
    """
    longest = max((path.seconds for path in deliveries), default=0.0)
    together = sum(path.cpu_s for path in deliveries)
    return caller.seconds + max(longest, together) + waited_s


@dataclass(frozen=True, slots=True)
class TriggerWorkload:
    """Sizes of the trigger benchmark (the defaults take about 30 s on two cores)."""

    lag_appends: int = 300
    lag_gap_s: float = 0.02
    w1_seconds: int = 20
    """Modeled seconds of W1's stream."""
    seed: int = 1


@dataclass(frozen=True, slots=True)
class LagReport:
    """Seconds from an append's return to its record's arrival, one per record."""

    lags: tuple[float, ...]
    invocations: int

    @property
    def p50(self) -> float:
        """The median lag, seconds."""
        return percentile(self.lags, 0.50)

    @property
    def p99(self) -> float:
        """The 99th percentile lag, seconds."""
        return percentile(self.lags, 0.99)


@dataclass(frozen=True, slots=True)
class W1Dispatch:
    """What the dispatcher did for ``seconds`` of W1's stream."""

    seconds: float
    records: int
    stream_calls: int
    """``on_appended`` calls (stream-triggered dispatcher invocations)."""
    invocations: int
    """Invocations of the subscribed function."""
    calls: tuple[Call, ...]
    cpu_s: float
    schedule_calls: tuple[Call, ...] = field(default=())
    """The calls of one idle ``resume_due``."""
    schedule_cpu_s: float = 0.0
    waited_s: float = 0.0
    """Seconds the stream runs waited in process for short batching windows (billed)."""
    modeled_s: float | None = None
    """Modeled wall-clock seconds of the stream runs, each `run_seconds` of its threads'
    paths; None: every call, invoke and wait one after another (a serial dispatcher)."""

    def count(self, service: str, operation: str | None = None) -> int:
        """Calls to ``service`` (and ``operation``, when given) of the stream runs."""
        return sum(
            1
            for c in self.calls
            if c.service == service and (operation is None or c.operation == operation)
        )

    @property
    def write_units(self) -> float:
        """DynamoDB write units of the stream runs, as billed."""
        return sum(c.write_units for c in self.calls)

    @property
    def read_units(self) -> float:
        """DynamoDB read units of the stream runs, as billed."""
        return sum(c.read_units for c in self.calls)

    @property
    def duration_s(self) -> float:
        """Modeled billed duration of all the stream-triggered dispatcher runs."""
        if self.modeled_s is not None:
            return self.modeled_s
        io = io_seconds(self.calls) + self.invocations * INVOKE_WAIT_S + self.waited_s
        return lambda_duration(self.cpu_s, io, DISPATCHER_MEMORY_MB)


@dataclass(frozen=True, slots=True)
class TriggerReport:
    """The lag run and the W1 run."""

    lag: LagReport
    w1: W1Dispatch


@dataclass(frozen=True, slots=True)
class MonthlyDispatch:
    """USD a month of the dispatcher, by part."""

    requests: float
    duration: float
    dynamodb: float
    s3: float
    logs: float
    alarms: float
    function_invocations: float
    """Invocations of the subscribed function a month (its own cost excluded)."""

    @property
    def total(self) -> float:
        """USD a month, every part."""
        return self.requests + self.duration + self.dynamodb + self.s3 + self.logs + self.alarms


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank ``fraction`` percentile of ``values`` (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(round(fraction * len(ordered), 9)))
    return ordered[min(rank, len(ordered)) - 1]


def _schedule_month(w1: W1Dispatch) -> MonthlyDispatch:
    runs = MONTH_S / SCHEDULE_S
    io = io_seconds(w1.schedule_calls)
    duration = lambda_duration(w1.schedule_cpu_s, io, DISPATCHER_MEMORY_MB)
    reads = sum(c.read_units for c in w1.schedule_calls)
    return MonthlyDispatch(
        requests=runs * LAMBDA_REQUEST,
        duration=runs * duration * DISPATCHER_MEMORY_MB / 1024 * LAMBDA_ARM_GB_SECOND,
        dynamodb=runs * reads * DYNAMODB_READ_UNIT,
        s3=0.0,
        logs=runs * LOG_LINE_GB * LOGS_GB,
        alarms=ALARMS * ALARM_MONTH,
        function_invocations=0.0,
    )


def price_w3(w1: W1Dispatch) -> MonthlyDispatch:
    """A month of an idle subscription: the minute schedule (one Query a run) and alarms."""
    return _schedule_month(w1)


def price_w1(w1: W1Dispatch) -> MonthlyDispatch:
    """A month of W1 with one subscription reading everything: the measured stream runs
    scaled from ``w1.seconds`` to a month, plus the minute schedule and alarms."""
    scale = MONTH_S / w1.seconds
    idle = _schedule_month(w1)
    gb_s = w1.duration_s * DISPATCHER_MEMORY_MB / 1024
    units = w1.write_units * DYNAMODB_WRITE_UNIT + w1.read_units * DYNAMODB_READ_UNIT
    return MonthlyDispatch(
        requests=scale * w1.stream_calls * LAMBDA_REQUEST + idle.requests,
        duration=scale * gb_s * LAMBDA_ARM_GB_SECOND + idle.duration,
        dynamodb=scale * units + idle.dynamodb,
        s3=scale * w1.count("s3", "GetObject") * S3_GET_REQUEST,
        logs=scale * w1.stream_calls * LOG_LINE_GB * LOGS_GB + idle.logs,
        alarms=idle.alarms,
        function_invocations=scale * w1.invocations,
    )


class _Deployment:
    """Resources on moto, an engine that appends and one that dispatches (recorded)."""

    def __init__(
        self,
        prefix: str,
        clock_ms: Any,
        on_append: Any = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.session = boto3.Session(region_name=REGION)
        self.names = ResourceNames.for_prefix(prefix)
        create_resources(self.session.client("s3"), self.session.client("dynamodb"), self.names)
        self.account = CpuAccount()
        self.meter = _Meter(self.account)
        self.recorder = TimedRecorder(self.session.client("dynamodb"), self.account)
        policy = FunctionPolicy(allow_local=True)
        self.producer = self._engine(clock_ms, policy, on_append=on_append)
        s3, dynamodb = self.session.client("s3"), self.session.client("dynamodb")
        self.recorder.attach(s3)
        self.recorder.attach(dynamodb)
        engine = Engine.from_clients(s3, dynamodb, self.names, clock_ms=clock_ms)
        self.dispatcher = Dispatcher(
            engine,
            engine.subscriptions.list,
            _LambdaLikeInvoker(RoutingInvoker(local_invoker=LocalInvoker()), self.meter),
            _NoQueues(),
            states=DynamoDeliveryStateStore(dynamodb, self.names.catalog_table),
            bootstrap_servers=DEFAULT_BOOTSTRAP_SERVERS,
            executor=self.meter.executor,
            **({} if sleep is None else {"sleep": sleep}),
        )

    def _engine(self, clock_ms: Any, policy: FunctionPolicy, **kwargs: Any) -> Engine:
        s3, dynamodb = self.session.client("s3"), self.session.client("dynamodb")
        return Engine.from_clients(
            s3, dynamodb, self.names, clock_ms=clock_ms, functions=policy, **kwargs
        )

    def subscribe(self, topic: str, partitions: int) -> str:
        topic_id = self.producer.create_topic(topic, partitions).topic_id
        self.producer.create_subscription(Subscription("bench", topic, _FUNCTION))
        return topic_id


class _Meter:
    """Per thread of the dispatcher's runs: CPU of the delivery threads (the calling
    thread's is measured around the trigger) and invocations of the subscribed function."""

    def __init__(self, account: CpuAccount) -> None:
        self.account = account
        self._lock = threading.Lock()
        self._cpu: defaultdict[int, float] = defaultdict(float)
        self._invocations: Counter[int] = Counter()

    def executor(self, workers: int) -> Executor:
        """The dispatcher's executor: threads whose tasks' CPU is metered."""
        return _MeteredThreads(self, workers)

    def run(self, task: Callable[[], R]) -> R:
        """``task()`` in this thread, its CPU (moto excluded) counted for the thread."""
        result, used = self.account.cpu(task)
        with self._lock:
            self._cpu[threading.get_ident()] += used
        return result

    def invoked(self) -> None:
        """Count one invocation of the subscribed function by this thread."""
        with self._lock:
            self._invocations[threading.get_ident()] += 1

    def paths(
        self, calls: Sequence[Call], caller: int, caller_cpu_s: float
    ) -> tuple[DeliveryPath, list[DeliveryPath]]:
        """The run's path of the ``caller`` thread and those of its delivery threads (by
        ``calls``' threads), then forget the run."""
        with self._lock:
            cpu, invocations = dict(self._cpu), dict(self._invocations)
            self._cpu.clear()
            self._invocations.clear()
        threads = {c.thread for c in calls} | set(cpu) | set(invocations)

        def path(thread: int, cpu_s: float) -> DeliveryPath:
            mine = tuple(c for c in calls if c.thread == thread)
            return DeliveryPath(mine, cpu_s, invocations.get(thread, 0))

        workers = [path(t, cpu.get(t, 0.0)) for t in sorted(threads - {caller})]
        return path(caller, caller_cpu_s), workers


class _MeteredThreads(ThreadPoolExecutor):
    def __init__(self, meter: _Meter, workers: int) -> None:
        super().__init__(workers, thread_name_prefix="bench-delivery")
        self._meter = meter

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        return super().submit(self._meter.run, functools.partial(fn, *args, **kwargs))


@contextlib.contextmanager
def serialized_moto() -> Iterator[None]:
    """Serve moto's requests one at a time while the block runs: its in-memory backends
    are not thread-safe (a query iterating a table another thread writes to fails)."""
    from moto.core.botocore_stubber import BotocoreStubber  # noqa: PLC0415

    original = BotocoreStubber.__call__
    lock = threading.RLock()

    def call(stubber: BotocoreStubber, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(stubber, *args, **kwargs)

    BotocoreStubber.__call__ = call  # type: ignore[method-assign]
    try:
        yield
    finally:
        BotocoreStubber.__call__ = original  # type: ignore[method-assign]


class _LambdaLikeInvoker:
    """Serializes the event as `LambdaInvoker`'s client does (counted), then calls the
    ``local:`` function with its CPU excluded (the subscribed function is not the
    dispatcher's), counting the invocation for the calling thread."""

    def __init__(self, inner: Invoker, meter: _Meter) -> None:
        self._inner = inner
        self._meter = meter

    def invoke(self, function_arn: str, event: Mapping[str, Any]) -> InvokeOutcome:
        json.dumps(event).encode()
        self._meter.invoked()
        with self._meter.account.exclude():
            return self._inner.invoke(function_arn, event)


class _NoQueues:
    def send(self, queue_arn: str, body: str) -> None:
        raise AssertionError(f"nothing fails in the benchmark: {queue_arn} {body[:80]}")


def _clear() -> None:
    with _ARRIVALS_LOCK:
        _ARRIVALS.clear()
        _INVOCATIONS.clear()


def _run_lag(workload: TriggerWorkload) -> LagReport:
    worker: LocalDispatcher | None = None

    def notify(topic_id: str) -> None:
        if worker is not None:
            worker.notify(topic_id)

    run = _Deployment("triglag", lambda: time.time_ns() // 1_000_000, notify)
    worker = LocalDispatcher(lambda: run.dispatcher)
    run.subscribe("lag", 1)
    _clear()
    worker.start()
    appended: dict[int, float] = {}
    try:
        for i in range(workload.lag_appends):
            (landed,) = run.producer.append("lag", [Record(value=b"%d" % i, partition=0)])
            appended[landed.offset] = time.monotonic()
            time.sleep(workload.lag_gap_s)
        deadline = time.monotonic() + 10.0
        while len(_ARRIVALS) < len(appended) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
    with _ARRIVALS_LOCK:
        arrivals = list(_ARRIVALS)
    first = {offset: at for at, _, offset in reversed(arrivals)}
    lags = tuple(first[o] - t for o, t in appended.items() if o in first)
    return LagReport(lags, len(_INVOCATIONS))


def _stream_w1(run: _Deployment, clock: SimClock, workload: TriggerWorkload) -> W1Dispatch:
    topic_id = run.subscribe("w1", W1_PARTITIONS)
    values = make_values(W1_RECORDS_PER_APPEND, RECORD_BYTES, workload.seed)
    records = [Record(key=b"key-%d" % i, value=value) for i, value in enumerate(values)]
    _clear()
    calls: list[Call] = []
    cpu = modeled = waited = 0.0
    stream_calls = 0
    caller = threading.get_ident()
    appends_per_call = round(W1_APPENDS_PER_S * ESM_WINDOW_S)
    for second in range(workload.w1_seconds):
        for k in range(appends_per_call):
            clock.advance_to(max(second + k / appends_per_call, clock.elapsed()))
            run.producer.append("w1", records)
        clock.advance_to(max(second + ESM_WINDOW_S, clock.elapsed()))
        started = clock.elapsed()
        with run.recorder.capture() as captured:
            _, used = run.account.cpu(lambda: run.dispatcher.on_appended([topic_id]))
        path, deliveries = run.meter.paths(captured, caller, used)
        waited += clock.elapsed() - started
        modeled += run_seconds(path, deliveries, clock.elapsed() - started)
        calls += captured
        cpu += used + sum(d.cpu_s for d in deliveries)
        stream_calls += 1
    invocations = len(_INVOCATIONS)
    clock.advance_to(workload.w1_seconds + 600.0)
    run.dispatcher.resume_due()  # the windows left open, then nothing is due
    clock.advance_to(workload.w1_seconds + 660.0)
    with run.recorder.capture() as idle:
        _, idle_cpu = run.account.cpu(run.dispatcher.resume_due)
    return W1Dispatch(
        seconds=float(workload.w1_seconds),
        records=workload.w1_seconds * appends_per_call * len(records),
        stream_calls=stream_calls,
        invocations=invocations,
        calls=tuple(calls),
        cpu_s=cpu,
        waited_s=waited,
        modeled_s=modeled,
        schedule_calls=tuple(idle),
        schedule_cpu_s=idle_cpu,
    )


def run_triggers(workload: TriggerWorkload | None = None) -> TriggerReport:
    """Run both parts on fresh in-process moto deployments."""
    workload = workload or TriggerWorkload()
    with serialized_moto(), mock_aws():
        lag = _run_lag(workload)
    with serialized_moto(), mock_aws():
        w1 = _run_w1(workload)
    return TriggerReport(lag, w1)


def _run_w1(workload: TriggerWorkload) -> W1Dispatch:
    """W1's stream on a fake clock, moto's and Python's gc CPU excluded."""
    clock = SimClock()

    def sleep(seconds: float) -> None:
        """The dispatcher's in-process wait for a short window, on the simulated clock."""
        clock.advance_to(clock.elapsed() + seconds)

    run = _Deployment("trigw1", clock.ms, sleep=sleep)
    with run.account.excluding_moto(), run.account.excluding_gc():
        return _stream_w1(run, clock, workload)

"""Simulated time for the SDK's producer and consumers, and transports that meter each call.

The cost workloads (`benchmarks.cost`) drive the real SDK classes (`lakelog.client.Producer`,
`lakelog.client.Consumer`) for a few minutes of *simulated* time on in-process moto:

- `SimClock` is the one time of a run: the engines read it (``clock_ms``), the consumers'
  group membership reads it (``_clock``), and, while `sim_time` is active, the SDK modules
  that read `time.monotonic` (producer linger, fetch idle backoff) read it too. The SDK's
  code is not changed: the ``time`` name of those three modules points at a facade.
- `MeteredTransport` sits between an SDK object and its transport (the engine in direct
  mode, `HttpTransport` over `HandlerSender` for HTTPS). Each call runs for real (moto
  answers), its AWS calls are recorded (`benchmarks.recorder`), its CPU measured, and it
  then *takes* a modeled time (`io_seconds` plus CPU, plus `HTTPS_OVERHEAD_S` over HTTPS)
  of simulated time: the producer's sender thread waits for the clock to reach the end of
  its request (one request in flight, as the SDK does it), a consumer's next poll comes
  after its requests' modeled time.
- A consumer's heartbeat thread parks until the consumer closes (`SimClock.wait`): the
  simulation polls every consumer at least every few milliseconds of simulated time, and
  ``poll`` heartbeats when one is due, so that thread would find nothing due anyway.

CPU. `CpuAccount` subtracts from a thread's CPU time what moto (S3 and DynamoDB, which
run on AWS's CPUs in production), the recorder's own item-size reads and Python's garbage
collections (proportional to this process's heap, moto's stored data included) spend in it.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import threading
import time
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar
from urllib.parse import urlsplit

from benchmarks.recorder import Call, CallRecorder
from lakelog.client import consumer as consumer_module
from lakelog.client import fetcher as fetcher_module
from lakelog.client import producer as producer_module
from lakelog.client.http import HttpReply
from lakelog.local.events import LocalContext, http_event

if TYPE_CHECKING:
    from lakelog.api.handler import Handler
    from lakelog.client.transport import Transport
    from lakelog.contract.operations import Operation
    from lakelog.types import Record

__all__ = [
    "DDB_READ_S",
    "DDB_TRANSACT_S",
    "DDB_WRITE_S",
    "HTTPS_OVERHEAD_S",
    "S3_GET_S",
    "S3_PUT_S",
    "S3_S_PER_MIB",
    "START_MS",
    "CpuAccount",
    "HandlerSender",
    "MeteredTransport",
    "Request",
    "SimClock",
    "TimedRecorder",
    "io_seconds",
    "sim_time",
]

R = TypeVar("R")

START_MS: Final = 1_767_225_600_000
"""Epoch milliseconds at simulated time 0 (2026-01-01T00:00:00Z)."""

# The latency model (seconds), us-east-1, from inside the region.
S3_PUT_S: Final = 0.030
"""S3 PutObject: first byte of the reply, plus `S3_S_PER_MIB` per MiB sent."""
S3_GET_S: Final = 0.015
"""S3 GetObject (and HEAD, LIST): first byte, plus `S3_S_PER_MIB` per MiB received."""
S3_S_PER_MIB: Final = 0.010
"""S3 transfer time per MiB (about 100 MiB/s per connection)."""
DDB_READ_S: Final = 0.005
"""DynamoDB GetItem, BatchGetItem, Query."""
DDB_WRITE_S: Final = 0.008
"""DynamoDB PutItem, UpdateItem, DeleteItem."""
DDB_TRANSACT_S: Final = 0.015
"""DynamoDB TransactWriteItems and TransactGetItems."""
HTTPS_OVERHEAD_S: Final = 0.015
"""Client to API Gateway and back, plus API Gateway to a warm Lambda (no cold starts)."""

EPOCH_S: Final = 100_000.0
"""What `SimClock.monotonic` reads at the start of a run."""
_MIB = 1 << 20
_DDB_LATENCY: Final = {
    "TransactWriteItems": DDB_TRANSACT_S,
    "TransactGetItems": DDB_TRANSACT_S,
    "PutItem": DDB_WRITE_S,
    "UpdateItem": DDB_WRITE_S,
    "DeleteItem": DDB_WRITE_S,
    "BatchWriteItem": DDB_WRITE_S,
}


def io_seconds(calls: Sequence[Call]) -> float:
    """Modeled wait of ``calls`` made one after another (the engine makes them in order).

    Parameters
    ----------
    calls
        Recorded S3 and DynamoDB calls of one request.

    Returns
    -------
    float
        The sum of each call's modeled latency (module constants).
    """
    total = 0.0
    for call in calls:
        if call.service == "s3":
            first = S3_PUT_S if call.operation == "PutObject" else S3_GET_S
            total += first + (call.bytes_sent + call.bytes_received) / _MIB * S3_S_PER_MIB
        else:
            total += _DDB_LATENCY.get(call.operation, DDB_READ_S)
    return total


class SimClock:
    """Simulated seconds since the start of a run; moves only when `advance_to` is called."""

    def __init__(self) -> None:
        self._now = 0.0
        self._moved = threading.Condition()

    def monotonic(self) -> float:
        """The `GroupClock` and ``time.monotonic`` of the SDK: `elapsed` plus `EPOCH_S`
        (like the real one, far from 0, which the SDK reads as "long ago")."""
        return EPOCH_S + self._now

    def elapsed(self) -> float:
        """Simulated seconds since the start of the run."""
        return self._now

    def ms(self) -> int:
        """Epoch milliseconds (an engine's ``clock_ms``)."""
        return START_MS + round(self._now * 1000)

    def advance_to(self, seconds: float) -> None:
        """Move elapsed time to ``seconds`` and wake whoever waits for it."""
        with self._moved:
            self._now = seconds
            self._moved.notify_all()

    def wait_until(self, seconds: float) -> None:
        """Block until elapsed time reaches ``seconds``."""
        with self._moved:
            while self._now < seconds:
                self._moved.wait()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """A heartbeat thread's wait: parks until ``event`` is set (see the module docstring)."""
        del seconds
        event.wait()
        return True

    def sleep(self, seconds: float) -> None:
        """``time.sleep`` of the SDK: simulated time is moved by the driver, never here."""
        del seconds


@contextlib.contextmanager
def sim_time(clock: SimClock) -> Iterator[None]:
    """Make the SDK's producer, fetcher and consumer read ``clock`` instead of `time`."""
    facade = types.SimpleNamespace(
        monotonic=clock.monotonic,
        sleep=clock.sleep,
        perf_counter=time.perf_counter,
        time=time.time,
    )
    modules = (producer_module, fetcher_module, consumer_module)
    for module in modules:
        module.time = facade  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module in modules:
            module.time = time  # type: ignore[attr-defined]


class CpuAccount:
    """Per-thread CPU seconds spent inside excluded code (moto, the recorder)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def excluded(self) -> float:
        """CPU seconds this thread spent in excluded code so far."""
        total: float = getattr(self._local, "total", 0.0)
        return total

    @contextlib.contextmanager
    def exclude(self) -> Iterator[None]:
        """Count the block's CPU as excluded (nested blocks count once)."""
        depth = getattr(self._local, "depth", 0)
        self._local.depth = depth + 1
        started = time.thread_time() if depth == 0 else 0.0
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                self._local.total = self.excluded() + time.thread_time() - started

    def cpu(self, action: Callable[[], R]) -> tuple[R, float]:
        """``action()`` and the CPU seconds it took in this thread, excluded code left out."""
        cpu, excluded = time.thread_time(), self.excluded()
        result = action()
        return result, (time.thread_time() - cpu) - (self.excluded() - excluded)

    @contextlib.contextmanager
    def excluding_gc(self) -> Iterator[None]:
        """Count Python's garbage collections as excluded while the block runs: their cost
        grows with the whole heap of this process, moto's stored objects included, which
        a Lambda does not hold."""
        started: dict[int, float] = {}

        def callback(phase: str, info: Mapping[str, Any]) -> None:
            del info
            ident = threading.get_ident()
            if phase == "start":
                started[ident] = time.thread_time()
            elif ident in started and getattr(self._local, "depth", 0) == 0:
                self._local.total = self.excluded() + time.thread_time() - started.pop(ident)

        gc.callbacks.append(callback)
        try:
            yield
        finally:
            gc.callbacks.remove(callback)

    @contextlib.contextmanager
    def excluding_moto(self) -> Iterator[None]:
        """Count moto's request handling as excluded while the block runs."""
        from moto.core.botocore_stubber import BotocoreStubber  # noqa: PLC0415

        original = BotocoreStubber.__call__
        account = self

        def call(stubber: BotocoreStubber, *args: Any, **kwargs: Any) -> Any:
            with account.exclude():
                return original(stubber, *args, **kwargs)

        BotocoreStubber.__call__ = call  # type: ignore[method-assign]
        try:
            yield
        finally:
            BotocoreStubber.__call__ = original  # type: ignore[method-assign]


class TimedRecorder(CallRecorder):
    """A `CallRecorder` whose handlers' CPU is excluded by ``account``."""

    def __init__(self, inspector: Any, account: CpuAccount) -> None:
        super().__init__(inspector)
        self._account = account

    def _before(self, *args: Any, **kwargs: Any) -> None:
        with self._account.exclude():
            super()._before(*args, **kwargs)

    def _after(self, *args: Any, **kwargs: Any) -> None:
        with self._account.exclude():
            super()._after(*args, **kwargs)


@dataclass(frozen=True, slots=True)
class Invocation:
    """One API request as the handler saw it."""

    request_bytes: int
    response_bytes: int
    cpu_seconds: float


class HandlerSender:
    """`HttpTransport`'s sender: each request goes to the API handler in-process, as an API
    Gateway HTTP API (payload 2.0) event, and is measured (body sizes, handler CPU)."""

    def __init__(self, handler: Handler, account: CpuAccount, principal: str) -> None:
        self._handler = handler
        self._account = account
        self._principal = principal
        self.invocations: list[Invocation] = []

    def __call__(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> HttpReply:
        parts = urlsplit(url)
        event = http_event(
            method,
            parts.path,
            query=parts.query,
            body=body or b"",
            headers=headers,
            principal=self._principal,
        )
        reply, cpu = self._account.cpu(lambda: self._handler(event, LocalContext()))
        text = reply.get("body") or ""
        data = base64.b64decode(text) if reply.get("isBase64Encoded") else text.encode()
        self.invocations.append(Invocation(len(body or b""), len(data), cpu))
        return HttpReply(int(reply["statusCode"]), data)


@dataclass(frozen=True, slots=True)
class Request:
    """One SDK call through a `MeteredTransport`, with what it cost and how long it took."""

    operation: str
    role: str
    """``producer`` or ``consumer``: whose transport made it."""
    start_s: float
    latency_s: float
    io_s: float
    invocations: tuple[Invocation, ...]
    """API requests (HTTPS only; one per call unless the transport retried)."""
    calls: tuple[Call, ...]
    records: int = 0
    """Records a ``Fetch`` returned."""


def records_returned(result: object) -> int:
    """Records a fetch's result carries: one partition's, or every partition's of a
    multi-partition fetch (0 for anything else)."""
    parts = getattr(result, "partitions", None)
    if isinstance(parts, list | tuple):
        return sum(len(getattr(part, "records", ()) or ()) for part in parts)
    return len(getattr(result, "records", ()) or ())


class MeteredTransport:
    """A transport in front of another: every call is recorded and takes modeled time.

    Parameters
    ----------
    inner
        The engine (direct mode) or an `HttpTransport` over ``sender``.
    clock, world
        The run's time, and the lock that makes calls (and their recording) one at a time.
    recorder, account
        What records the AWS calls, and what measures CPU.
    log
        Where each `Request` goes.
    sender
        The `HandlerSender` of an HTTPS transport; None in direct mode.
    role
        ``producer`` or ``consumer``, written in each `Request`.
    blocking
        Wait until the clock reaches the end of each request made by another thread than
        the one that built the transport (the producer's sender thread); else add the
        request's time to `pending_s` (consumers, polled by the simulation itself).
    """

    def __init__(
        self,
        inner: Transport,
        *,
        clock: SimClock,
        world: threading.RLock,
        recorder: CallRecorder,
        account: CpuAccount,
        log: list[Request],
        sender: HandlerSender | None,
        blocking: bool,
        role: str,
    ) -> None:
        self.inner = inner
        self._clock = clock
        self._world = world
        self._recorder = recorder
        self._account = account
        self._log = log
        self._sender = sender
        self._blocking = blocking
        self._role = role
        self._driver = threading.current_thread()
        self.pending_s = 0.0
        self.waiting_until: float | None = None

    def call(self, op: Operation[R]) -> R:
        """``op`` on the inner transport, recorded, then its modeled time."""
        with self._world:
            # A consumer's requests follow one another within its poll.
            start = self._clock.elapsed() + (0.0 if self._blocking else self.pending_s)
            seen = len(self._sender.invocations) if self._sender else 0
            result: Any = None
            error: BaseException | None = None
            with self._recorder.capture() as calls:
                try:
                    result, cpu = self._account.cpu(lambda: self.inner.call(op))
                except Exception as failure:  # priced and timed like any request
                    error, cpu = failure, 0.0
            invocations = tuple(self._sender.invocations[seen:]) if self._sender else ()
            io = io_seconds(calls)
            overhead = HTTPS_OVERHEAD_S * len(invocations)
            latency = io + cpu + overhead
            records = records_returned(result)
            self._log.append(
                Request(
                    type(op).__name__,
                    self._role,
                    start,
                    latency,
                    io,
                    invocations,
                    tuple(calls),
                    records,
                )
            )
        if self._blocking and threading.current_thread() is not self._driver:
            self.waiting_until = start + latency
            self._clock.wait_until(start + latency)
            self.waiting_until = None
        else:
            self.pending_s += latency
        if error is not None:
            raise error
        return result  # type: ignore[no-any-return]

    @property
    def max_request_bytes(self) -> int:
        """The inner transport's limit."""
        return self.inner.max_request_bytes

    def request_bytes(self, record: Record) -> int:
        """The inner transport's measure of ``record``."""
        return self.inner.request_bytes(record)

    def close(self) -> None:
        """Close the inner transport."""
        self.inner.close()

    def compressed(self, compression: Literal["gzip"] | None) -> MeteredTransport:
        """This transport in front of ``inner.compressed(compression)``."""
        self.inner = self.inner.compressed(compression)
        return self

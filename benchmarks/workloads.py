"""The workloads: appends, fetches and codec CPU, on engines whose AWS calls are recorded.

Records are 1 KiB values without key or headers, so an append of 1,024 records carries
exactly 1 MiB of payload (`lakelog.log.codec.record_size`). Each value is 512 bytes from a
seeded `random.Random` (incompressible, but reproducible from run to run, unlike
`os.urandom`) followed by 512 bytes of a repeated phrase (text-like, compresses well): a
segment compresses to a little over half its payload, and every run encodes the same bytes.
"""

from __future__ import annotations

import functools
import random
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from benchmarks.recorder import Call, CallRecorder, Usage
from lakelog import Engine, Record, ResourceNames
from lakelog.log.codec import EncodedSegment, SegmentBuilder, SegmentReader, record_size

if TYPE_CHECKING:
    import boto3

__all__ = [
    "MIB",
    "AppendReport",
    "Bench",
    "CpuReport",
    "FetchReport",
    "Workload",
    "make_values",
    "run_codec_cpu",
    "run_engine_cpu",
    "run_fetches",
    "run_multi_partition_appends",
    "run_single_partition_appends",
]

MIB = 1 << 20
TOPIC_SINGLE = "bench.append-1p"
TOPIC_MULTI = "bench.append-multi"
TOPIC_CPU = "bench.cpu"
_PHRASE = b"lakelog benchmark record, "
_FETCH_RECORDS = 10_000


@dataclass(frozen=True, slots=True)
class Workload:
    """Sizes of the workloads (the defaults run in well under a minute on two cores)."""

    records_per_append: int = 1024
    value_bytes: int = 1024
    appends: int = 32
    partitions: int = 8
    multi_partition_appends: int = 4
    cold_fetches: int = 8
    codec_repetitions: int = 15
    cpu_appends: int = 16
    seed: int = 1


@dataclass(frozen=True, slots=True)
class AppendReport:
    """Calls of the first append of a fresh engine and of each later append."""

    first: Usage
    steady: Usage
    payload_bytes: int


@dataclass(frozen=True, slots=True)
class FetchReport:
    """Calls per fetch of 1 MiB: fresh engines, a warm consumer, and a re-read."""

    cold: Usage
    warm: Usage
    warm_cached: Usage
    payload_bytes: float


@dataclass(frozen=True, slots=True)
class CpuReport:
    """Median CPU milliseconds per MiB of record payload."""

    encode: float
    decode: float
    engine_append: float
    engine_fetch: float


class Bench:
    """Engines on one deployment, each on fresh clients that ``recorder`` watches.

    Parameters
    ----------
    session
        boto3 session the clients are made from (moto must be active).
    names
        Bucket and tables of the deployment.
    seed
        Seed of each engine's sticky partitioner and backoff jitter.
    """

    def __init__(self, session: boto3.Session, names: ResourceNames, seed: int = 1) -> None:
        self.session = session
        self.names = names
        self.seed = seed
        self.recorder = CallRecorder(session.client("dynamodb"))

    def engine(self) -> Engine:
        """A new engine with cold caches on new recorded clients, like a new Lambda."""
        s3 = self.session.client("s3")
        dynamodb = self.session.client("dynamodb")
        self.recorder.attach(s3)
        self.recorder.attach(dynamodb)
        return Engine.from_clients(s3, dynamodb, self.names, seed=self.seed)


def make_values(count: int, size: int, seed: int) -> list[bytes]:
    """``count`` values of ``size`` bytes: half seeded random bytes, half a repeated phrase.

    Parameters
    ----------
    count
        How many values.
    size
        Bytes per value.
    seed
        Seed of the random half.

    Returns
    -------
    list of bytes
        The values; the same for the same arguments.
    """
    rng = random.Random(seed)
    random_part = size // 2
    filler = (_PHRASE * (size // len(_PHRASE) + 1))[: size - random_part]
    return [rng.randbytes(random_part) + filler for _ in range(count)]


def _payload(records: Sequence[Record]) -> int:
    return sum(record_size(r.key, r.value, r.headers) for r in records)


def _append_checked(engine: Engine, topic: str, records: Sequence[Record]) -> None:
    metadata = engine.append(topic, records)
    if len(metadata) != len(records):
        raise RuntimeError(f"append to {topic} acknowledged {len(metadata)} of {len(records)}")


def _measure_appends(
    bench: Bench, topic: str, records: Sequence[Record], appends: int
) -> AppendReport:
    engine = bench.engine()
    with bench.recorder.capture() as first:
        _append_checked(engine, topic, records)
    with bench.recorder.capture() as steady:
        for _ in range(appends):
            _append_checked(engine, topic, records)
    return AppendReport(
        first=Usage(1, tuple(first)),
        steady=Usage(appends, tuple(steady)),
        payload_bytes=_payload(records),
    )


def run_single_partition_appends(
    bench: Bench, values: Sequence[bytes], appends: int
) -> AppendReport:
    """Keyless appends of ``values`` to a one-partition topic (workload a).

    Parameters
    ----------
    bench
        The deployment and recorder.
    values
        Record values of one append.
    appends
        Appends measured after the first one (which also reads topic and head).

    Returns
    -------
    AppendReport
        Calls of the first append and of each later one.
    """
    bench.engine().create_topic(TOPIC_SINGLE, partitions=1)
    records = [Record(value=value) for value in values]
    return _measure_appends(bench, TOPIC_SINGLE, records, appends)


def run_multi_partition_appends(
    bench: Bench, values: Sequence[bytes], partitions: int, appends: int
) -> AppendReport:
    """Appends spreading ``values`` over ``partitions`` by explicit partition (workload b).

    Parameters
    ----------
    bench
        The deployment and recorder.
    values
        Record values of one append; record ``i`` goes to partition ``i % partitions``.
    partitions
        Partitions of the topic, all touched by every append.
    appends
        Appends measured after the first one.

    Returns
    -------
    AppendReport
        Calls of the first append and of each later one.
    """
    bench.engine().create_topic(TOPIC_MULTI, partitions=partitions)
    records = [Record(value=value, partition=i % partitions) for i, value in enumerate(values)]
    return _measure_appends(bench, TOPIC_MULTI, records, appends)


def _fetch(
    engine: Engine, topic: str, offset: int, cursor: str | None = None
) -> tuple[int, str | None, int]:
    """Fetch 1 MiB from ``offset`` of partition 0; (next offset, cursor, payload bytes)."""
    result = engine.fetch(
        topic, 0, offset, max_records=_FETCH_RECORDS, max_bytes=MIB, cursor=cursor
    )
    if not result.records or result.records[0].offset != offset:
        raise RuntimeError(f"fetch of {topic} at {offset} returned no record at {offset}")
    payload = sum(record_size(r.key, r.value, r.headers) for r in result.records)
    return result.next_offset, result.cursor, payload


def _read_log(
    engine: Engine, topic: str, start: tuple[int, str | None], end: int
) -> tuple[int, int]:
    """Read partition 0 from ``start`` (offset, cursor) to ``end`` in 1 MiB fetches, each
    with the cursor the previous one returned, as a consumer does; (fetches, payload)."""
    (offset, cursor), fetches, payload = start, 0, 0
    while offset < end:
        offset, cursor, size = _fetch(engine, topic, offset, cursor)
        fetches += 1
        payload += size
    return fetches, payload


def run_fetches(bench: Bench, cold_fetches: int, topic: str = TOPIC_SINGLE) -> FetchReport:
    """Fetches of 1 MiB from the log workload (a) wrote (workload c).

    Parameters
    ----------
    bench
        The deployment and recorder.
    cold_fetches
        Fetches from offset 0, each by a fresh engine (cold topic and footer caches).
    topic
        A one-partition topic of 1 MiB batches.

    Returns
    -------
    FetchReport
        Calls per fetch: cold; a warm engine reading the whole log once (every footer new
        to it); the same engine reading it again (every footer cached).
    """
    cold: list[Call] = []
    payload = 0
    for _ in range(cold_fetches):
        engine = bench.engine()
        with bench.recorder.capture() as calls:
            payload += _fetch(engine, topic, 0)[2]
        cold.extend(calls)
    engine = bench.engine()
    end = engine.list_offset(topic, 0, "latest")  # loads the topic: the engine is warm
    # The first fetch searches for its offset; every later one follows its cursor.
    second, cursor, first_payload = _fetch(engine, topic, 0)
    with bench.recorder.capture() as warm:
        fetches, warm_payload = _read_log(engine, topic, (second, cursor), end)
    _, again, _ = _fetch(engine, topic, 0)
    with bench.recorder.capture() as cached:
        _read_log(engine, topic, (second, again), end)
    per_fetch = warm_payload / fetches
    if payload / cold_fetches != per_fetch or first_payload != per_fetch:
        raise RuntimeError("cold and warm fetches returned different amounts of data")
    return FetchReport(
        cold=Usage(cold_fetches, tuple(cold)),
        warm=Usage(fetches, tuple(warm)),
        warm_cached=Usage(fetches, tuple(cached)),
        payload_bytes=per_fetch,
    )


def _timed(action: Callable[[], object]) -> float:
    """CPU seconds of this process (every thread) spent in ``action``."""
    start = time.process_time()
    action()
    return time.process_time() - start


def _ms_per_mib(seconds: Sequence[float], payload_bytes: float) -> float:
    return statistics.median(seconds) * 1000 * MIB / payload_bytes


def run_codec_cpu(values: Sequence[bytes], repetitions: int) -> tuple[float, float]:
    """CPU ms per MiB to encode ``values`` as one segment and to decode it (workload d).

    Encoding is `SegmentBuilder.add_batch` plus `SegmentBuilder.build` (zstd, the default
    compression). Decoding is what a fetch with a cold footer cache does: parse the footer
    into a `SegmentReader`, then `SegmentReader.read_rows` over the row group's bytes.

    Parameters
    ----------
    values
        Record values of one batch (no keys, no headers).
    repetitions
        Timed repetitions; the median is reported.

    Returns
    -------
    tuple of float
        Median encode and decode CPU milliseconds per MiB of payload.
    """
    count = len(values)
    timestamps = [1_700_000_000_000 + i for i in range(count)]
    keys: list[bytes | None] = [None] * count
    headers: list[tuple[()]] = [()] * count
    payload = sum(len(value) for value in values)
    topic_id = uuid.UUID(int=0).hex
    encoded: list[EncodedSegment] = []

    def encode() -> None:
        builder = SegmentBuilder(topic_id, "zstd")
        builder.add_batch(0, timestamps, keys, values, headers)
        encoded.append(builder.build())

    encode_times = [_timed(encode) for _ in range(repetitions)]
    segment = encoded[-1]
    location = segment.row_groups[0]
    footer = segment.body[segment.footer_offset :]
    data = segment.body[location.byte_offset : location.byte_offset + location.byte_length]

    def decode() -> None:
        reader = SegmentReader("bench", segment.size, segment.footer_offset, footer)
        rows = reader.read_rows(location.row_group, data, location.byte_offset)
        if len(rows) != count:
            raise RuntimeError(f"decoded {len(rows)} of {count} rows")

    decode_times = [_timed(decode) for _ in range(repetitions)]
    return _ms_per_mib(encode_times, payload), _ms_per_mib(decode_times, payload)


def run_engine_cpu(bench: Bench, values: Sequence[bytes], appends: int) -> tuple[float, float]:
    """CPU ms per MiB of `Engine.append` and `Engine.fetch`, moto and botocore included.

    The recorder is paused (it reads item sizes around writes, which would add CPU). A
    warm engine appends ``appends`` batches of ``values`` to a fresh one-partition topic
    after one warm-up append, then reads that log back in 1 MiB fetches.

    Parameters
    ----------
    bench
        The deployment and recorder.
    values
        Record values of one append.
    appends
        Timed appends (and, after them, as many timed fetches plus one).

    Returns
    -------
    tuple of float
        Median append and fetch CPU milliseconds per MiB of payload.
    """
    records = [Record(value=value) for value in values]
    payload = _payload(records)
    with bench.recorder.paused():
        bench.engine().create_topic(TOPIC_CPU, partitions=1)
        engine = bench.engine()
        _append_checked(engine, TOPIC_CPU, records)
        append_times = [
            _timed(lambda: _append_checked(engine, TOPIC_CPU, records)) for _ in range(appends)
        ]
        reader = bench.engine()
        reader.list_offset(TOPIC_CPU, 0, "earliest")
        fetch_times = [
            _timed(functools.partial(_fetch, reader, TOPIC_CPU, offset))
            for offset in range(0, (appends + 1) * len(records), len(records))
        ]
    return _ms_per_mib(append_times, payload), _ms_per_mib(fetch_times, payload)

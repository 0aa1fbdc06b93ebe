"""Record batches v2: the reader against bytes librdkafka produced (every codec), the
builder against the reader, and corrupt or unsupported batches refused by name."""

from __future__ import annotations

import contextlib
import random
import struct
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest
from crc32c import crc32c
from kio.schema.errors import ErrorCode

from lakelog.kafka.apis import Api, Session
from lakelog.kafka.records import (
    BATCH_OVERHEAD,
    CODECS,
    MAX_DECOMPRESSED_BYTES,
    BatchRecord,
    CorruptRecordsError,
    RecordsError,
    RecordsTooLargeError,
    UnsupportedCompressionError,
    UnsupportedMagicError,
    encode_batch,
    read_batches,
)
from lakelog.kafka.served import SERVED
from lakelog.kafka.server import RunningGateway
from lakelog.service.engine import Engine
from tests.gateway.clients import producing_apis

DATA = Path(__file__).parent / "data"
TIMESTAMP = 1_700_000_000_000

SENT: list[dict[str, Any]] = [
    {"key": b"k1", "value": b"v1", "headers": [("h", b"x"), ("n", None)]},
    {"key": None, "value": b""},
    {"key": b"", "value": None},
    {"key": b"big", "value": bytes(range(256)) * 40},
]
"""What each capture holds: null and empty keys and values, headers, a value that
compresses."""

EXPECTED = tuple(
    BatchRecord(
        i,
        TIMESTAMP + i,
        message["key"],
        message["value"],
        tuple(message.get("headers", ())),
    )
    for i, message in enumerate(SENT)
)


def capture(engine: Engine, codec: str, start_gateway: Callable[..., RunningGateway]) -> bytes:
    """The ``records`` of the Produce request librdkafka sends for `SENT` with ``codec``."""
    captured: list[bytes] = []
    produce = SERVED[0]

    async def spy(body: Any, session: Session) -> Any:
        for topic in body.topic_data:
            captured.extend(bytes(p.records) for p in topic.partition_data)
        return await produce.handle(body, session)

    apis = {**producing_apis(), 0: Api(0, produce.min_version, produce.max_version, spy)}
    gateway = start_gateway(apis=apis)
    engine.create_topic(f"capture-{codec}", 1)
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": gateway.bootstrap,
            "compression.type": codec,
            "linger.ms": 1000,  # flush sends them at once: one batch
            "message.timeout.ms": 10_000,
        }
    )
    for i, message in enumerate(SENT):
        producer.produce(f"capture-{codec}", timestamp=TIMESTAMP + i, **message)
    assert producer.flush(15) == 0
    (records,) = captured
    return records


@pytest.fixture(params=CODECS)
def librdkafka_batch(request: pytest.FixtureRequest) -> Iterator[tuple[str, bytes]]:
    """A codec and the batch librdkafka 2.16 sent with it (tests/gateway/data)."""
    codec = str(request.param)
    yield codec, (DATA / f"librdkafka-{codec}.bin").read_bytes()


def test_librdkafka_batches_read_with_every_codec(librdkafka_batch: tuple[str, bytes]) -> None:
    codec, data = librdkafka_batch
    (batch,) = read_batches(data)
    assert batch.compression == codec
    assert batch.records == EXPECTED
    assert (batch.base_timestamp, batch.max_timestamp) == (TIMESTAMP, TIMESTAMP + 3)
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (-1, -1, -1)
    assert not (batch.transactional or batch.control or batch.log_append_time)


@pytest.mark.parametrize("codec", CODECS)
def test_captures_are_what_librdkafka_sends_now(
    engine: Engine, start_gateway: Callable[..., RunningGateway], codec: str
) -> None:
    # Given librdkafka producing SENT through a gateway that keeps the raw records
    fresh = capture(engine, codec, start_gateway)
    # Then they read as the stored capture does (compressed bytes may differ by version)
    assert (
        read_batches(fresh)[0].records
        == read_batches((DATA / f"librdkafka-{codec}.bin").read_bytes())[0].records
        == EXPECTED
    )


@pytest.mark.parametrize("codec", CODECS)
def test_built_batches_read_back(codec: str) -> None:
    data = encode_batch(
        100,
        [_stored(r) for r in EXPECTED],
        compression=codec,
        producer_id=7,
        producer_epoch=1,
        base_sequence=5,
    )
    (batch,) = read_batches(data)
    assert (batch.base_offset, batch.last_offset_delta, batch.compression) == (100, 3, codec)
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (7, 1, 5)
    assert batch.records == EXPECTED


def test_built_batches_keep_offset_gaps_and_read_back_to_back() -> None:
    records = [_stored(r) for r in EXPECTED[:2]]
    first = encode_batch(10, records, offsets=[10, 15])
    second = encode_batch(16, records)
    batches = read_batches(first + second)
    assert [b.base_offset for b in batches] == [10, 16]
    assert [r.offset_delta for r in batches[0].records] == [0, 5]
    assert batches[0].last_offset_delta == 5


def test_a_flipped_byte_is_a_crc_mismatch() -> None:
    data = bytearray(encode_batch(0, [_stored(EXPECTED[0])]))
    data[-1] ^= 1
    with pytest.raises(CorruptRecordsError, match="CRC"):
        read_batches(bytes(data))


def test_a_truncated_batch_is_corrupt() -> None:
    data = encode_batch(0, [_stored(EXPECTED[0])])
    with pytest.raises(CorruptRecordsError):
        read_batches(data[:-3])
    with pytest.raises(CorruptRecordsError):
        read_batches(b"")


def test_records_that_do_not_add_up_are_corrupt() -> None:
    # A batch whose count says two records but holds one (CRC made right again)
    data = bytearray(encode_batch(0, [_stored(EXPECTED[0])]))
    struct.pack_into(">i", data, 57, 2)
    _recrc(data)
    with pytest.raises(CorruptRecordsError):
        read_batches(bytes(data))


def test_an_unknown_codec_is_unsupported_compression() -> None:
    data = bytearray(encode_batch(0, [_stored(EXPECTED[0])]))
    struct.pack_into(">h", data, 21, 5)
    _recrc(data)
    with pytest.raises(UnsupportedCompressionError):
        read_batches(bytes(data))


def test_compressed_bytes_that_do_not_decompress_are_corrupt() -> None:
    data = bytearray(encode_batch(0, [_stored(EXPECTED[3])], compression="zstd"))
    data[70:80] = b"\xff" * 10
    _recrc(data)
    with pytest.raises(CorruptRecordsError, match="zstd"):
        read_batches(bytes(data))


@pytest.mark.parametrize("magic", [0, 1])
def test_message_sets_of_magic_0_and_1_are_refused(magic: int) -> None:
    # offset, size, crc, magic, attributes, (timestamp), key, value: Kafka's message v0/v1
    body = (
        struct.pack(">bb", magic, 0)
        + (b"\0" * 8 if magic else b"")
        + struct.pack(">ii", -1, 1)
        + b"x"
    )
    message = struct.pack(">qiI", 0, 4 + len(body), crc32c(body)) + body
    with pytest.raises(UnsupportedMagicError):
        read_batches(message)


def test_raw_and_xerial_snappy_both_read() -> None:
    records = [_stored(r) for r in EXPECTED]
    xerial = encode_batch(0, records, compression="snappy")
    assert b"\x82SNAPPY\x00" in xerial
    raw = (DATA / "librdkafka-snappy.bin").read_bytes()
    assert b"\x82SNAPPY\x00" not in raw
    assert read_batches(xerial)[0].records == read_batches(raw)[0].records == EXPECTED


def _stored(record: BatchRecord) -> Any:
    from lakelog.types import StoredRecord  # noqa: PLC0415

    return StoredRecord(
        0, record.offset_delta, record.timestamp_ms, record.key, record.value, record.headers
    )


def _recrc(data: bytearray) -> None:
    struct.pack_into(">I", data, 17, crc32c(bytes(data[21:])))


@pytest.mark.parametrize("codec", CODECS)
def test_mangled_batches_raise_only_records_errors(codec: str) -> None:
    # Given valid batches with random bytes changed and the CRC made right again, so the
    # reader goes past the checksum into sizes, varints and compressed bytes
    rng = random.Random(codec)
    data = (DATA / f"librdkafka-{codec}.bin").read_bytes()
    for _ in range(300):
        mangled = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mangled[rng.randrange(21, len(mangled))] = rng.randrange(256)
        _recrc(mangled)
        # Then each reads, or fails as corrupt or unsupported: never another exception
        with contextlib.suppress(RecordsError):
            read_batches(bytes(mangled))


def _bomb(codec: str, size: int) -> bytes:
    """A batch of one record whose value is ``size`` zero bytes, compressed by ``codec``
    into a few KiB at most."""
    record = BatchRecord(0, TIMESTAMP, None, bytes(size), ())
    return encode_batch(0, [_stored(record)], compression=codec)


@pytest.mark.parametrize("codec", CODECS[1:])
def test_a_compression_bomb_is_refused_as_too_large(codec: str) -> None:
    # Given a batch that decompresses to 64 MiB, four times what a partition may hold,
    # from at most a twentieth of that (snappy's best; the others' are KiB)
    bomb = _bomb(codec, 4 * MAX_DECOMPRESSED_BYTES)
    assert len(bomb) < 4 * MAX_DECOMPRESSED_BYTES // 20

    # Then it is refused as Kafka's MESSAGE_TOO_LARGE, not as corrupt, and never held
    # whole in memory: what Python held stayed within the limit (and a block)
    tracemalloc.start()
    try:
        with pytest.raises(RecordsTooLargeError, match=codec) as refused:
            read_batches(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.code is ErrorCode.message_too_large
    assert peak < MAX_DECOMPRESSED_BYTES + (1 << 20)


def _body(size: int) -> int:
    """The decompressed bytes of `_bomb`'s batch: its records, framing included."""
    return len(_bomb("none", size)) - BATCH_OVERHEAD


@pytest.mark.parametrize("codec", CODECS)
def test_a_partition_s_batches_decompress_to_at_most_the_limit_together(codec: str) -> None:
    # Given two batches whose records are exactly the limit together
    half = MAX_DECOMPRESSED_BYTES // 2
    framing = _body(half) - half
    rest = MAX_DECOMPRESSED_BYTES - _body(half) - framing
    assert _body(half) + _body(rest) == MAX_DECOMPRESSED_BYTES

    # Then they read, and one byte more is refused, compressed or not
    assert len(read_batches(_bomb(codec, half) + _bomb(codec, rest))) == 2
    with pytest.raises(RecordsTooLargeError):
        read_batches(_bomb(codec, half) + _bomb(codec, rest + 1))

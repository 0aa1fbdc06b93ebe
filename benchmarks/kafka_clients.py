"""Kafka clients for the gateway benchmark, run in a child process (`benchmarks.gateway`).

The gateway's CPU is measured in the benchmark's own process; librdkafka's threads run
here, so that their CPU is not counted as the gateway's. Each command prints one JSON line.

``produce BOOTSTRAP TOPIC RECORDS BYTES [--rate MIB_PER_S] [--keys]``
    librdkafka's producer with its defaults (acks=all, linger.ms=5): ``RECORDS`` random
    values of ``BYTES`` (each its own: they do not compress, as W1's), flushed; ``--rate``
    paces the sends; ``--keys`` gives each record a 16-byte key (murmur2 placement).
    Prints ``{"records", "bytes", "seconds"}``.
``consume BOOTSTRAP TOPIC PARTITIONS RECORDS``
    librdkafka's consumer assigned every partition from offset 0 until ``RECORDS`` are read.
``group BOOTSTRAP TOPIC GROUP RECORDS SECONDS``
    a consumer of ``GROUP`` subscribed to ``TOPIC`` (librdkafka defaults: auto commit every
    5 s, fetch.wait.max.ms 500) until it read ``RECORDS`` or ``SECONDS`` passed. Prints
    ``{"records", "bytes", "seconds"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import confluent_kafka

MIB = 1 << 20


def _produce(args: argparse.Namespace) -> dict[str, Any]:
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": args.bootstrap, "partitioner": "murmur2_random"}
    )
    pace = args.rate * MIB / args.bytes if args.rate else None
    failures: list[str] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    start = time.perf_counter()
    for n in range(args.records):
        if pace is not None:
            ahead = start + n / pace - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        key = f"key-{n % 100_000:012d}".encode() if args.keys else None
        while True:
            try:
                producer.produce(args.topic, os.urandom(args.bytes), key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    left = producer.flush(120)
    seconds = time.perf_counter() - start
    if left or failures:
        raise SystemExit(f"{left} undelivered, {len(failures)} failed: {failures[:3]}")
    return {"records": args.records, "bytes": args.records * args.bytes, "seconds": seconds}


def _consume(args: argparse.Namespace) -> dict[str, Any]:
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": args.bootstrap, "group.id": "unused", "enable.auto.commit": False}
    )
    consumer.assign(
        [confluent_kafka.TopicPartition(args.topic, p, 0) for p in range(args.partitions)]
    )
    read = size = 0
    start = time.perf_counter()
    deadline = start + 300
    while read < args.records and time.perf_counter() < deadline:
        for message in consumer.consume(1000, 1.0):
            if message.error() is None:
                read += 1
                size += len(message.value() or b"")
    seconds = time.perf_counter() - start
    consumer.close()
    if read < args.records:
        raise SystemExit(f"read {read} of {args.records} records")
    return {"records": read, "bytes": size, "seconds": seconds}


def _group(args: argparse.Namespace) -> dict[str, Any]:
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([args.topic])
    read = size = 0
    start = time.perf_counter()
    end = start + args.seconds
    while read < args.records and time.perf_counter() < end:
        for message in consumer.consume(1000, 0.5):
            if message.error() is None:
                read += 1
                size += len(message.value() or b"")
    seconds = time.perf_counter() - start
    consumer.close()
    return {"records": read, "bytes": size, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kafka_clients")
    commands = parser.add_subparsers(dest="command", required=True)
    produce = commands.add_parser("produce")
    produce.add_argument("bootstrap")
    produce.add_argument("topic")
    produce.add_argument("records", type=int)
    produce.add_argument("bytes", type=int)
    produce.add_argument("--rate", type=float)
    produce.add_argument("--keys", action="store_true")
    consume = commands.add_parser("consume")
    consume.add_argument("bootstrap")
    consume.add_argument("topic")
    consume.add_argument("partitions", type=int)
    consume.add_argument("records", type=int)
    group = commands.add_parser("group")
    group.add_argument("bootstrap")
    group.add_argument("topic")
    group.add_argument("group")
    group.add_argument("records", type=int)
    group.add_argument("seconds", type=float)
    args = parser.parse_args(argv)
    run = {"produce": _produce, "consume": _consume, "group": _group}[args.command]
    print(json.dumps(run(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

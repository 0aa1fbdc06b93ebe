"""kafka-python against ``lakelog dev``: produce three keyed records, then read the topic
back as a consumer group, committing as it goes. Run ``python
examples/kafka/produce_consume.py [BOOTSTRAP]`` (default ``127.0.0.1:9092``)."""

from __future__ import annotations

import sys

from kafka import KafkaConsumer, KafkaProducer


def main(bootstrap: str = "127.0.0.1:9092") -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for n in range(3):
        producer.send("clicks", key=f"user-{n}".encode(), value=f"click {n}".encode())
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(
        "clicks",
        bootstrap_servers=bootstrap,
        group_id="readme",
        auto_offset_reset="earliest",
        consumer_timeout_ms=5_000,  # stop iterating once nothing new arrives for 5 s
    )
    for record in consumer:
        print(f"partition {record.partition} offset {record.offset}: {record.value.decode()}")
    consumer.close()  # commits the group's offsets (lakelog group describe readme shows them)


if __name__ == "__main__":
    main(*sys.argv[1:])

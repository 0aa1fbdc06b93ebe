"""A sample ``local:`` function for ``lakelog dev``: prints each record it is given.

Subscribe it with::

    lakelog subscribe create orders print --function local:examples.triggers.print_orders:handler

It receives the event a Lambda function subscribed to a self-managed Kafka topic would,
parsed here with Powertools' `KafkaEvent`; deployed, the same code runs in Lambda.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import KafkaEvent


def handler(event: dict[str, Any], context: Any) -> None:
    """Print ``print_orders: TOPIC[PARTITION]@OFFSET KEY VALUE`` for each record."""
    for record in KafkaEvent(event).records:
        key = record.decoded_key.decode() if record.key is not None else "-"
        value = record.decoded_value.decode()
        print(f"print_orders: {record.topic}[{record.partition}]@{record.offset} {key} {value}")

"""The ``local:tests.e2e.trigger_function:handler`` of the trigger end-to-end tests.

It parses its event with Powertools' `KafkaEvent`, prints one line per invocation that the
tests read from the dev server's output, and raises for a batch holding the value ``poison``.
"""

from __future__ import annotations

import json
from typing import Any, Final

from aws_lambda_powertools.utilities.data_classes import KafkaEvent

MARKER: Final = "trigger-e2e-batch "
"""Prefix of the line printed per invocation, followed by the batch as JSON."""
POISON: Final = "poison"
"""A record value that makes the function raise."""


def handler(event: dict[str, Any], context: Any) -> None:
    """Print ``MARKER`` and ``{"topic", "records": [[partition, offset, value], ...]}``;
    raise if a value is `POISON`."""
    parsed = KafkaEvent(event)
    records = [[r.partition, r.offset, r.decoded_value.decode()] for r in parsed.records]
    topics = sorted({r.topic for r in parsed.records})
    # One write, newline included: print() writes the line and its end separately, and the
    # server's access log (same pipe) could land between them.
    line = MARKER + json.dumps({"topics": topics, "records": records}) + "\n"
    print(line, end="", flush=True)
    if any(value == POISON for _, _, value in records):
        raise ValueError("poison record")

"""The dispatcher's ports to the world outside lakelog's stores (ADR 0015).

`Invoker` calls a subscribed function: Lambda ``Invoke`` in AWS, an in-process call of a
``local:package.module:function`` in ``lakelog dev``. `QueueSender` puts a failed batch on
an SQS on-failure destination. Both are injected, so the delivery protocol is tested with
scripted functions and moto's SQS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["InvokeOutcome", "Invoker", "QueueSender"]


@dataclass(frozen=True, slots=True)
class InvokeOutcome:
    """What one invocation returned.

    ``error`` is None when the function returned normally (``payload`` is its parsed JSON
    result, e.g. ``{"batchItemFailures": [...]}``, or None); otherwise it names the failure
    (the function's error type and message, a timeout, a throttle) and the batch is retried.
    ``throttled``: the failure is Lambda refusing to run the function for want of
    concurrency (``TooManyRequestsException``); like Lambda's event source mappings, the
    dispatcher retries it without spending a retry attempt or splitting the batch.
    """

    payload: Any = None
    error: str | None = None
    throttled: bool = False

    @property
    def ok(self) -> bool:
        """The function returned normally."""
        return self.error is None


class Invoker(Protocol):
    """Calls a subscribed function with one event, synchronously."""

    def invoke(self, function_arn: str, event: Mapping[str, Any]) -> InvokeOutcome:
        """Invoke ``function_arn`` with ``event``; raise only for errors of the caller's own
        (a malformed ARN), never for the function's."""


class QueueSender(Protocol):
    """Sends one message to an SQS queue given by ARN."""

    def send(self, queue_arn: str, body: str) -> None:
        """Send ``body`` (at most 256 KiB) to the queue ``queue_arn``."""

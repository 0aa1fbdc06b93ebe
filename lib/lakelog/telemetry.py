"""Logs and metrics of lakelog's Lambda task handlers (the compactor's and the dispatcher's).

Each handler module names its service and the table of metrics it publishes (name to unit);
`Telemetry` holds the Powertools `Logger` and `Metrics` of one such module, publishes
metrics by name, and instruments a handler with both (log context, one EMF flush per
invocation).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

__all__ = ["NAMESPACE", "Handler", "Telemetry", "remaining_ms"]

NAMESPACE: Final = "lakelog"
"""The CloudWatch namespace of every lakelog metric (the dimension ``service`` tells them
apart)."""

Handler = Callable[[Mapping[str, Any], Any], dict[str, Any]]
"""A Lambda handler taking an event and a context, returning a JSON object."""


class Telemetry:
    """The logger and metrics of one service's handlers.

    Parameters
    ----------
    service
        The ``service`` of log lines and the metrics' dimension.
    units
        Every metric the service publishes, with its unit.
    """

    def __init__(self, service: str, units: Mapping[str, MetricUnit]) -> None:
        self.logger = Logger(service=service)
        self.metrics = Metrics(namespace=NAMESPACE, service=service)
        self._units = units

    def publish(self, **values: int) -> None:
        """Add each named metric (one of ``units``) with its value to this invocation's flush."""
        for name, value in values.items():
            self.metrics.add_metric(name=name, unit=self._units[name], value=value)

    def instrument(self, handler: Handler) -> Handler:
        """``handler`` with the Lambda context in its log lines and its metrics flushed."""
        wrapped: Handler = self.logger.inject_lambda_context(self.metrics.log_metrics(handler))
        return wrapped


def remaining_ms(context: Any) -> int | None:
    """Milliseconds left before the invocation's deadline (None: no Lambda context)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return None if remaining is None else int(remaining())

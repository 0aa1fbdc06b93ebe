"""Functions the ``local:`` invoker tests call (``local:tests.unit.local_functions:<name>``)."""

from __future__ import annotations

from typing import Any

CALLS: list[tuple[Any, Any]] = []
"""(event, context) of every call of `record`."""


def record(event: Any, context: Any) -> dict[str, Any]:
    """Remember the call; report the first record of the batch as failed."""
    CALLS.append((event, context))
    return {"batchItemFailures": [{"itemIdentifier": {"partition": "t-0", "offset": 3}}]}


def explode(event: Any, context: Any) -> None:
    """Fail like a handler with a bug."""
    raise KeyError("value")


def unmarshalable(event: Any, context: Any) -> object:
    """Return what JSON cannot hold."""
    return {"when": object()}


NOT_A_FUNCTION = 42

"""The handler's metrics and logs: records and bytes in and out, errors by code, latency,
and the request id as the correlation id of every log line."""

from __future__ import annotations

import io
import json
import logging
import warnings
from typing import Any

import pytest

from lakelog.api.handler import SERVICE
from tests.integration.api.conftest import Api, assert_error, load_event


def _emf_metrics(output: str) -> dict[str, float]:
    """Metric name -> summed value over the EMF documents Powertools printed."""
    totals: dict[str, float] = {}
    for line in output.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if not isinstance(document, dict) or "_aws" not in document:
            continue
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                name = metric["Name"]
                value: Any = document[name]
                values = value if isinstance(value, list) else [value]
                totals[name] = totals.get(name, 0.0) + float(sum(values))
    return totals


def test_produce_fetch_and_errors_emit_their_metrics(
    api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given metrics enabled (the suite disables them by default)
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "lakelog")
    assert api.send("create_topic").status == 201
    capsys.readouterr()

    # When records go in and out and one request fails
    assert api.send("produce").status == 200
    assert api.send("fetch").status == 200
    assert api.send("describe_topic_unknown").status == 404

    # Then each request flushed its metrics as EMF
    metrics = _emf_metrics(capsys.readouterr().out)
    assert metrics["RecordsIn"] > 0 and metrics["BytesIn"] > 0
    assert metrics["RecordsOut"] > 0 and metrics["BytesOut"] > 0
    assert metrics["Errors.topic_not_found"] == 1
    assert metrics["Latency"] > 0


def test_an_unexpected_error_is_500_and_logged_with_the_request_id(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an engine failure lakelog does not expect
    def broken() -> list[str]:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(api.engine.admin, "list_topics", broken)
    event = load_event("list_topics")
    (handler,) = [h for h in logging.getLogger(SERVICE).handlers if hasattr(h, "setStream")]
    lines = io.StringIO()
    monkeypatch.setattr(handler, "stream", lines)

    # When a request meets it
    reply = api.call(event)

    # Then the caller gets the error shape, and the log line names the request
    assert_error(reply, 500, "internal")
    logged = [json.loads(line) for line in lines.getvalue().splitlines()]
    errors = [line for line in logged if line["level"] == "ERROR"]
    assert errors, "the unexpected error was logged"
    assert errors[0]["correlation_id"] == event["requestContext"]["requestId"]
    assert "disk on fire" in errors[0]["exception"]


def test_no_powertools_warning_per_request_when_metrics_are_disabled(api: Api) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # handler.py clears the disabled metrics before log_metrics flushes them
        assert api.send("list_topics").status == 200

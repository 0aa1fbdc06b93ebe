"""End-to-end fixtures: ``lakelog dev`` as a subprocess, driven over real HTTP.

`lakelog.local.process.DevProcess` starts ``python -m lakelog.cli dev --port 0`` and reads
its banner (API URL, S3 endpoint, bucket). The module-scoped ``dev_server`` fixture starts
one per test module; tests use unique topic names so they do not interfere.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from lakelog.local.process import DevProcess, start_dev
from tests.support import emulated_client

__all__ = ["REPO", "DevProcess", "start_dev"]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dev_server() -> Iterator[DevProcess]:
    """One ``lakelog dev`` per test module; it must stop cleanly on Ctrl-C afterwards."""
    with start_dev() as dev:
        yield dev
    assert dev.exit_code == 0, dev.output


@pytest.fixture(scope="module")
def api(dev_server: DevProcess) -> Iterator[httpx.Client]:
    """An HTTP client on the dev server's API."""
    with httpx.Client(base_url=dev_server.api_url, timeout=30.0) as client:
        yield client


@pytest.fixture(scope="module")
def s3(dev_server: DevProcess) -> Any:
    """A boto3 S3 client on the S3 endpoint the dev server printed (fake credentials)."""
    return emulated_client("s3", dev_server.s3_endpoint_url)


def create_topic(
    api: httpx.Client, name: str, partitions: int = 1, config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Create a topic and return its description (fails the test unless 201)."""
    body: dict[str, Any] = {"name": name, "partitions": partitions}
    if config is not None:
        body["config"] = config
    reply = api.post("/v1/topics", json=body)
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def produce(api: httpx.Client, topic: str, records: Sequence[dict[str, Any]]) -> list[Any]:
    """Append ``records`` and return the results (fails the test unless 200)."""
    reply = api.post(f"/v1/topics/{topic}/records", json={"records": list(records)})
    assert reply.status_code == 200, reply.text
    return list(reply.json()["results"])

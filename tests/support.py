"""Helpers every test directory shares: threads started together, clients of an emulated
AWS endpoint, names no other test uses. Fixtures built on them live in tests/conftest.py."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config

REGION = "us-east-1"


def run_in_threads(count: int, work: Callable[[int], None]) -> None:
    """Run ``work(i)`` for each i in ``count`` threads released together by one barrier.

    Waits for every thread and fails the test with the errors any of them raised.
    """
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            work(index)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def emulated_client(service: str, endpoint_url: str) -> Any:
    """A boto3 client of ``service`` at an emulated endpoint (moto), with fake credentials."""
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"}),
    )


def unique_topic_name(test_name: str) -> str:
    """A valid topic name made from a test's name, which no other test uses."""
    base = re.sub(r"[^a-zA-Z0-9]+", "-", test_name)[:60].strip("-")
    return f"{base}-{uuid.uuid4().hex[:8]}"

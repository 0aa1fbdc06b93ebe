"""End-to-end fixtures: ``lakelog dev`` as a subprocess, driven over real HTTP.

`DevProcess` starts ``python -m lakelog.cli dev --port 0``, reads the banner it prints to
learn the API URL, the S3 endpoint and the bucket, and keeps draining its output (so the
access log can never fill the pipe and block the server). The module-scoped ``dev_server``
fixture starts one per test module; tests use unique topic names so they do not interfere.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
_BANNER = {
    "api_url": re.compile(r"^\s*API\s+(http://\S+)\s*$"),
    "docs_url": re.compile(r"^\s*Docs\s+(http://\S+)\s*$"),
    "s3_endpoint_url": re.compile(r"^\s*S3 endpoint\s+(http://\S+)\s*$"),
    "bucket": re.compile(r"^\s*Bucket\s+(\S+)\s*$"),
}


class DevProcess:
    """One ``lakelog dev`` subprocess and what its banner said."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("AWS_ENDPOINT_URL", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lakelog.cli", "dev", *args],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.info: dict[str, str] = {}
        self._ready = threading.Event()
        self._drain = threading.Thread(target=self._read, daemon=True)
        self._drain.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            for name, pattern in _BANNER.items():
                match = pattern.match(line)
                if match:
                    self.info[name] = match.group(1)
            if len(self.info) == len(_BANNER):
                self._ready.set()
        self._ready.set()  # the process ended: stop waiting

    @property
    def output(self) -> str:
        """Everything the process printed so far."""
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> DevProcess:
        """Wait until the banner is printed; fail with the output if it never is."""
        if not self._ready.wait(timeout) or len(self.info) < len(_BANNER):
            self.kill()
            pytest.fail(f"lakelog dev did not start:\n{self.output}")
        return self

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        """The exit code, once the process has ended and its output is read."""
        code = self.process.wait(timeout)
        self._drain.join(timeout)
        return code

    def interrupt(self, sig: signal.Signals = signal.SIGINT) -> None:
        """Send ``sig`` (Ctrl-C by default)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def kill(self) -> None:
        """Make sure the process is gone (teardown of a failed test)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(STOP_TIMEOUT)
        self._drain.join(STOP_TIMEOUT)

    @property
    def api_url(self) -> str:
        return self.info["api_url"]

    @property
    def s3_endpoint_url(self) -> str:
        return self.info["s3_endpoint_url"]

    @property
    def bucket(self) -> str:
        return self.info["bucket"]


def start_dev(*args: str) -> DevProcess:
    """``lakelog dev --port 0 ARGS`` started and ready."""
    return DevProcess("--port", "0", *args).wait_ready()


@pytest.fixture(scope="module")
def dev_server() -> Iterator[DevProcess]:
    """One ``lakelog dev`` per test module; it must stop cleanly on Ctrl-C afterwards."""
    dev = start_dev()
    try:
        yield dev
    finally:
        dev.interrupt()
        try:
            code = dev.wait_exit()
        finally:
            dev.kill()
    assert code == 0, dev.output


@pytest.fixture(scope="module")
def api(dev_server: DevProcess) -> Iterator[httpx.Client]:
    """An HTTP client on the dev server's API."""
    with httpx.Client(base_url=dev_server.api_url, timeout=30.0) as client:
        yield client


@pytest.fixture(scope="module")
def s3(dev_server: DevProcess) -> Any:
    """A boto3 S3 client on the S3 endpoint the dev server printed (fake credentials)."""
    return boto3.client(
        "s3",
        endpoint_url=dev_server.s3_endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    """A topic name no other test uses."""
    base = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name)[:80]
    return f"{base}-{uuid.uuid4().hex[:8]}"


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

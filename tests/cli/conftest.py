"""CLI fixtures: one ``lakelog dev`` per test session (per xdist worker), and ``run``.

Every test drives ``python -m lakelog.cli`` as a subprocess against that server, the way a
user would, and reads its exit status, stdout and stderr. Tests use unique topic and group
names, so they share the server without interfering.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

import pytest

from lakelog.client import Client
from tests.e2e.conftest import REPO, DevProcess, start_dev

RUN_TIMEOUT = 60.0


class Run(Protocol):
    """``run("topic", "list")`` runs ``lakelog --endpoint <dev server> topic list``."""

    def __call__(
        self,
        *args: str,
        input: str | bytes | None = None,
        endpoint: str | None = ...,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]: ...


@pytest.fixture(scope="session")
def dev_server() -> Iterator[DevProcess]:
    """One ``lakelog dev`` for the session; it must stop cleanly on Ctrl-C afterwards."""
    with start_dev("--quiet") as dev:
        yield dev
    assert dev.exit_code == 0, dev.output


@pytest.fixture(scope="session")
def endpoint(dev_server: DevProcess) -> str:
    return dev_server.api_url


@pytest.fixture(scope="session")
def client(endpoint: str) -> Iterator[Client]:
    """The SDK on the dev server, for setting up what the CLI cannot (timestamps, bytes)."""
    with Client(endpoint) as sdk:
        yield sdk


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a CLI subprocess: this one without LAKELOG_ENDPOINT, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "LAKELOG_ENDPOINT"}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def cli_command(*args: str, endpoint: str | None) -> list[str]:
    prefix = [] if endpoint is None else ["--endpoint", endpoint]
    return [sys.executable, "-m", "lakelog.cli", *prefix, *args]


@pytest.fixture(scope="session")
def run(endpoint: str) -> Run:
    """Run the CLI to completion against the dev server (or ``endpoint=``; None: no flag)."""
    default = endpoint

    def run(
        *args: str,
        input: str | bytes | None = None,
        endpoint: str | None = default,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        data = input.encode() if isinstance(input, str) else input
        done = subprocess.run(
            cli_command(*args, endpoint=endpoint),
            cwd=REPO,
            env=cli_env(env),
            input=data if data is not None else b"",
            capture_output=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        return subprocess.CompletedProcess(
            done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
        )

    return run


@pytest.fixture
def unique() -> Callable[[str], str]:
    """``unique("orders")`` -> ``orders-1a2b3c4d``: a name no other test uses."""
    return lambda base: f"{base}-{uuid.uuid4().hex[:8]}"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one line a failed command printed on stderr (fails if there is more or a traceback)."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, done.stderr
    return lines[0]

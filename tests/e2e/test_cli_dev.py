"""``lakelog dev`` as a command: start-up errors, Ctrl-C and SIGTERM, and `LocalService`
run in-process (each test here starts its own server, so they are not module-scoped).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest

from lakelog.local.server import LocalService
from tests.e2e.conftest import REPO, start_dev

DAY_MS = 24 * 3600 * 1000
EXIT_BACKSTOP_SECONDS = 60.0
"""Longest wait for the server to exit; only a server that hangs reaches it."""


def refuses_connections(url: str) -> bool:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=1):
            return False
    except OSError:
        return True


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_stop_the_server_with_exit_code_0(sig: signal.Signals) -> None:
    # Given a running dev server that has served a request
    dev = start_dev("--quiet")
    try:
        assert httpx.get(f"{dev.api_url}/v1/topics", timeout=10).status_code == 200

        # When it gets the signal
        dev.interrupt(sig)
        code = dev.wait_exit(timeout=EXIT_BACKSTOP_SECONDS)
    finally:
        dev.kill()

    # Then it stops cleanly, saying so, and neither the API nor moto is left listening
    assert code == 0, dev.output
    assert "lakelog dev: stopped" in dev.output
    assert "Traceback" not in dev.output
    assert refuses_connections(dev.api_url)
    assert refuses_connections(dev.s3_endpoint_url)


def test_port_in_use_is_a_one_line_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = subprocess.run(
            [sys.executable, "-m", "lakelog.cli", "dev", "--port", str(port)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"cannot serve on 127.0.0.1:{port}" in result.stderr
    assert "--port" in result.stderr


def test_missing_moto_is_a_one_line_error() -> None:
    # Given an interpreter where moto cannot be imported
    program = (
        "import sys\n"
        "sys.modules['moto'] = None\n"
        "from lakelog.cli import main\n"
        "sys.argv = ['lakelog', 'dev', '--port', '0']\n"
        "main()\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "needs moto[server]" in result.stderr
    assert "pip install 'lakelog[local]'" in result.stderr


def test_help_lists_the_dev_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lakelog.cli", "dev", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    for option in (
        "--port",
        "--host",
        "--principal",
        "--default-acl",
        "--compact-every",
        "--kafka-port",
        "--no-kafka",
    ):
        assert option in result.stdout


# LocalService in-process -------------------------------------------------------------------

# The handler clears disabled metrics before Powertools flushes them, which then warns.
in_process = pytest.mark.filterwarnings("ignore:No application metrics:UserWarning")


@in_process
def test_local_service_serves_in_process_and_frees_its_ports() -> None:
    with LocalService(port=0) as service:
        api_url, s3_url = service.api_url, service.s3_endpoint_url
        created = httpx.post(
            f"{api_url}/v1/topics", json={"name": "in-process", "partitions": 2}, timeout=30
        )
        assert created.status_code == 201, created.text
        assert service.bucket == "lakelog-local-segments"
        assert service.docs_url == f"{api_url}/v1/docs"

    assert not service.running
    assert refuses_connections(api_url)
    assert refuses_connections(s3_url)


@in_process
def test_the_dev_server_runs_compactor_passes_on_its_schedule() -> None:
    # Given a dev server passing every 50 ms and a topic keeping a day, one batch expired
    now_ms = int(time.time() * 1000)
    with LocalService(port=0, compact_every=0.05) as service:
        topics = f"{service.api_url}/v1/topics"
        created = httpx.post(
            topics, json={"name": "kept-a-day", "config": {"retention_ms": DAY_MS}}, timeout=30
        )
        assert created.status_code == 201, created.text
        for timestamp in (now_ms - 3 * DAY_MS, now_ms):
            record = {"value": {"type": "STRING", "data": "v"}, "timestamp_ms": timestamp}
            # (an explicit timeout, as every request here: httpx's 5 s default is a
            # threshold a loaded machine can exceed while passes run every 50 ms)
            records = f"{topics}/kept-a-day/records"
            sent = httpx.post(records, json={"records": [record]}, timeout=30)
            assert sent.status_code == 200, sent.text

        # When passes run in the background (waiting on the outcome, with a backstop)
        deadline = time.monotonic() + EXIT_BACKSTOP_SECONDS
        while (start := _log_start(topics)) == 0 and time.monotonic() < deadline:
            threading.Event().wait(0.05)

        # Then the expired batch went without anyone asking
        assert start == 1
        assert service.compactor is not None and service.compactor.passes >= 1


def _log_start(topics: str) -> int:
    described = httpx.get(f"{topics}/kept-a-day", timeout=30).json()
    start: int = described["partitions"][0]["log_start_offset"]
    return start


@in_process
def test_without_a_principal_requests_are_401_unauthorized() -> None:
    with LocalService(port=0, principal=None) as service:
        reply = httpx.get(f"{service.api_url}/v1/topics", timeout=30)

    assert reply.status_code == 401
    assert reply.json()["error"] == "unauthorized"


@in_process
def test_default_acl_deny_forbids_without_a_matching_rule() -> None:
    with LocalService(port=0, default_acl="deny") as service:
        reply = httpx.post(f"{service.api_url}/v1/topics", json={"name": "denied"}, timeout=30)

    assert reply.status_code == 403
    assert reply.json()["error"] == "forbidden"

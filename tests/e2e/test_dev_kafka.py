"""``lakelog dev`` serves the Kafka protocol beside the HTTP API, over the same storage:
a Kafka client finds the topics created over HTTP at the bootstrap address the banner
prints; ``--kafka-port`` moves it, ``--no-kafka`` turns it off."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
from confluent_kafka.admin import AdminClient

from lakelog.local.process import DevProcess
from lakelog.local.server import LocalService
from tests.e2e.conftest import create_topic

LAKELOG = Path(sys.executable).parent / "lakelog"
EXIT_BACKSTOP_SECONDS = 60.0
PICKS = 5
"""Free ports tried for ``--kafka-port`` before giving up."""


def lakelog_dev(*args: str) -> DevProcess:
    """``lakelog dev`` run as a user does (the console script), ready."""
    return DevProcess("--port", "0", "--quiet", *args, command=[str(LAKELOG)]).wait_ready()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def lakelog_dev_on_a_free_kafka_port() -> tuple[DevProcess, int]:
    """``lakelog dev --kafka-port N``, ready, and N: a port found free, or another one when
    something took it before the server bound it (other processes bind free ports too)."""
    for _ in range(PICKS):
        port = free_port()
        try:
            return lakelog_dev("--kafka-port", str(port)), port
        except RuntimeError as exc:  # it did not start: the port was taken meanwhile?
            if "cannot serve the Kafka protocol" not in str(exc):
                raise
    raise AssertionError(f"{PICKS} ports found free were all taken before lakelog dev bound them")


def test_a_kafka_client_lists_the_topics_created_over_http_at_the_printed_address() -> None:
    name = f"kafka-{uuid.uuid4().hex[:8]}"
    with lakelog_dev("--kafka-port", "0") as dev:
        # Given topics created over HTTP
        with httpx.Client(base_url=dev.api_url, timeout=30.0) as api:
            create_topic(api, name, partitions=3)
            create_topic(api, f"{name}-other")

        # When librdkafka asks the printed bootstrap address for the cluster's metadata
        bootstrap = dev.kafka_bootstrap
        assert bootstrap is not None and bootstrap.startswith("127.0.0.1:")
        metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)

        # Then it sees them, every partition led by the gateway at that address
        assert {name, f"{name}-other"} <= set(metadata.topics)
        assert sorted(metadata.topics[name].partitions) == [0, 1, 2]
        [broker] = metadata.brokers.values()
        assert f"{broker.host}:{broker.port}" == bootstrap
    assert dev.exit_code == 0, dev.output
    assert "Traceback" not in dev.output


def test_kafka_port_moves_the_protocol_and_no_kafka_turns_it_off() -> None:
    dev, port = lakelog_dev_on_a_free_kafka_port()
    with dev as moved:
        assert moved.kafka_bootstrap == f"127.0.0.1:{port}"
        assert AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=10)
    assert moved.exit_code == 0, moved.output
    assert refuses_connections(port)

    with lakelog_dev("--no-kafka") as off:
        assert off.kafka_bootstrap is None
        assert ["Kafka", "off", "(--no-kafka)"] in [line.split() for line in off.lines]
    assert off.exit_code == 0, off.output


def test_a_kafka_port_in_use_is_a_one_line_error_naming_the_flags() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = subprocess.run(
            [str(LAKELOG), "dev", "--port", "0", "--kafka-port", str(port)],
            capture_output=True,
            text=True,
            timeout=EXIT_BACKSTOP_SECONDS,
            check=False,
        )

    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert f"cannot serve the Kafka protocol on 127.0.0.1:{port}" in line
    assert "--kafka-port" in line
    assert "--no-kafka" in line


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def test_without_a_principal_kafka_connections_must_authenticate() -> None:
    # As the API answers 401 to requests without a caller, the gateway asks for SASL
    with LocalService(port=0, kafka_port=0, principal=None, prefix="lakelog-nocaller") as dev:
        gateway = dev.kafka_gateway
        assert gateway is not None
        assert gateway.config.sasl is True

    with LocalService(port=0, prefix="lakelog-nokafka") as off:
        assert off.kafka_gateway is None
        assert off.kafka_bootstrap is None


def test_with_a_principal_sasl_is_optional_and_any_password_names_the_caller() -> None:
    # Given the default principal, and a rule that denies mallory everything on payroll
    with LocalService(port=0, kafka_port=0, prefix="lakelog-anypass") as dev:
        assert dev.kafka_bootstrap is not None
        with httpx.Client(base_url=dev.api_url, timeout=30.0) as api:
            create_topic(api, "orders")
            create_topic(api, "payroll")
            rule = {
                "principal": "mallory",
                "topic": "payroll",
                "operations": ["produce", "consume", "admin"],
                "effect": "deny",
            }
            assert api.put("/v1/acls", json=rule).status_code in (200, 201, 204)

        # When a client without SASL and one with SASL/PLAIN (any password) ask for metadata
        plain = AdminClient({"bootstrap.servers": dev.kafka_bootstrap})
        mallory = AdminClient(
            {
                "bootstrap.servers": dev.kafka_bootstrap,
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "PLAIN",
                "sasl.username": "mallory",
                "sasl.password": "anything",
            }
        )

        # Then the first is the default principal, the second is mallory (ADR 0016 §7)
        assert {"orders", "payroll"} <= set(plain.list_topics(timeout=10).topics)
        assert set(mallory.list_topics(timeout=10).topics) == {"orders"}

"""``lakelog kafka`` as a user runs it: the deployment from the environment (here moto's
S3 and DynamoDB), JSON log lines, a real Kafka client, and a clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from kio.schema.errors import ErrorCode
from kio.schema.sasl_handshake.v1.request import SaslHandshakeRequest
from moto.server import ThreadedMotoServer

from lakelog.local import serialize_moto_dynamodb
from lakelog.local.process import DevProcess
from lakelog.service.engine import Engine
from lakelog.storage.keys import ResourceNames
from lakelog.storage.resources import create_resources
from tests.gateway.wire import Wire
from tests.support import emulated_client

LAKELOG = Path(sys.executable).parent / "lakelog"
NAMES = ResourceNames.for_prefix("lakelog-gateway")
EXIT_BACKSTOP_SECONDS = 60.0


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """moto's S3 and DynamoDB on a free port, with the deployment's bucket and tables."""
    serialize_moto_dynamodb()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    create_resources(emulated_client("s3", url), emulated_client("dynamodb", url), NAMES)
    yield url
    server.stop()


def deployment(moto_url: str) -> dict[str, str]:
    """The environment a deployed gateway gets (plus moto's endpoint and fake keys)."""
    return {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "LAKELOG_BUCKET": NAMES.bucket,
        "LAKELOG_LEDGER_TABLE": NAMES.ledger_table,
        "LAKELOG_CATALOG_TABLE": NAMES.catalog_table,
        "LAKELOG_DEFAULT_ACL_EFFECT": "allow",
    }


def log_lines(process: DevProcess) -> list[dict[str, object]]:
    return [json.loads(line) for line in process.lines if line.startswith("{")]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_serves_the_deployments_topics_to_a_kafka_client_and_stops_on_a_signal(
    moto_url: str, sig: signal.Signals
) -> None:
    # Given a topic of the deployment
    topic = f"gateway-cli-{sig.name.lower()}"
    engine = Engine.from_clients(
        emulated_client("s3", moto_url), emulated_client("dynamodb", moto_url), NAMES
    )
    engine.create_topic(topic, 2)
    engine.close()

    # When lakelog kafka serves it, advertising another address than it binds
    gateway = DevProcess(
        "--port",
        "0",
        "--advertised-host",
        "localhost",
        subcommand="kafka",
        command=[str(LAKELOG)],
        env=deployment(moto_url),
    )
    try:
        started = json.loads(gateway.wait_for_line(lambda line: '"bootstrap"' in line))
        bootstrap = str(started["bootstrap"])
        metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
        gateway.interrupt(sig)
        code = gateway.wait_exit(EXIT_BACKSTOP_SECONDS)
    finally:
        gateway.kill()

    # Then a Kafka client sees it through the advertised address, and the gateway logs JSON
    # lines only and stops with status 0
    assert bootstrap.startswith("localhost:")
    assert started["message"] == "serving the Kafka protocol"
    assert started["service"] == "lakelog-kafka"
    assert started["listening"] == f"127.0.0.1:{bootstrap.split(':')[1]}"
    assert len(metadata.topics[topic].partitions) == 2
    assert code == 0, gateway.output
    assert [line["message"] for line in log_lines(gateway)][-2:] == [
        "stopping: closing every connection",
        "stopped",
    ]
    assert all(line.startswith("{") for line in gateway.lines), gateway.output


def test_a_missing_deployment_variable_is_a_one_line_error_naming_it() -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LAKELOG_")}
    environ["LAKELOG_DEFAULT_ACL_EFFECT"] = "maybe"

    result = subprocess.run(
        [str(LAKELOG), "kafka", "--port", "0"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: invalid_configuration: invalid Kafka gateway environment: ")
    for variable in (
        "LAKELOG_BUCKET",
        "LAKELOG_LEDGER_TABLE",
        "LAKELOG_CATALOG_TABLE",
        "LAKELOG_DEFAULT_ACL_EFFECT",
    ):
        assert variable in line


def test_help_lists_the_kafka_options() -> None:
    result = subprocess.run(
        [str(LAKELOG), "kafka", "--help"], capture_output=True, text=True, timeout=60, check=True
    )

    for option in (
        "--port",
        "--host",
        "--advertised-host",
        "--advertised-port",
        "--sasl",
        "--append-linger-ms",
    ):
        assert option in result.stdout
    assert "LAKELOG_KAFKA_ADVERTISED_HOST" in result.stdout


def test_with_sasl_it_offers_oauthbearer_signed_for_its_environment(moto_url: str) -> None:
    # Given the gateway of a deployment whose connections must authenticate (as the
    # Fargate task runs it)
    gateway = DevProcess(
        "--port",
        "0",
        "--sasl",
        subcommand="kafka",
        command=[str(LAKELOG)],
        env={**deployment(moto_url), "LAKELOG_ENVIRONMENT": "staging"},
    )
    try:
        started = json.loads(gateway.wait_for_line(lambda line: '"bootstrap"' in line))
        # When a client asks which mechanisms it offers
        wire = Wire(str(started["bootstrap"]))
        try:
            answer = wire.call(SaslHandshakeRequest(mechanism="PLAIN"))
        finally:
            wire.close()
        gateway.interrupt(signal.SIGTERM)
        code = gateway.wait_exit(EXIT_BACKSTOP_SECONDS)
    finally:
        gateway.kill()

    # Then it offers OAUTHBEARER (STS-signed tokens), and says for which audience
    assert answer.error_code == ErrorCode.unsupported_sasl_mechanism
    assert list(answer.mechanisms) == ["OAUTHBEARER"]
    assert started["sasl"] is True
    assert started["audience"] == "staging"
    assert started["append_linger_ms"] == 250
    assert code == 0, gateway.output

"""Fixtures of the Kafka gateway's tests: a gateway on the test's engine, on its own thread.

Real clients (librdkafka through confluent-kafka, kafka-python, aiokafka) connect to it
over loopback TCP, as they would to ``lakelog dev`` or a deployed gateway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from lakelog.api import ApiSettings, make_handler
from lakelog.kafka import GatewayConfig, KafkaGateway
from lakelog.kafka.apis import Api
from lakelog.kafka.server import RunningGateway
from lakelog.service.engine import Engine
from lakelog.storage.keys import ResourceNames
from tests.integration.api.conftest import Api as HttpApi

StartGateway = Callable[..., RunningGateway]


@pytest.fixture
def start_gateway(engine: Engine) -> Iterator[StartGateway]:
    """Start gateways (on ``engine`` unless another is given; any free port; ACLs allow
    all unless ``access`` is given; OAUTHBEARER verified by ``identity`` if given; every
    served API unless ``apis`` is given); each is stopped when the test ends."""
    running: list[RunningGateway] = []

    def start(
        on: Engine | None = None,
        access: Any = None,
        identity: Any = None,
        apis: Mapping[int, Api] | None = None,
        **config: Any,
    ) -> RunningGateway:
        served = on or engine
        config.setdefault("port", 0)
        gateway = KafkaGateway(
            served,
            access or served.access_control("allow"),
            GatewayConfig(**config),
            apis,
            identity=identity,
        )
        started = RunningGateway(gateway)
        running.append(started)
        return started

    yield start
    for gateway in running:
        gateway.stop()


@pytest.fixture
def gateway(start_gateway: StartGateway) -> RunningGateway:
    """One gateway on the test's engine."""
    return start_gateway()


@pytest.fixture
def http_api(engine: Engine, resources: ResourceNames, monkeypatch: pytest.MonkeyPatch) -> HttpApi:
    """The HTTP API's handler (one warm function) on the test's engine, on moto: what the
    gateway serves over Kafka, the same records and groups over HTTP."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    settings = ApiSettings(
        bucket=resources.bucket,
        ledger_table=resources.ledger_table,
        catalog_table=resources.catalog_table,
        default_acl="allow",
        env="test",
    )
    return HttpApi(make_handler(settings, engine=engine), engine)

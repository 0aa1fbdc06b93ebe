"""SASL through real clients and raw frames: PLAIN against a password map (and any password
in ``lakelog dev``), OAUTHBEARER carrying a presigned STS GetCallerIdentity request, and the
protocol's answers to every refusal (ADR 0016 §7)."""

from __future__ import annotations

import asyncio
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import aiokafka
import boto3
import confluent_kafka
import kafka
import kafka.net.sasl.oauth
import pytest
from confluent_kafka.admin import AdminClient
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.describe_log_dirs.v1.request import DescribeLogDirsRequest
from kio.schema.errors import ErrorCode
from kio.schema.sasl_authenticate.v2.request import SaslAuthenticateRequest
from kio.schema.sasl_handshake.v1.request import SaslHandshakeRequest

from lakelog.client.kafka_auth import oauth_callback, sts_token
from lakelog.kafka import GatewayConfig, KafkaGateway
from lakelog.kafka.sts import AuthenticationError, PresignedRequest
from lakelog.service.acl import AccessControl, AclEntry
from lakelog.service.engine import Engine
from tests.gateway.conftest import StartGateway
from tests.gateway.wire import METADATA, Wire

USERS = {"alice": "alice-secret", "bob": "bob-secret"}
AUDIENCE = "dev"
DEADLINE = 10.0


def _access(engine: Engine, *rules: tuple[str, str, str]) -> AccessControl:
    """Deny by default; allow each ``(principal, topic, operation)``."""
    access = engine.access_control("deny")
    for principal, topic, operation in rules:
        access.add(AclEntry(principal, topic, "allow", frozenset({operation})))
    return access


def _plain(bootstrap: str, user: str, password: str, **more: Any) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "PLAIN",
        "sasl.username": user,
        "sasl.password": password,
        **more,
    }


def _authentication_failure(config: dict[str, Any]) -> str:
    """The message of the authentication error librdkafka reports with ``config`` (its
    client connects at once; polling serves its error callback)."""
    failed = threading.Event()
    reasons: list[str] = []

    def on_error(error: confluent_kafka.KafkaError) -> None:
        if error.code() == confluent_kafka.KafkaError._AUTHENTICATION:
            reasons.append(error.str())
            failed.set()

    admin = AdminClient({**config, "error_cb": on_error})
    deadline = time.monotonic() + DEADLINE
    while not failed.is_set() and time.monotonic() < deadline:
        admin.poll(0.05)
    assert reasons, "librdkafka reported no authentication error"
    return reasons[0]


# PLAIN ----------------------------------------------------------------------------------
def test_librdkafka_authenticates_with_plain_and_sees_what_acls_allow(
    engine: Engine, start_gateway: StartGateway
) -> None:
    engine.create_topic("orders", 1)
    engine.create_topic("payroll", 1)
    access = _access(engine, ("alice", "orders", "consume"))
    gateway = start_gateway(access=access, sasl=True, users=USERS)
    admin = AdminClient(_plain(gateway.bootstrap, "alice", "alice-secret"))
    assert set(admin.list_topics(timeout=DEADLINE).topics) == {"orders"}


def test_librdkafka_with_a_wrong_password_fails_authentication(
    start_gateway: StartGateway,
) -> None:
    gateway = start_gateway(sasl=True, users=USERS)
    reason = _authentication_failure(_plain(gateway.bootstrap, "alice", "guess"))
    assert "invalid username or password" in reason


def test_kafka_python_authenticates_with_plain(engine: Engine, start_gateway: StartGateway) -> None:
    engine.create_topic("orders", 1)
    engine.create_topic("payroll", 1)
    gateway = start_gateway(
        access=_access(engine, ("bob", "payroll", "produce")), sasl=True, users=USERS
    )
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=gateway.bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_plain_username="bob",
        sasl_plain_password="bob-secret",
    )
    try:
        assert consumer.topics() == {"payroll"}
    finally:
        consumer.close()


def test_any_password_trusts_the_username_in_dev(
    engine: Engine, start_gateway: StartGateway
) -> None:
    engine.create_topic("orders", 1)
    engine.create_topic("payroll", 1)
    access = _access(engine, ("dana", "payroll", "consume"))
    gateway = start_gateway(access=access, any_password=True)
    admin = AdminClient(_plain(gateway.bootstrap, "dana", "anything"))
    assert set(admin.list_topics(timeout=DEADLINE).topics) == {"payroll"}


# Refusals on the wire -------------------------------------------------------------------
def _handshake(wire: Wire, mechanism: str) -> Any:
    return wire.call(SaslHandshakeRequest(mechanism=mechanism))


def _authenticate(wire: Wire, auth_bytes: bytes) -> Any:
    return wire.call(SaslAuthenticateRequest(auth_bytes=auth_bytes), correlation_id=2)


@pytest.fixture
def secured(start_gateway: StartGateway) -> Iterator[Wire]:
    gateway = start_gateway(sasl=True, users=USERS)
    wire = Wire(gateway.bootstrap)
    yield wire
    wire.close()


def test_a_request_before_authentication_closes_the_connection(secured: Wire) -> None:
    secured.request(METADATA)
    assert secured.closed()


def test_an_unserved_api_before_authentication_closes_the_connection(secured: Wire) -> None:
    # Before authentication only ApiVersions and SASL are answered, whatever the API.
    secured.request(DescribeLogDirsRequest(topics=None))
    assert secured.closed()


def test_api_versions_is_answered_before_authentication(secured: Wire) -> None:
    versions = secured.call(
        ApiVersionsRequest(client_software_name="w", client_software_version="1")
    )
    assert {17, 36} <= {key.api_key for key in versions.api_keys}


def test_plain_authenticates_then_serves(secured: Wire) -> None:
    assert _handshake(secured, "PLAIN").mechanisms == ("PLAIN",)
    answer = _authenticate(secured, b"\0alice\0alice-secret")
    assert answer.error_code == ErrorCode.none
    metadata = secured.call(METADATA, 3)
    assert metadata.topics == ()


@pytest.mark.parametrize(
    "credentials",
    [b"\0alice\0wrong", b"\0mallory\0alice-secret", b"bob\0alice\0alice-secret", b"alice"],
    ids=["wrong-password", "unknown-user", "other-authzid", "not-plain"],
)
def test_refused_plain_credentials_fail_and_close(secured: Wire, credentials: bytes) -> None:
    _handshake(secured, "PLAIN")
    answer = _authenticate(secured, credentials)
    assert answer.error_code == ErrorCode.sasl_authentication_failed
    assert answer.error_message
    assert secured.closed()


def test_a_mechanism_not_offered_is_unsupported_and_closes(secured: Wire) -> None:
    answer = _handshake(secured, "SCRAM-SHA-512")
    assert answer.error_code == ErrorCode.unsupported_sasl_mechanism
    assert answer.mechanisms == ("PLAIN",)
    assert secured.closed()


def test_authenticate_without_a_handshake_is_an_illegal_state(secured: Wire) -> None:
    answer = _authenticate(secured, b"\0alice\0alice-secret")
    assert answer.error_code == ErrorCode.illegal_sasl_state
    assert secured.closed()


def test_a_re_authentication_keeps_the_principal(secured: Wire) -> None:
    _handshake(secured, "PLAIN")
    assert _authenticate(secured, b"\0alice\0alice-secret").error_code == ErrorCode.none
    _handshake(secured, "PLAIN")
    assert _authenticate(secured, b"\0alice\0alice-secret").error_code == ErrorCode.none
    _handshake(secured, "PLAIN")
    answer = _authenticate(secured, b"\0bob\0bob-secret")
    assert answer.error_code == ErrorCode.sasl_authentication_failed
    assert secured.closed()


# OAUTHBEARER with STS -------------------------------------------------------------------
class MotoCallerIdentity:
    """Runs the presigned request on moto's STS (in-process): the identity of the access
    key that signed it. moto checks no signature; `ScriptedCallerIdentity` refuses."""

    def __init__(self) -> None:
        self.requests: list[PresignedRequest] = []
        self._clients: dict[str, Any] = {}

    def caller_arn(self, request: PresignedRequest) -> str:
        self.requests.append(request)
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.url).query))
        access_key = query["X-Amz-Credential"].split("/")[0]
        if access_key not in self._clients:  # a client takes a second to make
            self._clients[access_key] = boto3.client(
                "sts",
                aws_access_key_id=access_key,
                aws_secret_access_key="unused",
                region_name="us-east-1",
            )
        return str(self._clients[access_key].get_caller_identity()["Arn"])


class ScriptedCallerIdentity:
    """STS refusing every signature."""

    def caller_arn(self, request: PresignedRequest) -> str:
        raise AuthenticationError("STS refused the token (HTTP 403)")


@pytest.fixture
def iam_user(aws: None) -> Callable[[str], tuple[str, boto3.Session]]:
    """An IAM user on moto: its ARN and a session with its access key."""

    def make(name: str) -> tuple[str, boto3.Session]:
        iam = boto3.client("iam", region_name="us-east-1")
        arn = iam.create_user(UserName=name)["User"]["Arn"]
        key = iam.create_access_key(UserName=name)["AccessKey"]
        session = boto3.Session(
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
            region_name="us-east-1",
        )
        return arn, session

    return make


def _oauth(bootstrap: str, session: boto3.Session) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "OAUTHBEARER",
        "oauth_cb": oauth_callback(AUDIENCE, session=session),
    }


def test_librdkafka_authenticates_as_its_iam_identity(
    engine: Engine,
    start_gateway: StartGateway,
    iam_user: Callable[[str], tuple[str, boto3.Session]],
) -> None:
    engine.create_topic("orders", 1)
    engine.create_topic("payroll", 1)
    arn, session = iam_user("carol")
    verifier = MotoCallerIdentity()
    access = _access(engine, (arn, "orders", "consume"))
    gateway = start_gateway(access=access, identity=verifier, sasl=True, audience=AUDIENCE)
    admin = AdminClient(_oauth(gateway.bootstrap, session))
    assert set(admin.list_topics(timeout=DEADLINE).topics) == {"orders"}
    assert {dict(r.headers)["x-lakelog-audience"] for r in verifier.requests} == {AUDIENCE}
    assert all(r.url.startswith("https://sts.us-east-1.amazonaws.com/?") for r in verifier.requests)


def test_a_token_sts_refuses_fails_authentication(
    start_gateway: StartGateway, iam_user: Callable[[str], tuple[str, boto3.Session]]
) -> None:
    _, session = iam_user("carol")
    gateway = start_gateway(identity=ScriptedCallerIdentity(), sasl=True, audience=AUDIENCE)
    reason = _authentication_failure(_oauth(gateway.bootstrap, session))
    assert "STS refused the token" in reason


class _KafkaPythonTokens(kafka.net.sasl.oauth.AbstractTokenProvider):
    """One token for the test's few seconds (a provider reuses its token while valid)."""

    def __init__(self, session: boto3.Session) -> None:
        super().__init__()
        self._token = sts_token(AUDIENCE, session)

    def token(self) -> str:
        return self._token


def test_kafka_python_authenticates_as_its_iam_identity(
    engine: Engine,
    start_gateway: StartGateway,
    iam_user: Callable[[str], tuple[str, boto3.Session]],
) -> None:
    engine.create_topic("orders", 1)
    engine.create_topic("payroll", 1)
    arn, session = iam_user("erin")
    access = _access(engine, (arn, "payroll", "produce"))
    gateway = start_gateway(
        access=access, identity=MotoCallerIdentity(), sasl=True, audience=AUDIENCE
    )
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=gateway.bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauth_token_provider=_KafkaPythonTokens(session),
    )
    try:
        assert consumer.topics() == {"payroll"}
    finally:
        consumer.close()


def test_aiokafka_authenticates_with_plain(engine: Engine, start_gateway: StartGateway) -> None:
    engine.create_topic("orders", 1)
    engine.create_topic("payroll", 1)
    gateway = start_gateway(
        access=_access(engine, ("alice", "orders", "consume")), sasl=True, users=USERS
    )

    async def topics() -> set[str]:
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=gateway.bootstrap,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="PLAIN",
            sasl_plain_username="alice",
            sasl_plain_password="alice-secret",
        )
        await consumer.start()
        try:
            return set(await consumer.topics())
        finally:
            await consumer.stop()

    assert asyncio.run(topics()) == {"orders"}


def test_a_large_frame_before_authentication_closes_the_connection(secured: Wire) -> None:
    # Kafka's sasl.server.max.receive.size: an unauthenticated peer cannot make the
    # gateway buffer more than 512 KiB.
    secured.send(struct.pack(">i", 512 * 1024 + 1) + b"\0" * 1024)
    assert secured.closed()


def test_a_stalled_frame_holds_only_its_own_connection(
    engine: Engine, start_gateway: StartGateway
) -> None:
    gateway = start_gateway(sasl=True, users=USERS)
    stalled = Wire(gateway.bootstrap)
    other = Wire(gateway.bootstrap)
    try:
        stalled.send(struct.pack(">i", 100) + b"\0" * 10)  # and nothing more
        _handshake(other, "PLAIN")
        assert _authenticate(other, b"\0alice\0alice-secret").error_code == ErrorCode.none
        assert other.call(METADATA, correlation_id=3).topics == ()
    finally:
        stalled.close()
        other.close()


@pytest.mark.parametrize(
    "config",
    [{"sasl": True}, {"users": USERS, "any_password": True}],
    ids=["sasl-without-a-mechanism", "passwords-and-any-password"],
)
def test_a_contradictory_sasl_configuration_is_refused_at_start(
    engine: Engine, config: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="SASL"):
        KafkaGateway(engine, engine.access_control("allow"), GatewayConfig(**config))


def test_a_failed_authentication_is_answered_after_a_delay(start_gateway: StartGateway) -> None:
    # Kafka's connection.failed.authentication.delay.ms: guessing passwords is slowed.
    gateway = start_gateway(sasl=True, users=USERS, failed_authentication_delay_seconds=0.3)
    wire = Wire(gateway.bootstrap)
    try:
        _handshake(wire, "PLAIN")
        started = time.monotonic()
        answer = _authenticate(wire, b"\0alice\0guess")
        assert time.monotonic() - started >= 0.3
        assert answer.error_code == ErrorCode.sasl_authentication_failed
    finally:
        wire.close()

"""TLS on the gateway's own listener (``SASL_SSL``), for deployments without a load balancer
in front: librdkafka and kafka-python verify its certificate and authenticate over it."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import kafka
import pytest
from confluent_kafka.admin import AdminClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lakelog.kafka.server import RunningGateway
from lakelog.service.engine import Engine
from tests.gateway.conftest import StartGateway

USERS = {"alice": "alice-secret"}


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "gateway.pem", tmp_path / "gateway.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def secure(
    engine: Engine, start_gateway: StartGateway, certificate: tuple[Path, Path]
) -> RunningGateway:
    engine.create_topic("orders", 1)
    cert, key = certificate
    return start_gateway(sasl=True, users=USERS, tls_certificate=str(cert), tls_key=str(key))


def test_librdkafka_authenticates_over_tls(
    secure: RunningGateway, certificate: tuple[Path, Path]
) -> None:
    admin = AdminClient(
        {
            "bootstrap.servers": secure.bootstrap,
            "security.protocol": "SASL_SSL",
            "ssl.ca.location": str(certificate[0]),
            "sasl.mechanism": "PLAIN",
            "sasl.username": "alice",
            "sasl.password": "alice-secret",
        }
    )
    assert set(admin.list_topics(timeout=10).topics) == {"orders"}


def test_kafka_python_authenticates_over_tls(
    secure: RunningGateway, certificate: tuple[Path, Path]
) -> None:
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=secure.bootstrap,
        security_protocol="SASL_SSL",
        ssl_cafile=str(certificate[0]),
        sasl_mechanism="PLAIN",
        sasl_plain_username="alice",
        sasl_plain_password="alice-secret",
    )
    try:
        assert consumer.topics() == {"orders"}
    finally:
        consumer.close()

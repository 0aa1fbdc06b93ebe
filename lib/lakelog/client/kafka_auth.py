"""SASL/OAUTHBEARER tokens for Kafka clients of a deployed gateway (ADR 0016 §7).

The token is a presigned STS GetCallerIdentity request: the client signs it with its own
AWS credentials, locally, and the gateway executes it against STS to learn who the caller
is, the pattern of EKS's aws-iam-authenticator and Vault's AWS auth. No secret is shared
with the gateway and no plugin is needed in the Kafka client::

    from confluent_kafka import Producer
    from lakelog.client.kafka_auth import oauth_callback

    producer = Producer({
        "bootstrap.servers": "kafka.example.com:9094",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "OAUTHBEARER",
        "oauth_cb": oauth_callback(audience="prod"),
    })

A token is ``lakelog-sts-v1.`` followed by the base64url encoding (no padding) of the
presigned URL ``https://sts.<region>.amazonaws.com/?Action=GetCallerIdentity&
Version=2011-06-15&X-Amz-...``, whose signature also covers the header
``x-lakelog-audience: <audience>``: the gateway sends its own audience (the environment's
name), so STS refuses a token minted for another environment.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any, Final

import boto3

__all__ = [
    "AUDIENCE_HEADER",
    "TOKEN_LIFETIME_SECONDS",
    "TOKEN_PREFIX",
    "oauth_callback",
    "sts_token",
]

TOKEN_PREFIX: Final = "lakelog-sts-v1."
"""What every token starts with (its format's version)."""
AUDIENCE_HEADER: Final = "x-lakelog-audience"
"""The signed header naming the gateway (environment) a token is for."""
TOKEN_LIFETIME_SECONDS: Final = 600
"""How long a client uses one token for new connections; the gateway accepts a token up to
15 minutes after it was signed."""


def _signer(audience: str, session: boto3.Session | None, region: str | None) -> Any:
    """An STS client of the regional endpoint whose signatures cover the audience header."""
    session = session or boto3.Session()
    region = region or session.region_name or "us-east-1"
    client = session.client(
        "sts", region_name=region, endpoint_url=f"https://sts.{region}.amazonaws.com"
    )

    def add_audience(request: Any, **_: Any) -> None:
        request.headers[AUDIENCE_HEADER] = audience

    client.meta.events.register("before-sign.sts.GetCallerIdentity", add_audience)
    return client


def _token(signer: Any) -> str:
    url = signer.generate_presigned_url(
        "get_caller_identity", Params={}, ExpiresIn=900, HttpMethod="GET"
    )
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).rstrip(b"=").decode()


def sts_token(
    audience: str, session: boto3.Session | None = None, region: str | None = None
) -> str:
    """A token proving the caller's IAM identity to the gateways of ``audience``; signing
    is local (no call to AWS).

    Parameters
    ----------
    audience
        The gateway's audience (the environment's name, ``GatewayConfig.audience``).
    session
        Whose credentials sign (the default session when None).
    region
        The STS region to sign for (the session's, else us-east-1).
    """
    return _token(_signer(audience, session, region))


def oauth_callback(
    audience: str,
    session: boto3.Session | None = None,
    region: str | None = None,
    clock: Callable[[], float] = time.time,
) -> Callable[[str], tuple[str, float]]:
    """confluent-kafka's ``oauth_cb``: a fresh `sts_token` and when to replace it (the
    session's credentials are read at each call, so refreshed ones are used)."""
    signer = _signer(audience, session, region)

    def callback(_config: str) -> tuple[str, float]:
        return _token(signer), clock() + TOKEN_LIFETIME_SECONDS

    return callback

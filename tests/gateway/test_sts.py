"""OAUTHBEARER tokens: what the gateway checks before it sends a token's request anywhere
(no SSRF, no replay after 15 minutes, the audience signed), and the STS adapter's HTTP
(ADR 0016 §7)."""

from __future__ import annotations

import base64
import datetime
import http.server
import threading
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from lakelog.client.kafka_auth import TOKEN_PREFIX, sts_token
from lakelog.kafka.sasl import OAuthBearerAuthenticator
from lakelog.kafka.sts import (
    AuthenticationError,
    PresignedRequest,
    StsCallerIdentity,
    presigned_request,
)

AUDIENCE = "prod"


@pytest.fixture(scope="module")
def token() -> str:
    """One token for every test here (making the STS client takes a second)."""
    session = boto3.Session(
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret", region_name="eu-west-1"
    )
    return sts_token(AUDIENCE, session)


def _url(token: str) -> str:
    encoded = token.removeprefix(TOKEN_PREFIX)
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()


def _token(url: str) -> str:
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).rstrip(b"=").decode()


def _signed_at(url: str) -> datetime.datetime:
    stamp = url.split("X-Amz-Date=")[1].split("&", maxsplit=1)[0]
    return datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)


def test_a_fresh_token_is_a_get_caller_identity_request_with_the_audience(
    token: str,
) -> None:
    url = _url(token)
    request = presigned_request(token, AUDIENCE, _signed_at(url))
    assert request.url == url
    assert url.startswith("https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&")
    assert "X-Amz-SignedHeaders=host%3Bx-lakelog-audience" in url
    assert request.headers == {"x-lakelog-audience": AUDIENCE}


Mutation = Callable[[str], str]

REFUSED: dict[str, Mutation] = {
    "another-host": lambda u: u.replace("sts.eu-west-1.amazonaws.com", "169.254.169.254"),
    "a-lookalike-host": lambda u: u.replace(".amazonaws.com", ".amazonaws.com.example.org"),
    "a-bucket-website": lambda u: u.replace("sts.eu-west-1.", "sts.s3-website-eu-west-1."),
    "a-bucket": lambda u: u.replace("sts.eu-west-1.", "sts.s3.eu-west-1."),
    "user-info": lambda u: u.replace("https://", "https://evil@"),
    "http": lambda u: u.replace("https://", "http://"),
    "a-port": lambda u: u.replace(".amazonaws.com/", ".amazonaws.com:8443/"),
    "a-path": lambda u: u.replace(".amazonaws.com/", ".amazonaws.com/admin"),
    "another-action": lambda u: u.replace("GetCallerIdentity", "AssumeRole"),
    "another-parameter": lambda u: u + "&RoleArn=x",
    "a-repeated-parameter": lambda u: u + "&Action=GetCallerIdentity",
    "audience-not-signed": lambda u: u.replace("host%3Bx-lakelog-audience", "host"),
    "no-signature": lambda u: u.split("&X-Amz-Signature=")[0],
}


@pytest.mark.parametrize("mutate", REFUSED.values(), ids=REFUSED.keys())
def test_a_token_that_is_not_exactly_that_request_is_refused_unsent(
    token: str, mutate: Mutation
) -> None:
    url = _url(token)
    with pytest.raises(AuthenticationError):
        presigned_request(_token(mutate(url)), AUDIENCE, _signed_at(url))


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        (datetime.timedelta(minutes=14, seconds=59), True),
        (datetime.timedelta(minutes=15, seconds=1), False),
        (datetime.timedelta(minutes=-4), True),
        (datetime.timedelta(minutes=-6), False),
    ],
    ids=["14m59s-old", "15m01s-old", "4m-ahead", "6m-ahead"],
)
def test_a_token_is_accepted_for_15_minutes(
    token: str, offset: datetime.timedelta, accepted: bool
) -> None:
    now = _signed_at(_url(token)) + offset
    if accepted:
        presigned_request(token, AUDIENCE, now)
    else:
        with pytest.raises(AuthenticationError):
            presigned_request(token, AUDIENCE, now)


@pytest.mark.parametrize(
    "token",
    ["Bearer-abc", TOKEN_PREFIX + "!!!", TOKEN_PREFIX + "A" * 9000],
    ids=["no-prefix", "not-base64", "too-long"],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    now = datetime.datetime.now(datetime.UTC)
    with pytest.raises(AuthenticationError):
        presigned_request(token, AUDIENCE, now)


class _Fixed:
    def __init__(self, arn: str) -> None:
        self.arn = arn

    def caller_arn(self, request: PresignedRequest) -> str:
        return self.arn


@pytest.mark.parametrize(
    ("message", "principal"),
    [
        (b"n,,\x01auth=Bearer {token}\x01\x01", "arn:aws:iam::1:user/a"),
        (
            b"n,a=arn:aws:iam::1:user/a,\x01auth=Bearer {token}\x01x=y\x01\x01",
            "arn:aws:iam::1:user/a",
        ),
        (b"n,a=arn:aws:iam::1:user/b,\x01auth=Bearer {token}\x01\x01", None),
        (b"y,,\x01auth=Bearer {token}\x01\x01", None),
        (b"n,,\x01auth=Basic {token}\x01\x01", None),
    ],
    ids=["plain", "same-authzid-and-an-extension", "other-authzid", "channel-binding", "basic"],
)
def test_oauthbearer_messages(token: str, message: bytes, principal: str | None) -> None:
    now = _signed_at(_url(token)).timestamp()
    authenticator = OAuthBearerAuthenticator(_Fixed("arn:aws:iam::1:user/a"), AUDIENCE, lambda: now)
    auth_bytes = message.replace(b"{token}", token.encode())
    if principal is None:
        with pytest.raises(AuthenticationError):
            authenticator.authenticate(auth_bytes)
    else:
        assert authenticator.authenticate(auth_bytes) == principal


# The STS adapter over HTTP --------------------------------------------------------------
IDENTITY = b"""<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetCallerIdentityResult>
    <Arn>arn:aws:sts::123456789012:assumed-role/Reader/session</Arn>
    <UserId>AROA:session</UserId><Account>123456789012</Account>
  </GetCallerIdentityResult>
</GetCallerIdentityResponse>"""


class _Sts(http.server.BaseHTTPRequestHandler):
    """STS's stand-in: records each request and answers as ``reply`` says."""

    seen: list[dict[str, Any]]
    reply: tuple[int, bytes, dict[str, str]]

    def do_GET(self) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.seen.append({"path": self.path, "headers": headers})
        status, body, headers = self.reply
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def sts() -> Iterator[tuple[str, type[_Sts]]]:
    handler = type("Handler", (_Sts,), {"seen": [], "reply": (200, IDENTITY, {})})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_the_adapter_sends_the_signed_request_with_the_gateway_s_audience(
    token: str, sts: tuple[str, type[_Sts]]
) -> None:
    endpoint, handler = sts
    request = presigned_request(token, AUDIENCE, _signed_at(_url(token)))
    arn = StsCallerIdentity(endpoint).caller_arn(request)
    assert arn == "arn:aws:sts::123456789012:assumed-role/Reader/session"
    (seen,) = handler.seen
    assert seen["path"] == "/?" + _url(token).split("?", 1)[1]
    assert seen["headers"]["host"] == "sts.eu-west-1.amazonaws.com"
    assert seen["headers"]["x-lakelog-audience"] == AUDIENCE


@pytest.mark.parametrize(
    "reply",
    [
        (
            403,
            b"<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code></Error></ErrorResponse>",
            {},
        ),
        (302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"}),
        (200, b"<GetCallerIdentityResponse/>", {}),
        (
            200,
            b"<ListBucketResult><Arn>arn:aws:iam::123456789012:user/x</Arn></ListBucketResult>",
            {},
        ),
        (200, IDENTITY.replace(b"arn:aws:sts::123456789012:", b"root"), {}),
    ],
    ids=["refused", "a-redirect-is-not-followed", "no-arn", "another-document", "not-an-arn"],
)
def test_the_adapter_refuses_what_is_not_an_identity(
    token: str, sts: tuple[str, type[_Sts]], reply: tuple[int, bytes, dict[str, str]]
) -> None:
    endpoint, handler = sts
    handler.reply = reply
    request = presigned_request(token, AUDIENCE, _signed_at(_url(token)))
    with pytest.raises(AuthenticationError):
        StsCallerIdentity(endpoint).caller_arn(request)
    assert len(handler.seen) == 1


class _Counting(_Fixed):
    def __init__(self, arn: str) -> None:
        super().__init__(arn)
        self.calls = 0

    def caller_arn(self, request: PresignedRequest) -> str:
        self.calls += 1
        return self.arn


def test_a_verified_token_is_not_sent_to_sts_again_while_it_is_valid(token: str) -> None:
    signed = _signed_at(_url(token)).timestamp()
    now = [signed]
    verifier = _Counting("arn:aws:iam::1:user/a")
    authenticator = OAuthBearerAuthenticator(verifier, AUDIENCE, lambda: now[0])
    message = b"n,,\x01auth=Bearer " + token.encode() + b"\x01\x01"
    assert authenticator.authenticate(message) == "arn:aws:iam::1:user/a"
    now[0] += 600
    assert authenticator.authenticate(message) == "arn:aws:iam::1:user/a"
    assert verifier.calls == 1
    now[0] += 301  # past 15 minutes: refused before any cache or STS
    with pytest.raises(AuthenticationError):
        authenticator.authenticate(message)
    assert verifier.calls == 1


def test_a_token_signed_with_temporary_credentials_carries_the_session_token() -> None:
    session = boto3.Session(
        aws_access_key_id="ASIAEXAMPLE",
        aws_secret_access_key="secret",
        aws_session_token="session-token",
        region_name="us-east-1",
    )
    token = sts_token(AUDIENCE, session)
    url = _url(token)
    assert "X-Amz-Security-Token=session-token" in url
    assert presigned_request(token, AUDIENCE, _signed_at(url)).url == url

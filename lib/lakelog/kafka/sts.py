"""Who holds an OAUTHBEARER token: its presigned STS GetCallerIdentity request, checked and
then executed (ADR 0016 §7).

The token (`lakelog.client.kafka_auth`) is a URL its holder presigned. Before sending
anything the gateway checks that the URL can only be that request, to that service, signed
recently: https, an STS host, path ``/``, ``Action=GetCallerIdentity`` and
``Version=2011-06-15`` with SigV4's query parameters and nothing else, ``host`` and the
audience header among the signed headers, and an ``X-Amz-Date`` at most `MAX_TOKEN_AGE`
old. So a token cannot point the gateway at another host (no SSRF), nor be replayed after
15 minutes. STS then checks the signature, with the audience header set to the gateway's
own: a token signed for another audience fails there.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol
from xml.etree import ElementTree

from lakelog.client.kafka_auth import AUDIENCE_HEADER, TOKEN_PREFIX

__all__ = [
    "MAX_TOKEN_AGE",
    "AuthenticationError",
    "CallerIdentityVerifier",
    "PresignedRequest",
    "StsCallerIdentity",
    "presigned_request",
]

MAX_TOKEN_AGE: Final = datetime.timedelta(minutes=15)
"""How long after signing a token is accepted (STS's own limit for presigned requests)."""
MAX_CLOCK_SKEW: Final = datetime.timedelta(minutes=5)
"""How far in the future a token's signing time may be (the caller's clock running fast)."""
MAX_TOKEN_CHARS: Final = 8192
"""Longer tokens are refused unread (a presigned URL with a session token is ~2 KiB)."""

_STS_HOST: Final = re.compile(r"sts(-fips)?(\.[a-z]{2}(-[a-z]+)+-[0-9]+)?\.amazonaws\.com(\.cn)?")
"""STS's global and regional endpoints: ``sts[-fips][.<region>].amazonaws.com[.cn]``, the
region strictly a region's name, so that no host a customer names (an S3 bucket's website,
``sts.s3-website-<region>.amazonaws.com``) qualifies."""
_ARN: Final = re.compile(r"arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:[!-~]+")
_NS: Final = "{https://sts.amazonaws.com/doc/2011-06-15/}"
_ACTION: Final = {"Action": "GetCallerIdentity", "Version": "2011-06-15"}
_SIGNED: Final = frozenset(
    {
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
    }
)
_OPTIONAL: Final = frozenset({"X-Amz-Security-Token"})


class AuthenticationError(Exception):
    """Credentials that do not prove who the caller is; the message says why."""


@dataclass(frozen=True, slots=True)
class PresignedRequest:
    """A checked GetCallerIdentity request: the URL and the headers to send with it."""

    url: str
    headers: Mapping[str, str]


class CallerIdentityVerifier(Protocol):
    """Executes a presigned GetCallerIdentity request (the port to STS)."""

    def caller_arn(self, request: PresignedRequest) -> str:
        """The ARN STS answers with.

        Raises
        ------
        AuthenticationError
            STS refused the request (a bad or expired signature).
        """


def _decode(token: str) -> str:
    if len(token) > MAX_TOKEN_CHARS:
        raise AuthenticationError(f"a token of more than {MAX_TOKEN_CHARS} characters")
    if not token.startswith(TOKEN_PREFIX):
        raise AuthenticationError(f"a token must start with {TOKEN_PREFIX!r}")
    encoded = token.removeprefix(TOKEN_PREFIX)
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise AuthenticationError("a token must be a base64url presigned URL") from None


def _query(url: urllib.parse.SplitResult) -> dict[str, str]:
    pairs = urllib.parse.parse_qsl(url.query, keep_blank_values=True, strict_parsing=True)
    query = dict(pairs)
    if len(query) != len(pairs):
        raise AuthenticationError("the request repeats a parameter")
    for name, value in _ACTION.items():
        if query.get(name) != value:
            raise AuthenticationError(f"the request's {name} must be {value}")
    names = set(query) - set(_ACTION)
    if not _SIGNED <= names <= _SIGNED | _OPTIONAL:
        raise AuthenticationError("the request must carry SigV4's parameters and no others")
    return query


def presigned_request(token: str, audience: str, now: datetime.datetime) -> PresignedRequest:
    """The request ``token`` carries, checked before anything is sent.

    Raises
    ------
    AuthenticationError
        The token is not a recent presigned GetCallerIdentity request to STS that signs
        the audience header.
    """
    try:
        url = urllib.parse.urlsplit(_decode(token))
        query = _query(url)
        port = url.port
    except ValueError:
        raise AuthenticationError("the token's URL does not parse") from None
    if url.scheme != "https" or url.username or url.password or port not in (None, 443):
        raise AuthenticationError("the request must be https to an STS endpoint")
    if not _STS_HOST.fullmatch(url.hostname or "") or url.path not in ("", "/") or url.fragment:
        raise AuthenticationError("the request must be https to an STS endpoint")
    signed_headers = query["X-Amz-SignedHeaders"].split(";")
    if "host" not in signed_headers or AUDIENCE_HEADER not in signed_headers:
        raise AuthenticationError(f"the request must sign the host and {AUDIENCE_HEADER}")
    try:
        signed = datetime.datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
        expires = datetime.timedelta(seconds=int(query["X-Amz-Expires"]))
    except ValueError:
        raise AuthenticationError("the request's X-Amz-Date or X-Amz-Expires is invalid") from None
    signed = signed.replace(tzinfo=datetime.UTC)
    if signed > now + MAX_CLOCK_SKEW:
        raise AuthenticationError("the token was signed in the future")
    if now - signed > min(MAX_TOKEN_AGE, expires):
        raise AuthenticationError("the token has expired; sign a new one")
    return PresignedRequest(url.geturl(), {AUDIENCE_HEADER: audience})


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class StsCallerIdentity:
    """`CallerIdentityVerifier` on STS over HTTPS (urllib; no credentials of its own).

    Parameters
    ----------
    endpoint
        Send to this base URL instead of the token's STS host (an emulator such as moto's
        server in tests; the token was still checked to name STS).
    timeout
        Seconds to wait for STS.
    """

    def __init__(self, endpoint: str | None = None, timeout: float = 5.0) -> None:
        self._endpoint = endpoint
        self._timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirects)

    def caller_arn(self, request: PresignedRequest) -> str:
        url, headers = request.url, {**request.headers, "Accept": "application/xml"}
        if self._endpoint is not None:  # to the emulator, still as signed for STS's host
            signed = urllib.parse.urlsplit(url)
            url = self._endpoint.rstrip("/") + "/?" + signed.query
            headers["Host"] = signed.netloc
        http = urllib.request.Request(url, headers=headers, method="GET")
        try:
            with self._opener.open(http, timeout=self._timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            raise AuthenticationError(f"STS refused the token (HTTP {error.code})") from None
        document = ElementTree.fromstring(body)
        arn = document.findtext(f"{_NS}GetCallerIdentityResult/{_NS}Arn")
        if document.tag != f"{_NS}GetCallerIdentityResponse" or not _ARN.fullmatch(arn or ""):
            raise AuthenticationError("STS answered without a caller's ARN")
        return str(arn)

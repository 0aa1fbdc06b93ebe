"""`Transport` over the HTTP API v1: JSON over HTTPS, SigV4-signed when credentials exist.

Requests are built from, and replies read with, the contract's models
(`lakelog.contract.models`); error replies become domain errors through the contract's
error registry (`lakelog.contract.errors`). boto3 and botocore load only when a request
is signed.
"""

from __future__ import annotations

import copy
import gzip
import json
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, TypeVar
from urllib.parse import urlencode, urlsplit

from lakelog.contract.errors import error_from_reply
from lakelog.contract.operations import Operation
from lakelog.errors import InvalidRequestError, LakelogError, UnavailableError
from lakelog.limits import MAX_APPEND_BYTES
from lakelog.types import Record

if TYPE_CHECKING:
    import boto3
    from botocore.credentials import Credentials

__all__ = ["HttpReply", "HttpTransport", "Sender", "error_from_reply"]

_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
_EXECUTE_API_HOST: Final = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$")
_JSON: Final = "application/json"

_RECORD_JSON_BYTES: Final = 160
"""Field names, types, braces, partition and timestamp of one record in a produce body."""
_HEADER_JSON_BYTES: Final = 24
"""Braces and field names of one header."""


def _b64_length(data: bytes | None) -> int:
    return 0 if data is None else 4 * ((len(data) + 2) // 3)


R = TypeVar("R")


def _nothing() -> None:
    """Nothing to release."""


class HttpReply(NamedTuple):
    """An HTTP response as the transport needs it: status and body bytes."""

    status: int
    data: bytes


Sender = Callable[[str, str, bytes | None, Mapping[str, str]], HttpReply]
"""Sends ``(method, url, body, headers)`` and returns the reply; raises `UnavailableError`
when no reply came (the default sends with urllib3; tests send to a handler in-process)."""


class _PoolSender:
    """The default `Sender`: pooled urllib3 connections, no automatic retries.

    urllib3 loads when the first transport is made, not when the SDK is imported.
    """

    def __init__(self, timeout_s: float) -> None:
        import urllib3  # noqa: PLC0415 - loaded with the first transport

        self._pool = urllib3.PoolManager(
            maxsize=16, timeout=urllib3.Timeout(connect=min(timeout_s, 10.0), read=timeout_s)
        )
        self._failed = urllib3.exceptions.HTTPError

    def __call__(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> HttpReply:
        try:
            response = self._pool.request(
                method, url, body=body, headers=dict(headers), retries=False, preload_content=True
            )
        except self._failed as error:
            raise UnavailableError(f"{method} {url}: {error}") from error
        return HttpReply(response.status, response.data)

    def close(self) -> None:
        self._pool.clear()


class HttpTransport:
    """The HTTP API v1 at ``endpoint`` (a base URL without ``/v1``).

    Parameters
    ----------
    endpoint
        ``https://abc123.execute-api.eu-west-1.amazonaws.com`` or ``http://127.0.0.1:8080``.
    session
        boto3 session whose credentials sign requests (the default session when None).
    sign
        SigV4-sign requests for ``execute-api``. None: sign when the endpoint is not a
        loopback address and credentials exist.
    region
        Signing region; by default taken from an ``execute-api`` host name, else the session.
    compression
        ``"gzip"`` sends produce bodies gzip-compressed (``Content-Encoding: gzip``).
    timeout_s
        Connect and read timeout of each request.
    sender
        What sends each request (`Sender`); by default pooled urllib3 connections.
    """

    max_request_bytes: Final = MAX_APPEND_BYTES - 64 * 1024
    """JSON bytes of the records of one append (`request_bytes` each): the 6 MiB body limit
    less room for the envelope and the producer's sequences."""

    @staticmethod
    def request_bytes(record: Record) -> int:
        """An upper bound of the bytes ``record`` takes in a produce body (base64 JSON)."""
        size = _RECORD_JSON_BYTES + _b64_length(record.key) + _b64_length(record.value)
        for name, value in record.headers:
            size += _HEADER_JSON_BYTES + len(json.dumps(name)) + _b64_length(value)
        return size

    def __init__(
        self,
        endpoint: str,
        *,
        session: boto3.Session | None = None,
        sign: bool | None = None,
        region: str | None = None,
        compression: Literal["gzip"] | None = None,
        timeout_s: float = 30.0,
        sender: Sender | None = None,
    ) -> None:
        try:
            parts = urlsplit(endpoint.rstrip("/"))
            parts.port  # noqa: B018 - a port out of range or not a number raises here
        except ValueError as error:
            raise InvalidRequestError(
                f"endpoint {endpoint!r} is not an http(s) URL: {error}"
            ) from None
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or "?" in endpoint
            or "#" in endpoint
            or endpoint != endpoint.strip()
        ):
            raise InvalidRequestError(
                f"endpoint {endpoint!r} is not an http(s) URL "
                "(a base URL: no query, fragment or surrounding spaces)"
            )
        if parts.path.rstrip("/").endswith("/v1"):
            raise InvalidRequestError(f"endpoint {endpoint!r} must not include /v1")
        self.endpoint = endpoint.rstrip("/")
        self.compression = compression
        self._send: Sender
        self._close: Callable[[], None]
        if sender is None:
            pool = _PoolSender(timeout_s)
            self._send, self._close = pool, pool.close
        else:
            self._send, self._close = sender, _nothing
        self._credentials: Credentials | None = None
        self._region = ""
        host = parts.hostname
        if sign is False or (sign is None and host in _LOOPBACK):
            return
        import boto3  # noqa: PLC0415 - only signed transports need boto3

        session = session or boto3.Session()
        credentials = session.get_credentials()
        if credentials is None:
            if sign:
                raise InvalidRequestError("sign=True but no AWS credentials were found")
            return
        match = _EXECUTE_API_HOST.search(host)
        self._region = region or (match.group(1) if match else session.region_name) or ""
        if not self._region:
            raise InvalidRequestError(
                "cannot tell the signing region from the endpoint: pass region="
            )
        self._credentials = credentials

    def compressed(self, compression: Literal["gzip"] | None) -> HttpTransport:
        """This transport (same connections and signer) with another body compression."""
        twin = copy.copy(self)
        twin.compression = compression
        return twin

    # Plumbing ------------------------------------------------------------------------
    def _signed(
        self, method: str, url: str, data: bytes | None, headers: dict[str, str]
    ) -> dict[str, str]:
        from botocore.auth import SigV4Auth  # noqa: PLC0415 - loaded only to sign
        from botocore.awsrequest import AWSRequest  # noqa: PLC0415

        assert self._credentials is not None
        signed = AWSRequest(method=method, url=url, data=data or b"", headers=headers)
        SigV4Auth(self._credentials.get_frozen_credentials(), "execute-api", self._region).add_auth(
            signed
        )
        return dict(signed.headers.items())

    def send(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        query: Mapping[str, Any] | None = None,
        *,
        compress: bool = False,
    ) -> bytes:
        """Send one request with a JSON ``body``; the reply's bytes, or a domain error."""
        url = self.endpoint + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Accept": _JSON}
        if body is not None:
            headers["Content-Type"] = _JSON
            if compress:
                body = gzip.compress(body, compresslevel=1)
                headers["Content-Encoding"] = "gzip"
        if self._credentials is not None:
            headers = self._signed(method, url, body, headers)
        reply = self._send(method, url, body, headers)
        if reply.status >= 400:
            raise error_from_reply(reply.status, reply.data)
        return reply.data

    def call(self, op: Operation[R]) -> R:
        """Send ``op`` as its binding says (`lakelog.contract.operations.Http`): the body
        written and the reply read by the contract's models, errors by its registry.

        Raises
        ------
        LakelogError
            The error reply's domain error, or a plain `LakelogError` when a success
            reply is not the contract's body for ``op``.
        """
        if not isinstance(op, Operation):
            raise InvalidRequestError(f"the contract declares no operation {type(op).__name__}")
        binding = op.http
        compress = binding.compressible and self.compression == "gzip"
        path = op.url_path()
        data = self.send(binding.method, path, op.encode(), op.url_query(), compress=compress)
        try:
            return op.decode(data)
        except (ValueError, KeyError, TypeError, RecursionError) as error:
            # A proxy's page or another service's body: a domain error, never a parser's.
            raise LakelogError(
                f"{binding.method} {path}: the reply is not a {binding.reply} of the "
                f"contract: {str(error)[:300]}"
            ) from error

    def close(self) -> None:
        """Close pooled connections (a `Sender` passed in belongs to whoever made it)."""
        self._close()

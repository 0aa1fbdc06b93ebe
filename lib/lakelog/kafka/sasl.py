"""SaslHandshake (17) and SaslAuthenticate (36): who the connection's principal is
(ADR 0016 §7).

A client names a mechanism (handshake v1), then sends its credentials in one
SaslAuthenticate; on success the session's principal is the authenticated one for every
later call and ACL check. A refusal (a mechanism not offered, credentials that do not
verify, an authenticate without a handshake) is answered with its error code and closes the
connection, as Kafka's broker does. Mechanisms:

- ``PLAIN`` (RFC 4616): ``authzid NUL username NUL password``; the username is the
  principal. Passwords are checked against `GatewayConfig.users`, or not at all with
  `GatewayConfig.any_password` (``lakelog dev`` only).
- ``OAUTHBEARER`` (RFC 7628): the bearer token is a presigned STS GetCallerIdentity
  request (`lakelog.kafka.sts`); the principal is the ARN STS answers with.
"""

from __future__ import annotations

import datetime
import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

from kio.schema.errors import ErrorCode
from kio.static.protocol import ResponsePayload

from lakelog.kafka.apis import Api, Session, response_type
from lakelog.kafka.protocol import build
from lakelog.kafka.sts import (
    AuthenticationError,
    CallerIdentityVerifier,
    PresignedRequest,
    presigned_request,
)

__all__ = [
    "AUTHENTICATE",
    "HANDSHAKE",
    "AuthenticationError",
    "Authenticator",
    "OAuthBearerAuthenticator",
    "PlainAuthenticator",
]

logger = logging.getLogger("lakelog.kafka")

MAX_REMEMBERED_TOKENS: Final = 10_000
"""Verified OAUTHBEARER tokens a gateway remembers (each well under 4 KiB)."""
_PENDING: Final = "sasl.mechanism"
"""Session state: the mechanism a handshake chose, until its SaslAuthenticate."""


class Authenticator(Protocol):
    """One SASL mechanism: the principal that ``auth_bytes`` prove (blocking: it may call
    AWS), or `AuthenticationError`."""

    mechanism: str

    def authenticate(self, auth_bytes: bytes) -> str:
        """The principal the client's single SASL message proves."""


class PlainAuthenticator:
    """SASL/PLAIN: the username is the principal.

    Parameters
    ----------
    users
        Passwords by username (compared in constant time); None accepts any password,
        which proves nothing and is for ``lakelog dev`` only.
    """

    mechanism = "PLAIN"

    def __init__(self, users: Mapping[str, str] | None) -> None:
        self._users = users

    def authenticate(self, auth_bytes: bytes) -> str:
        try:
            authzid, username, password = auth_bytes.decode("utf-8").split("\0")
        except (UnicodeDecodeError, ValueError):
            raise AuthenticationError(
                "PLAIN credentials are authzid NUL user NUL password"
            ) from None
        if not username or authzid not in ("", username):
            raise AuthenticationError("a username is needed, and no other authorization id")
        if self._users is not None:
            expected = self._users.get(username)
            # Compare even for an unknown user, so that timing tells little.
            match = hmac.compare_digest((expected or "").encode(), password.encode())
            if expected is None or not match:
                raise AuthenticationError("invalid username or password")
        return username


class OAuthBearerAuthenticator:
    """SASL/OAUTHBEARER whose token is a presigned STS GetCallerIdentity request.

    Parameters
    ----------
    verifier
        Executes the checked request against STS.
    audience
        The value this gateway sends as the signed audience header.
    clock
        Seconds since the epoch (tokens older than 15 minutes are refused).

    A token STS verified is remembered (up to `MAX_REMEMBERED_TOKENS`): a client that opens
    several connections with one token costs one STS call. Its age is still checked at
    each use, so a remembered token expires as any other.
    """

    mechanism = "OAUTHBEARER"

    def __init__(
        self,
        verifier: CallerIdentityVerifier,
        audience: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._verifier = verifier
        self._audience = audience
        self._clock = clock
        self._verified: dict[str, str] = {}
        self._lock = threading.Lock()

    def authenticate(self, auth_bytes: bytes) -> str:
        authzid, token = _bearer(auth_bytes)
        now = datetime.datetime.fromtimestamp(self._clock(), datetime.UTC)
        request = presigned_request(token, self._audience, now)
        with self._lock:
            arn = self._verified.get(token)
        if arn is None:
            arn = self._verify(request)
            with self._lock:
                if len(self._verified) >= MAX_REMEMBERED_TOKENS:
                    del self._verified[next(iter(self._verified))]  # the oldest
                self._verified[token] = arn
        if authzid and authzid != arn:
            raise AuthenticationError("the authorization id is not the token's identity")
        return arn

    def _verify(self, request: PresignedRequest) -> str:
        try:
            return self._verifier.caller_arn(request)
        except AuthenticationError:
            raise
        except Exception as error:  # STS unreachable: refuse, and say why in the log
            logger.warning("GetCallerIdentity failed: %s: %s", type(error).__name__, error)
            raise AuthenticationError("STS could not verify the token; retry") from None


def _bearer(auth_bytes: bytes) -> tuple[str, str]:
    """The authorization id and bearer token of an OAUTHBEARER client's first message:
    ``n,[a=authzid],`` then ``\\x01``-separated ``key=value`` pairs, one of them ``auth=Bearer
    <token>`` (RFC 7628 §3.1)."""
    try:
        header, *pairs = auth_bytes.decode("utf-8").split("\x01")
    except UnicodeDecodeError:
        raise AuthenticationError("OAUTHBEARER messages are UTF-8") from None
    parts = header.split(",")
    if len(parts) != 3 or parts[0] != "n" or (parts[1] and not parts[1].startswith("a=")):
        raise AuthenticationError("OAUTHBEARER needs a GS2 header 'n,[a=authzid],'")
    for pair in pairs:
        key, _, value = pair.partition("=")
        scheme, _, token = value.partition(" ")
        if key == "auth" and scheme.lower() == "bearer" and token.strip():
            return parts[1].removeprefix("a="), token.strip()
    raise AuthenticationError("OAUTHBEARER needs 'auth=Bearer <token>'")


def _refuse(
    session: Session, schema: type[ResponsePayload], code: ErrorCode, message: str
) -> ResponsePayload:
    """The answer ``code`` with ``message``, the connection's last."""
    session.closing = True
    return build(schema, error_code=code, error_message=message)


async def _handshake(body: Any, session: Session) -> ResponsePayload:
    schema = response_type(body)
    offered = tuple(session.services.authenticators)
    if body.mechanism not in offered:
        session.closing = True
        return build(schema, error_code=ErrorCode.unsupported_sasl_mechanism, mechanisms=offered)
    session.state[_PENDING] = body.mechanism
    return build(schema, mechanisms=offered)


async def _authenticate(body: Any, session: Session) -> ResponsePayload:
    schema = response_type(body)
    mechanism = session.state.pop(_PENDING, None)
    if mechanism is None:
        message = "SaslAuthenticate must follow a SaslHandshake"
        return _refuse(session, schema, ErrorCode.illegal_sasl_state, message)
    authenticator = session.services.authenticators[mechanism]
    try:
        principal = await session.services.run(authenticator.authenticate, bytes(body.auth_bytes))
        if session.sasl_mechanism is not None and principal != session.principal:
            raise AuthenticationError("a re-authentication must keep the principal")
    except AuthenticationError as error:
        logger.info(
            "SASL %s authentication of client %s failed: %s", mechanism, session.client_id, error
        )
        return _refuse(session, schema, ErrorCode.sasl_authentication_failed, str(error))
    session.principal = principal
    session.sasl_mechanism = mechanism
    session.authenticated = True
    return build(schema, auth_bytes=b"")


HANDSHAKE = Api(17, 1, 1, _handshake, before_auth=True)
AUTHENTICATE = Api(36, 0, 2, _authenticate, before_auth=True)

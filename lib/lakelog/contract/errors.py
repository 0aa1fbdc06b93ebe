"""The error registry of HTTP API v1: each code is one exception class, one status, its fields.

An error reply is ``{"error": code, "message": text, <fields>}``: the fields are the
arguments of the exception's constructor (``OffsetOutOfRangeError``'s topic, partition,
offset and both bounds; ``LeaseFencedError``'s group, member and moved partitions), so the
SDK rebuilds over HTTP the very exception direct mode raises (`error_from_reply`).

A code this module does not know (a newer server's) maps by status to the nearest generic
class, keeping the server's code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

from lakelog.errors import (
    CorruptSegmentError,
    ForbiddenError,
    GroupNotEmptyError,
    GroupNotFoundError,
    InvalidRequestError,
    LakelogError,
    LeaseFencedError,
    OffsetOutOfRangeError,
    OutOfOrderSequenceError,
    PayloadTooLargeError,
    ProducerFencedError,
    SubscriptionExistsError,
    SubscriptionNotFoundError,
    ThrottledError,
    TopicExistsError,
    TopicNotFoundError,
    UnauthorizedError,
    UnavailableError,
    UnknownProducerError,
)

__all__ = [
    "ERRORS",
    "ErrorKind",
    "UnsupportedMediaTypeError",
    "error_body",
    "error_from_reply",
    "error_of_body",
    "kind_of",
    "status_of",
]


class UnsupportedMediaTypeError(InvalidRequestError):
    """A request body that is not UTF-8 ``application/json`` (415 ``invalid_request``).

    A refinement the server answers with its own status; the SDK sees the
    `InvalidRequestError` its code names.
    """


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """One code of the contract: its exception class, HTTP status and structured fields.

    ``fields`` are the keyword arguments of the class's constructor; the reply carries
    each under its name (tuples as JSON arrays). Without fields the constructor takes the
    message.
    """

    error: type[LakelogError]
    status: HTTPStatus
    fields: tuple[str, ...] = ()

    @property
    def code(self) -> str:
        """The stable machine-readable name."""
        return self.error.code


ERRORS: Final[tuple[ErrorKind, ...]] = (
    ErrorKind(InvalidRequestError, HTTPStatus.BAD_REQUEST),
    ErrorKind(
        OutOfOrderSequenceError,
        HTTPStatus.BAD_REQUEST,
        ("producer_id", "partition", "sequence", "expected"),
    ),
    ErrorKind(UnauthorizedError, HTTPStatus.UNAUTHORIZED),
    ErrorKind(ForbiddenError, HTTPStatus.FORBIDDEN, ("principal", "operation", "topic")),
    ErrorKind(UnknownProducerError, HTTPStatus.FORBIDDEN, ("producer_id",)),
    ErrorKind(TopicNotFoundError, HTTPStatus.NOT_FOUND, ("topic",)),
    ErrorKind(GroupNotFoundError, HTTPStatus.NOT_FOUND, ("group",)),
    ErrorKind(SubscriptionNotFoundError, HTTPStatus.NOT_FOUND, ("topic", "name")),
    ErrorKind(TopicExistsError, HTTPStatus.CONFLICT, ("topic",)),
    ErrorKind(SubscriptionExistsError, HTTPStatus.CONFLICT, ("topic", "name")),
    ErrorKind(ProducerFencedError, HTTPStatus.CONFLICT, ("producer_id", "epoch", "current_epoch")),
    ErrorKind(LeaseFencedError, HTTPStatus.CONFLICT, ("group", "member_id", "partitions")),
    ErrorKind(GroupNotEmptyError, HTTPStatus.CONFLICT, ("group", "members")),
    ErrorKind(PayloadTooLargeError, HTTPStatus.REQUEST_ENTITY_TOO_LARGE),
    ErrorKind(
        OffsetOutOfRangeError,
        HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
        ("topic", "partition", "offset", "log_start_offset", "high_watermark"),
    ),
    ErrorKind(ThrottledError, HTTPStatus.TOO_MANY_REQUESTS),
    ErrorKind(UnavailableError, HTTPStatus.SERVICE_UNAVAILABLE),
    ErrorKind(CorruptSegmentError, HTTPStatus.INTERNAL_SERVER_ERROR, ("segment_key", "reason")),
    ErrorKind(LakelogError, HTTPStatus.INTERNAL_SERVER_ERROR),
)
"""Every code of the contract, each exactly once."""

_BY_CODE: Final[dict[str, ErrorKind]] = {kind.code: kind for kind in ERRORS}
_BY_CLASS: Final[dict[type[LakelogError], ErrorKind]] = {kind.error: kind for kind in ERRORS}
if len(_BY_CODE) != len(ERRORS) or len(_BY_CLASS) != len(ERRORS):  # pragma: no cover
    raise RuntimeError("each error code must name exactly one exception class")

_STATUS_REFINEMENTS: Final[dict[type[LakelogError], HTTPStatus]] = {
    UnsupportedMediaTypeError: HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
}
"""Subclasses answered with another status than their code's."""

_BY_STATUS: Final[dict[int, type[LakelogError]]] = {
    400: InvalidRequestError,
    401: UnauthorizedError,
    413: PayloadTooLargeError,
    429: ThrottledError,
    502: UnavailableError,
    503: UnavailableError,
    504: UnavailableError,
}
"""What an error without a known code (a gateway's, a newer server's) stands for."""


def kind_of(error: LakelogError) -> ErrorKind:
    """The registered kind ``error`` is reported as: its class's, else its nearest base's."""
    for cls in type(error).__mro__:
        if cls in _BY_CLASS:
            return _BY_CLASS[cls]
    raise TypeError(f"{type(error).__name__} is not a LakelogError")  # pragma: no cover


def status_of(error: LakelogError) -> HTTPStatus:
    """The HTTP status of a domain error."""
    for cls in type(error).__mro__:
        if cls in _STATUS_REFINEMENTS:
            return _STATUS_REFINEMENTS[cls]
    return kind_of(error).status


def _to_json(value: Any) -> Any:
    return [_to_json(item) for item in value] if isinstance(value, tuple) else value


def _from_json(value: Any) -> Any:
    return tuple(_from_json(item) for item in value) if isinstance(value, list) else value


def error_body(error: LakelogError) -> dict[str, Any]:
    """The reply body of a domain error: code, message and the fields its class needs."""
    kind = kind_of(error)
    body: dict[str, Any] = {"error": kind.code, "message": error.message}
    for name in kind.fields:
        body[name] = _to_json(getattr(error, name))
    return body


def _generic(status: int, code: str, message: str) -> LakelogError:
    kind = _BY_STATUS.get(status) or (InvalidRequestError if 400 <= status < 500 else LakelogError)
    error = kind(message)
    if code and code != kind.code:
        error.code = code  # a newer server's code stays visible
    return error


def error_from_reply(status: int, body: bytes | str) -> LakelogError:
    """The domain error an HTTP error reply stands for, built by its constructor.

    A known code with its fields gives that code's class; anything else (a gateway's
    HTML, a code this client does not know, a reply without the fields) gives the generic
    class of its status.
    """
    try:
        reply = json.loads(body)
        code, message = str(reply["error"]), str(reply["message"])
    except (ValueError, KeyError, TypeError, RecursionError):  # nested too deep: not ours
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        return _generic(status, "", text[:500] or f"HTTP {status}")
    kind = _BY_CODE.get(code)
    if kind is None or not isinstance(reply, Mapping):
        return _generic(status, code, message)
    if not kind.fields:
        return kind.error(message)
    try:
        error = kind.error(**{name: _from_json(reply[name]) for name in kind.fields})
    except (KeyError, TypeError, ValueError):  # an older server's reply without the fields
        return _generic(status, code, message)
    if error.message != message:  # the server's words win (a newer server may say more)
        error.message = message
        error.args = (message,)
    return error


def error_of_body(body: Mapping[str, Any]) -> LakelogError:
    """The domain error an error body carried inside a reply stands for (a partition's
    error in a multi-partition fetch, a heartbeat's), as `error_from_reply` builds it."""
    kind = _BY_CODE.get(str(body.get("error")))
    status = kind.status if kind is not None else HTTPStatus.INTERNAL_SERVER_ERROR
    return error_from_reply(status, json.dumps(dict(body)))

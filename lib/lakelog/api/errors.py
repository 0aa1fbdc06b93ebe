"""Domain errors -> HTTP status and the ``{"error", "message"}`` body, in one place."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from lakelog.errors import (
    CorruptSegmentError,
    ForbiddenError,
    GroupNotEmptyError,
    GroupNotFoundError,
    InvalidRequestError,
    LakelogError,
    LeaseFencedError,
    LedgerConflictError,
    OffsetOutOfRangeError,
    PayloadTooLargeError,
    ProducerFencedError,
    ThrottledError,
    TopicExistsError,
    TopicNotFoundError,
    UnauthorizedError,
    UnavailableError,
)

__all__ = [
    "BODY_ERRORS",
    "NO_CONTENT",
    "STATUS_BY_ERROR",
    "UnsupportedMediaTypeError",
    "error_body",
    "error_responses",
    "status_of",
    "success",
]


class UnsupportedMediaTypeError(InvalidRequestError):
    """A request body that is not UTF-8 ``application/json``."""


STATUS_BY_ERROR: tuple[tuple[type[LakelogError], HTTPStatus], ...] = (
    (PayloadTooLargeError, HTTPStatus.REQUEST_ENTITY_TOO_LARGE),
    (UnsupportedMediaTypeError, HTTPStatus.UNSUPPORTED_MEDIA_TYPE),
    (InvalidRequestError, HTTPStatus.BAD_REQUEST),
    (UnauthorizedError, HTTPStatus.UNAUTHORIZED),
    (ForbiddenError, HTTPStatus.FORBIDDEN),
    (TopicNotFoundError, HTTPStatus.NOT_FOUND),
    (GroupNotFoundError, HTTPStatus.NOT_FOUND),
    (TopicExistsError, HTTPStatus.CONFLICT),
    (ProducerFencedError, HTTPStatus.CONFLICT),
    (LeaseFencedError, HTTPStatus.CONFLICT),
    (GroupNotEmptyError, HTTPStatus.CONFLICT),
    (OffsetOutOfRangeError, HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE),
    (ThrottledError, HTTPStatus.TOO_MANY_REQUESTS),
    (LedgerConflictError, HTTPStatus.SERVICE_UNAVAILABLE),
    (UnavailableError, HTTPStatus.SERVICE_UNAVAILABLE),
    (CorruptSegmentError, HTTPStatus.INTERNAL_SERVER_ERROR),
)
"""First match wins: subclasses come before their bases."""


def status_of(error: LakelogError) -> HTTPStatus:
    """The HTTP status of a domain error (500 for an unexpected one)."""
    for kind, status in STATUS_BY_ERROR:
        if isinstance(error, kind):
            return status
    return HTTPStatus.INTERNAL_SERVER_ERROR


def error_body(error: LakelogError) -> dict[str, Any]:
    """The reply body of a domain error; out-of-range errors carry both bounds."""
    body: dict[str, Any] = {"error": error.code, "message": error.message}
    if isinstance(error, OffsetOutOfRangeError):
        body["log_start_offset"] = error.log_start_offset
        body["high_watermark"] = error.high_watermark
    return body


def error_responses(*statuses: int) -> dict[int, Any]:
    """OpenAPI ``responses`` entries for the error statuses a route can return.

    400, 401, 422 and 500 are always included: any request may be malformed, anonymous,
    or meet an unexpected failure.
    """
    from lakelog.api.models import ErrorBody  # noqa: PLC0415 - avoid a models<->errors cycle

    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {"application/json": {"model": ErrorBody}},
        }
        for status in sorted({400, 401, 422, 500, *statuses})
    }


NO_CONTENT: dict[int, Any] = {204: {"description": "Done; no body", "content": {}}}
"""The OpenAPI entry of a 204 reply (an explicit empty ``content``: no body at all)."""

BODY_ERRORS = (413, 415)
"""Statuses every route that takes a request body can answer besides the usual ones."""


def success(model: Any, status: int = 200, description: str = "OK") -> dict[int, Any]:
    """The OpenAPI ``responses`` entry of a route's success reply."""
    return {status: {"description": description, "content": {"application/json": {"model": model}}}}

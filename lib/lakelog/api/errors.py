"""Domain errors -> HTTP replies, and the OpenAPI entries of error and success replies.

Which status and fields each code has is the contract's (`lakelog.contract.errors`); this
module only shapes Powertools replies and OpenAPI documentation from it.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from lakelog.contract.errors import UnsupportedMediaTypeError, error_body, status_of
from lakelog.contract.models import ErrorBody

__all__ = [
    "BODY_ERRORS",
    "NO_CONTENT",
    "UnsupportedMediaTypeError",
    "error_body",
    "error_responses",
    "status_of",
    "success",
]


def error_responses(*statuses: int) -> dict[int, Any]:
    """OpenAPI ``responses`` entries for the error statuses a route can return.

    400, 401, 422 and 500 are always included: any request may be malformed, anonymous,
    or meet an unexpected failure.
    """
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

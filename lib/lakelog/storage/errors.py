"""Translation of boto3 errors into the engine's throttled / unavailable errors."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar, cast

from botocore.exceptions import BotoCoreError, ClientError

from lakelog.errors import ThrottledError, UnavailableError

__all__ = ["THROTTLING_CODES", "translate_client_errors"]

P = ParamSpec("P")
R = TypeVar("R")

THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "ThrottlingException",
        "SlowDown",
        "Throttling",
    }
)


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in THROTTLING_CODES:
            raise ThrottledError(f"storage throttled: {code}") from exc
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
            raise UnavailableError(f"storage unavailable: {code}") from exc
        message = exc.response.get("Error", {}).get("Message", "")
        raise UnavailableError(f"storage refused the request: {code} {message}".strip()) from exc
    except BotoCoreError as exc:
        raise UnavailableError(f"storage unreachable: {exc}") from exc


def translate_client_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Re-raise throttling as `ThrottledError` and transport failures as `UnavailableError`.

    Expected client errors (conditional failures, missing objects) must be handled inside
    the adapter method; any other that reaches here (a missing table, a validation error)
    becomes `UnavailableError` too. Generator functions are translated while they iterate.
    """
    if inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def generator(*args: P.args, **kwargs: P.kwargs) -> Iterator[Any]:
            with _translated():
                yield from cast(Iterator[Any], func(*args, **kwargs))

        return cast(Callable[P, R], generator)

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with _translated():
            return func(*args, **kwargs)

    return wrapper

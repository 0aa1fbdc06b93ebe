"""SDK fixtures: clients in direct mode on moto, and a transport that counts and cuts calls."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

import pytest

from lakelog import Engine
from lakelog.client import Client, Transport
from lakelog.errors import UnavailableError


class Wire:
    """A transport in front of another that counts calls and can be cut like a network.

    ``cut = True`` makes every call fail with `UnavailableError` (a crashed or partitioned
    client, as far as the service can tell); ``fail_next[name] = n`` fails the next ``n``
    calls of ``name`` *after* they reached the service (an ambiguous outcome). What sends no
    request (``request_bytes``, ``max_request_bytes``, ``close``) passes through uncounted.
    """

    _LOCAL = frozenset({"request_bytes", "close"})

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.cut = False
        self.fail_next: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target) or name in self._LOCAL:
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.cut:
                raise UnavailableError(f"{name}: connection refused (cut)")
            self.calls[name] += 1
            result = target(*args, **kwargs)
            if self.fail_next[name]:
                self.fail_next[name] -= 1
                raise UnavailableError(f"{name}: reply lost after the service acted")
            return result

        return call

    def compressed(self, compression: Literal["gzip"] | None) -> Wire:
        """This wire, now in front of ``inner.compressed(compression)``."""
        self.inner = self.inner.compressed(compression)
        return self


@pytest.fixture
def make_client(make_engine: Callable[..., Engine]) -> Callable[[], tuple[Client, Wire]]:
    """Direct-mode clients, each on its own engine (as separate processes would be)."""

    def make() -> tuple[Client, Wire]:
        wire = Wire(make_engine())
        return Client(transport=wire), wire  # type: ignore[arg-type]

    return make


@pytest.fixture
def client(make_client: Callable[[], tuple[Client, Wire]]) -> Client:
    return make_client()[0]


@pytest.fixture
def wired(make_client: Callable[[], tuple[Client, Wire]]) -> tuple[Client, Wire]:
    return make_client()

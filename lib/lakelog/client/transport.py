"""The one interface the SDK talks to: the engine in-process, or the HTTP API.

`lakelog.Engine` satisfies `Transport` as it is (``Client.direct``);
`lakelog.client.http.HttpTransport` satisfies it over HTTPS. Both take the contract's
operation objects, so an operation added to the contract needs no change here. Producer,
Consumer and Client depend on nothing else, so both modes run the same client code.
"""

from __future__ import annotations

from typing import Final, Literal, Protocol, TypeVar

from lakelog.contract.operations import Operation
from lakelog.errors import ThrottledError, UnavailableError
from lakelog.types import Record

__all__ = ["RETRYABLE", "Transport"]

RETRYABLE: Final = (ThrottledError, UnavailableError)
"""Errors after which the same request may simply be sent again (429, 503, no connection,
an append that kept losing to other appends)."""

R = TypeVar("R")


class Transport(Protocol):
    """Every operation of the API (`lakelog.contract.operations`) through `call`, and what a
    producer needs to know of the transport (how it measures and compresses a request).

    This is all the SDK uses of a transport.
    """

    def call(self, op: Operation[R]) -> R:
        """Run ``op`` and return its result, or raise its domain error."""

    @property
    def max_request_bytes(self) -> int:
        """Bytes the records of one append may take, each measured by `request_bytes`."""

    def request_bytes(self, record: Record) -> int:
        """Bytes ``record`` takes in an append request, in this transport's own measure."""

    def compressed(self, compression: Literal["gzip"] | None) -> Transport:
        """This transport sending append bodies with ``compression`` (or as it is)."""

    def close(self) -> None:
        """Release connections."""

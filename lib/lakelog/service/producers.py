"""Idempotent producer ids: drawn at random and held by the principal that obtained them.

ADR 0004. An id is a random 63-bit integer, registered in the catalog with a conditional
put (a collision draws again), so no caller can guess another's id or take over one that
will be issued next. An append under an id is accepted only from the principal the
catalog item names. Bindings never change once written, so each process keeps the ones
it has seen: an append reads the catalog only the first time this process meets an id.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from lakelog.errors import UnavailableError, UnknownProducerError
from lakelog.storage.ports import CatalogStore, ProducerIdRecord

__all__ = ["BINDINGS_KEPT", "DIRECT_PRINCIPAL", "ISSUE_ATTEMPTS", "ProducerIds"]

DIRECT_PRINCIPAL: Final = "direct"
"""The principal of every call in direct mode (`Engine` used in-process, no HTTP caller).

Ids issued over the HTTP API are held by the request's IAM caller or JWT subject, so
they cannot be used in direct mode, nor direct-mode ids over HTTP."""

ISSUE_ATTEMPTS: Final = 8
"""Random draws before issuing gives up (each one collides with odds below 2**-40)."""

BINDINGS_KEPT: Final = 100_000
"""Bindings a process remembers (least recently used forgotten first), ~100 B each."""


def _draw_id() -> int:
    """A random producer id from 1 to 2**63 - 1 (a positive int64)."""
    return secrets.randbits(63) or 1


class ProducerIds:
    """Issues producer ids and checks that a caller holds the id it appends under.

    Parameters
    ----------
    catalog
        Where issued ids are registered.
    clock_ms
        Gives ``issued_ms``.
    draw
        Draws a candidate id; `secrets` by default, injected by tests.
    capacity
        Bindings remembered by this process.
    """

    def __init__(
        self,
        catalog: CatalogStore,
        clock_ms: Callable[[], int],
        draw: Callable[[], int] = _draw_id,
        capacity: int = BINDINGS_KEPT,
    ) -> None:
        self._catalog = catalog
        self._clock_ms = clock_ms
        self._draw = draw
        self._capacity = capacity
        self._held: OrderedDict[int, str] = OrderedDict()
        self._lock = threading.Lock()

    def issue(self, principal: str) -> int:
        """A fresh id held by ``principal``, at epoch 0.

        Raises
        ------
        UnavailableError
            Every draw collided with an issued id (practically never).
        """
        for _ in range(ISSUE_ATTEMPTS):
            record = ProducerIdRecord(self._draw(), principal, self._clock_ms())
            if self._catalog.register_producer(record):
                self._remember(record.producer_id, principal)
                return record.producer_id
        raise UnavailableError("no unused producer id was drawn; retry")

    def check(self, producer_id: int, principal: str) -> None:
        """Return if ``principal`` holds ``producer_id``; read from the catalog on a miss.

        Raises
        ------
        UnknownProducerError
            The id was never issued, is held by another principal, or has expired.
        """
        with self._lock:
            holder = self._held.get(producer_id)
            if holder is not None:
                self._held.move_to_end(producer_id)
        if holder is None:
            record = self._catalog.get_producer(producer_id)
            if record is None:
                raise UnknownProducerError(producer_id)
            holder = record.principal
            self._remember(producer_id, holder)
        if holder != principal:
            raise UnknownProducerError(producer_id)

    def _remember(self, producer_id: int, principal: str) -> None:
        with self._lock:
            self._held[producer_id] = principal
            self._held.move_to_end(producer_id)
            while len(self._held) > self._capacity:
                self._held.popitem(last=False)

"""Idempotent producer ids: drawn at random and held by the principal that obtained them.

ADR 0004. An id is a random 63-bit integer, registered in the catalog with a conditional
put (a collision draws again), so no caller can guess another's id or take over one that
will be issued next. An append under an id is accepted only from the principal the
catalog item names, and only until the binding expires: `PRODUCER_ID_RETENTION_MS` (7 days)
after issue or after its last refresh. An append that finds less than `REFRESH_AFTER_MS`
of that left refreshes it (one write, at most once a day per id and process), so an id in
use never expires and an idle one does (ADR 0012, 2.1). The principal of an id never
changes, so each process keeps the bindings it has seen with their expiry: an append reads
the catalog only the first time this process meets an id, or when its cached expiry
passed.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Final

from lakelog.errors import UnavailableError, UnknownProducerError
from lakelog.storage.ports import PRODUCER_ID_RETENTION_MS, CatalogStore, ProducerIdRecord

__all__ = [
    "BINDINGS_KEPT",
    "DIRECT_PRINCIPAL",
    "ISSUE_ATTEMPTS",
    "REFRESH_AFTER_MS",
    "ProducerIds",
    "partition_lane",
]

DIRECT_PRINCIPAL: Final = "direct"
"""The principal of every call in direct mode (`Engine` used in-process, no HTTP caller).

Ids issued over the HTTP API are held by the request's IAM caller or JWT subject, so
they cannot be used in direct mode, nor direct-mode ids over HTTP."""

ISSUE_ATTEMPTS: Final = 8
"""Random draws before issuing gives up (each one collides with odds below 2**-40)."""

BINDINGS_KEPT: Final = 100_000
"""Bindings a process remembers (least recently used forgotten first), ~100 B each."""

REFRESH_AFTER_MS: Final = 24 * 3600 * 1000
"""An append refreshes a binding that was issued or last refreshed this long ago."""


def partition_lane(producer_id: int, partition: int) -> int:
    """The id under which a Kafka producer's state in one partition is kept (ADR 0016, 3).

    Kafka's clients number each partition's records from 0, while a lakelog producer
    numbers the topic's: the gateway appends under ``producer_id`` (whose binding is
    checked) with the state of each partition kept apart, under this id. It is a keyed
    hash into the same 1 … 2**63 - 1 range as drawn ids, so it meets another producer's
    state only with the odds of two random 63-bit ids colliding.
    """
    digest = hashlib.blake2b(
        struct.pack(">qi", producer_id, partition), digest_size=8, person=b"lakelog-lane"
    ).digest()
    return (int.from_bytes(digest, "big") >> 1) or 1


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
        self._held: OrderedDict[int, ProducerIdRecord] = OrderedDict()
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
                self._remember(record)
                return record.producer_id
        raise UnavailableError("no unused producer id was drawn; retry")

    def check(self, producer_id: int, principal: str) -> None:
        """Return if ``principal`` holds ``producer_id``; read from the catalog on a miss
        or when the cached binding looks expired, and refresh a binding due for it.

        Raises
        ------
        UnknownProducerError
            The id was never issued, is held by another principal, or has expired.
        """
        now = self._clock_ms()
        with self._lock:
            record = self._held.get(producer_id)
            if record is not None:
                self._held.move_to_end(producer_id)
        if record is None or record.expires_ms < now:
            record = self._catalog.get_producer(producer_id)
            if record is None:
                raise UnknownProducerError(producer_id)
            self._remember(record)
        if record.principal != principal or record.expires_ms < now:
            raise UnknownProducerError(producer_id)
        if record.expires_ms - now <= PRODUCER_ID_RETENTION_MS - REFRESH_AFTER_MS:
            self._refresh(record, now)

    def _refresh(self, record: ProducerIdRecord, now: int) -> None:
        """Move the binding's expiry to a full retention from ``now``."""
        if self._catalog.refresh_producer(record.producer_id, record.principal, now):
            self._remember(replace(record, refreshed_ms=now))

    def _remember(self, record: ProducerIdRecord) -> None:
        with self._lock:
            self._held[record.producer_id] = record
            self._held.move_to_end(record.producer_id)
            while len(self._held) > self._capacity:
                self._held.popitem(last=False)

"""Topic administration: create, describe, list, alter, add partitions, delete."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from lakelog.config import TopicConfig
from lakelog.errors import (
    InvalidRequestError,
    StaleTopicError,
    TopicExistsError,
    TopicNotFoundError,
    UnavailableError,
)
from lakelog.limits import MAX_PARTITIONS, validate_topic_name
from lakelog.log.chain import genesis, seal_after
from lakelog.log.records import ChainMeta
from lakelog.service.context import EngineContext
from lakelog.service.levels import read_levels
from lakelog.service.producers import DIRECT_PRINCIPAL, ProducerIds
from lakelog.storage.ports import ChainConflict, TopicRecord
from lakelog.types import PartitionInfo, TopicDescription

__all__ = ["TopicAdmin"]


DELETE_ATTEMPTS = 5
"""Times a delete re-reads a topic that concurrent alters keep changing before it gives up."""
SEAL_ATTEMPTS = 100
"""Times a delete re-reads the chain's tail when appends keep taking the seq it wanted."""


def _validate_partitions(partitions: object) -> int:
    if isinstance(partitions, bool) or not isinstance(partitions, int):
        raise InvalidRequestError(f"partitions must be an integer, not {partitions!r}")
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise InvalidRequestError(f"partitions must be between 1 and {MAX_PARTITIONS}")
    return partitions


class TopicAdmin:
    """Use cases on topics as a whole."""

    def __init__(self, context: EngineContext, producers: ProducerIds | None = None) -> None:
        self._ctx = context
        self._producers = producers or ProducerIds(context.catalog, context.clock_ms)

    def create_topic(
        self, name: str, partitions: int = 1, config: dict[str, Any] | None = None
    ) -> TopicDescription:
        """Create a topic; raises `TopicExistsError` if the name is taken.

        The chain's meta item and genesis are written under a fresh topic id before the
        catalog item that makes the topic visible, so a crash in between leaves nothing a
        reader can see. The id's deleted-topic marker is put first and forgotten last: gc
        purges the chain of a create that stopped in between (ADR 0013, 3.4).
        """
        validate_topic_name(name)
        count = _validate_partitions(partitions)
        parsed = TopicConfig.parse(config)
        now = self._ctx.clock_ms()
        topic = TopicRecord(
            name=name,
            topic_id=uuid.uuid4().hex,
            partitions=count,
            config=parsed.model_dump(),
            created_ms=now,
        )
        catalog = self._ctx.catalog
        catalog.mark_deleted_topic(topic, now)
        self._ctx.ledger.create_chain(topic.topic_id, ChainMeta(), genesis(count, now))
        if not catalog.create_topic(topic):
            self._ctx.ledger.delete_chain(topic.topic_id)
            catalog.forget_deleted_topic(topic.topic_id)
            raise TopicExistsError(name)
        catalog.forget_deleted_topic(topic.topic_id)
        self._ctx.caches.topics.put(topic)
        return self._describe(topic)

    def list_topics(self) -> list[str]:
        """Names of every topic, sorted."""
        return sorted(topic.name for topic in self._ctx.catalog.list_topics())

    def describe_topic(self, name: str, *, levels: bool = False) -> TopicDescription:
        """A topic's config and the state of each partition (read strongly).

        Parameters
        ----------
        name
            The topic.
        levels
            Also count its segments and bytes per storage level (L0 flush segments, L1
            merged segments; `lakelog.service.levels`). Without it a describe is one
            request to the ledger; with it, one GetItem more plus one Query per 1,000 L1
            entries (about a GiB of merged data) of each merged partition.
        """
        return self._describe(self._ctx.current_topic(name), levels=levels)

    def _describe(self, topic: TopicRecord, *, levels: bool = False) -> TopicDescription:
        try:
            state = self._ctx.topic_state(topic)
        except StaleTopicError:
            raise TopicNotFoundError(topic.name) from None
        totals, shares = None, None
        if levels:
            totals, shares = read_levels(
                self._ctx.ledger, topic.topic_id, topic.partitions, state.tail, state.meta
            )
        infos = [
            PartitionInfo(
                partition=partition,
                log_start_offset=state.log_start_offset(partition),
                high_watermark=state.high_watermark(partition),
                bytes=state.size_bytes(partition),
                levels=None if shares is None else shares[partition],
            )
            for partition in range(topic.partitions)
        ]
        return TopicDescription(
            name=topic.name,
            topic_id=topic.topic_id,
            config=dict(topic.config),
            partitions=infos,
            levels=totals,
        )

    def alter_topic(
        self, name: str, config: dict[str, Any] | None = None, partitions: int | None = None
    ) -> TopicDescription:
        """Change config keys given in ``config`` and/or grow to ``partitions``.

        Partitions can only be added, never removed (keys would move otherwise). Adding
        them changes only the catalog: the next append that routes over the larger count
        extends the chain's snapshot (ADR 0012).
        """
        validate_topic_name(name)
        topic = self._ctx.catalog.get_topic(name)
        if topic is None:
            raise TopicNotFoundError(name)
        new_config = TopicConfig.parse(config, base=TopicConfig.parse(topic.config)).model_dump()
        count = topic.partitions
        if partitions is not None:
            count = _validate_partitions(partitions)
            if count < topic.partitions:
                raise InvalidRequestError(
                    f"topic {name!r} has {topic.partitions} partitions; "
                    "partitions can only be added"
                )
        updated = replace(topic, partitions=count, config=new_config, version=topic.version + 1)
        if not self._ctx.catalog.update_topic(updated, expected_version=topic.version):
            self._ctx.caches.topics.invalidate(name)
            raise InvalidRequestError(
                f"topic {name!r} was changed or deleted concurrently; read it and retry"
            )
        self._ctx.caches.topics.put(updated)
        return self._describe(updated)

    def delete_topic(self, name: str) -> None:
        """Delete a topic; its ledger and segments are left to gc (ADR 0012, 1.8).

        0. Put the deleted-topic marker, so that gc can finish a deletion that stops.
        1. Seal the chain: an item at the tail's next seq that no append can follow, so
           from then on no append commits, whatever another process has cached.
        2. Mark the meta item sealed, so that a fetch sees the deletion in its one query.
        3. Swap the catalog item for the marker in one transaction, if the topic still has
           the id and version read.

        Once the name is free for a new topic, nothing of the old one is writable or
        readable. A crash before step 3 leaves the topic named but sealed (appends and
        fetches report it as not found): running the delete again completes it, and so
        does gc. gc purges the chain, the meta item and the segments after its grace
        period (ADR 0005).
        """
        validate_topic_name(name)
        self._ctx.caches.topics.invalidate(name)
        self._delete(name, topic_id=None)

    def complete_delete(self, name: str, topic_id: str) -> None:
        """Finish an interrupted deletion of the topic ``name`` if it still has ``topic_id``.

        Raises `TopicNotFoundError` when the name is gone or names another topic.
        """
        self._delete(name, topic_id)

    def _delete(self, name: str, topic_id: str | None) -> None:
        for _attempt in range(DELETE_ATTEMPTS):
            topic = self._ctx.catalog.get_topic(name)
            if topic is None or topic_id not in (None, topic.topic_id):
                raise TopicNotFoundError(name)
            self._ctx.catalog.mark_deleted_topic(topic, self._ctx.clock_ms())
            self.seal(topic.topic_id)
            if self._ctx.catalog.delete_topic(topic, self._ctx.clock_ms()):
                break
        else:
            raise InvalidRequestError(
                f"topic {name!r} kept changing while it was being deleted; retry the delete"
            )
        self._ctx.caches.chain.forget(topic.topic_id)

    def seal(self, topic_id: str) -> None:
        """Seal the topic's chain and mark its meta item sealed (steps 1 and 2 of a delete).

        Idempotent: a chain already sealed is left as it is. A chain without a meta item
        (never fully created, or purged) has nothing to seal.
        """
        ledger = self._ctx.ledger
        for _attempt in range(SEAL_ATTEMPTS):
            found = ledger.read_tail(topic_id)
            if found is None:
                return
            tail, meta = found
            if tail.kind != "seal":
                try:
                    ledger.put_item(topic_id, seal_after(tail, self._ctx.clock_ms()))
                except ChainConflict:
                    continue
            if meta.sealed_ms is not None:
                return
            sealed = replace(meta, sealed_ms=self._ctx.clock_ms())
            if ledger.update_meta(topic_id, sealed, expected_version=meta.version):
                return
        raise UnavailableError(f"topic {topic_id} could not be sealed; retry the delete")

    def init_producer_id(self, principal: str = DIRECT_PRINCIPAL) -> int:
        """A new idempotent producer id (epoch 0), held by ``principal`` alone.

        Random and unguessable (ADR 0004); an append under it from any other principal is
        refused with `UnknownProducerError`. Direct mode's principal is `DIRECT_PRINCIPAL`.
        """
        return self._producers.issue(principal)

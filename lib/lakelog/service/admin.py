"""Topic administration: create, describe, list, alter, add partitions, delete."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from lakelog.config import TopicConfig
from lakelog.errors import InvalidRequestError, TopicExistsError, TopicNotFoundError
from lakelog.limits import MAX_PARTITIONS, validate_topic_name
from lakelog.log.chain import genesis
from lakelog.log.records import ChainMeta
from lakelog.service.context import EngineContext
from lakelog.service.producers import DIRECT_PRINCIPAL, ProducerIds
from lakelog.storage.keys import partition_pk
from lakelog.storage.ports import TopicRecord
from lakelog.types import PartitionInfo, TopicDescription

__all__ = ["TopicAdmin"]


DELETE_ATTEMPTS = 5
"""Times a delete re-reads a topic that concurrent alters keep changing before it gives up."""


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

        The heads are written under a fresh topic id before the catalog item that makes
        the topic visible, so a crash in between leaves nothing a reader can see.
        """
        validate_topic_name(name)
        count = _validate_partitions(partitions)
        parsed = TopicConfig.parse(config)
        topic = TopicRecord(
            name=name,
            topic_id=uuid.uuid4().hex,
            partitions=count,
            config=parsed.model_dump(),
            created_ms=self._ctx.clock_ms(),
        )
        pks = [partition_pk(topic.topic_id, p) for p in range(count)]
        self._ctx.ledger.create_heads(pks)
        chains = self._ctx.ledger.chains
        chains.create_chain(topic.topic_id, ChainMeta(), genesis(count, topic.created_ms))
        if not self._ctx.catalog.create_topic(topic):
            for pk in pks:
                self._ctx.ledger.delete_partition(pk)
            chains.delete_chain(topic.topic_id)
            raise TopicExistsError(name)
        self._ctx.caches.topics.put(topic)
        return self._describe(topic)

    def list_topics(self) -> list[str]:
        """Names of every topic, sorted."""
        return sorted(topic.name for topic in self._ctx.catalog.list_topics())

    def describe_topic(self, name: str) -> TopicDescription:
        """A topic's config and the state of each partition (read strongly)."""
        return self._describe(self._ctx.current_topic(name))

    def _describe(self, topic: TopicRecord) -> TopicDescription:
        pks = [partition_pk(topic.topic_id, p) for p in range(topic.partitions)]
        heads = self._ctx.ledger.read_heads(pks)
        self._ctx.caches.heads.update(heads)
        infos = []
        for partition, pk in enumerate(pks):
            head = heads.get(pk)
            if head is None:
                raise TopicNotFoundError(topic.name)
            infos.append(
                PartitionInfo(
                    partition=partition,
                    log_start_offset=head.log_start_offset,
                    high_watermark=head.high_watermark,
                    bytes=head.size_bytes,
                )
            )
        return TopicDescription(
            name=topic.name, topic_id=topic.topic_id, config=dict(topic.config), partitions=infos
        )

    def alter_topic(
        self, name: str, config: dict[str, Any] | None = None, partitions: int | None = None
    ) -> TopicDescription:
        """Change config keys given in ``config`` and/or grow to ``partitions``.

        Partitions can only be added, never removed (keys would move otherwise).
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
        if count > topic.partitions:
            self._ctx.ledger.create_heads(
                [partition_pk(topic.topic_id, p) for p in range(topic.partitions, count)]
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
        """Delete a topic and its ledger; its segments are left to gc.

        0. Put the deleted-topic marker, so that gc can finish a deletion that stops.
        1. Close every partition: its head is marked closed (no append can commit to it
           any more, and it reads as missing), then its entries are deleted.
        2. Swap the catalog item for the marker in one transaction, if the topic still has
           the id and version read (partitions added meanwhile are closed too).
        3. Delete the closed heads.

        Once the name is free for a new topic, nothing of the old one is writable or
        readable, whatever another process has cached. A crash before step 2 leaves the
        topic named but (partly) closed: running the delete again completes it, and so
        does gc after its grace period. A crash after step 2 leaves closed heads that gc
        removes through the marker (ADR 0005).
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
            pks = [partition_pk(topic.topic_id, p) for p in range(topic.partitions)]
            for pk in pks:
                self._ctx.ledger.close_partition(pk)
            if self._ctx.catalog.delete_topic(topic, self._ctx.clock_ms()):
                break
        else:
            raise InvalidRequestError(
                f"topic {name!r} kept changing while it was being deleted; retry the delete"
            )
        self._ctx.caches.heads.forget(pks)
        for pk in pks:
            self._ctx.ledger.delete_partition(pk)

    def init_producer_id(self, principal: str = DIRECT_PRINCIPAL) -> int:
        """A new idempotent producer id (epoch 0), held by ``principal`` alone.

        Random and unguessable (ADR 0004); an append under it from any other principal is
        refused with `UnknownProducerError`. Direct mode's principal is `DIRECT_PRINCIPAL`.
        """
        return self._producers.issue(principal)

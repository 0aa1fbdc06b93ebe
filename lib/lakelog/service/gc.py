"""Garbage collection of segments no chain item references (invariant 5).

A segment is unreferenced when an append crashed between its PUT and its chain write,
when the compactor merged its chain items into L1 (`lakelog.service.merge`) or expired
it, or when a merge stopped between an L1 segment's PUT and its entries. Only segments older
than the grace period are candidates: an append that has PUT its segment but not yet
moved the ledger must never lose it, so the grace period is longer than the longest
Lambda run (15 minutes).
"""

from __future__ import annotations

from contextlib import suppress

from lakelog.errors import TopicNotFoundError
from lakelog.service.admin import TopicAdmin
from lakelog.service.context import EngineContext
from lakelog.storage.keys import (
    l0_segment_key_from_id,
    segment_created_ms,
    topic_segments_prefix,
)
from lakelog.storage.ports import TopicRecord

__all__ = ["DEFAULT_GRACE_MS", "GarbageCollector"]

DEFAULT_GRACE_MS = 60 * 60 * 1000
"""One hour: four times Lambda's 15-minute limit."""


class GarbageCollector:
    """Finds and deletes unreferenced segments and the storage of deleted topics."""

    def __init__(self, context: EngineContext, grace_ms: int = DEFAULT_GRACE_MS) -> None:
        self._ctx = context
        self._grace_ms = grace_ms

    @property
    def grace_ms(self) -> int:
        """Age below which nothing unreferenced is deleted."""
        return self._grace_ms

    def _referenced(self, topic: TopicRecord) -> set[str]:
        """Segments a chain item (L0) or an L1 entry of any partition names."""
        ledger = self._ctx.ledger
        referenced = {
            l0_segment_key_from_id(topic.topic_id, item.segment_id)
            for item in ledger.chain(topic.topic_id)
            if item.segment_id is not None
        }
        for partition in range(topic.partitions):
            referenced.update(e.segment_key for e in ledger.entries(topic.topic_id, partition))
        return referenced

    def orphan_segments(self, topic_name: str) -> list[str]:
        """Keys of the topic's segments past the grace period that no chain item references.

        The listing is taken before the ledger is read, so a segment whose append
        commits in between is seen as referenced.
        """
        topic = self._ctx.caches.topics.get(topic_name)
        cutoff = self._ctx.clock_ms() - self._grace_ms
        candidates = []
        for info in self._ctx.objects.list(topic_segments_prefix(topic.topic_id)):
            created = segment_created_ms(info.key)
            newest = max(created or 0, info.last_modified_ms)
            if newest <= cutoff:
                candidates.append(info.key)
        if not candidates:
            return []
        referenced = self._referenced(topic)
        return [key for key in candidates if key not in referenced]

    def collect_topic(self, topic_name: str) -> list[str]:
        """Delete the topic's orphan segments; returns the keys deleted."""
        orphans = self.orphan_segments(topic_name)
        self._ctx.objects.delete(orphans)
        return orphans

    def purge_deleted_topics(self) -> list[str]:
        """Remove the ledger items and segments of topics deleted before the grace period.

        Returns the ids of the topics purged. Safe to run again after a crash: each step
        is idempotent and the marker goes last. A marker whose topic still has its name
        comes from a deletion that stopped before the catalog changed: if it had sealed the
        chain, the deletion is completed now and the topic purged by a later pass; if not,
        it never took effect and its marker is dropped.
        """
        cutoff = self._ctx.clock_ms() - self._grace_ms
        purged = []
        for topic in self._ctx.catalog.deleted_topics():
            if (topic.deleted_ms or 0) > cutoff or self._unfinished(topic):
                continue
            self._delete_entries(topic)
            self._ctx.ledger.delete_chain(topic.topic_id)
            prefix = topic_segments_prefix(topic.topic_id)
            self._ctx.objects.delete([info.key for info in self._ctx.objects.list(prefix)])
            self._ctx.catalog.forget_deleted_topic(topic.topic_id)
            purged.append(topic.topic_id)
        return purged

    def _delete_entries(self, topic: TopicRecord) -> None:
        """Delete every L1 entry of the topic's partitions (the merge's, ADR 0012 1.7)."""
        ledger = self._ctx.ledger
        for partition in range(topic.partitions):
            offsets = [entry.last_offset for entry in ledger.entries(topic.topic_id, partition)]
            if offsets:
                ledger.delete_entries(topic.topic_id, partition, offsets)

    def _unfinished(self, marker: TopicRecord) -> bool:
        """Deal with the marker of a deletion that stopped while the topic kept its name.

        True when the topic still had its name (the marker is then completed or dropped);
        False when the topic is gone and the marker is ready to purge.
        """
        current = self._ctx.catalog.get_topic(marker.name)
        if current is None or current.topic_id != marker.topic_id:
            return False
        found = self._ctx.ledger.read_tail(marker.topic_id)
        if found is not None and found[0].kind != "seal" and found[1].sealed_ms is None:
            self._ctx.catalog.forget_deleted_topic(marker.topic_id)
        else:
            with suppress(TopicNotFoundError):
                TopicAdmin(self._ctx).complete_delete(marker.name, marker.topic_id)
        return True

"""The compactor's use cases: enforce retention, merge flush segments, collect garbage.

A compactor *pass* visits every topic that has work (`Compactor.topics_needing_work`),
then runs `Compactor.compact_topic` on each until it reports ``done`` (every call does a
bounded amount of work, so a Lambda task never runs long), then `Compactor.collect`
(gc of unreferenced segments and of deleted topics' storage). The Step Functions state
machine of each deployment (``functions/compactor``), ``lakelog compact`` and
``lakelog dev`` all run passes through these three calls. The protocol, its order of
writes and its failure cases are in ADR 0013.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CompactionSettings", "CompactionStep", "GcReport"]


@dataclass(frozen=True, slots=True)
class CompactionSettings:
    """How much one step may do, and the merge's target size."""

    max_items_per_step: int = 1_000
    """Chain items one `compact_topic` call reads at most."""
    target_l1_bytes: int = 64 << 20
    """Size an L1 segment is merged up to (or a partition's whole tail if smaller)."""


@dataclass(frozen=True, slots=True)
class CompactionStep:
    """What one `compact_topic` call did (or, with ``dry_run``, would do).

    ``done`` False: call again, there is more work for this topic in this pass.
    """

    topic: str
    done: bool
    log_start_offsets: dict[int, int] = field(default_factory=dict)
    """Partitions whose ``log_start_offset`` moved, and where to."""
    bytes_expired: int = 0
    items_removed: int = 0
    """Chain items deleted (wholly below every partition's log start, or merged)."""
    segments_merged: int = 0
    """L0 segments whose records now live in L1 segments."""
    actions: tuple[str, ...] = ()
    """One line per action, for ``lakelog compact --dry-run`` and logs."""


@dataclass(frozen=True, slots=True)
class GcReport:
    """What `Compactor.collect` deleted."""

    segments_deleted: int = 0
    topics_purged: int = 0


# The `Compactor` class (topics_needing_work, compact_topic(topic, dry_run=False) ->
# CompactionStep, collect() -> GcReport) is built on these types; see ADR 0013.

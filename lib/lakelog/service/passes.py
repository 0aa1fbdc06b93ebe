"""One compactor pass over the three calls of `Compactor`, as every driver runs it.

The Step Functions state machine runs a pass as separate Lambda tasks (list, per-topic
loop, collect); ``lakelog compact`` and the passes of ``lakelog dev`` run it in one process
through `run_pass`. Both go through `CompactorCalls`, so they drive the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from lakelog.errors import TopicNotFoundError
from lakelog.service.compactor import CompactionStep, GcReport

__all__ = ["CompactorCalls", "PassReport", "run_pass", "run_topic"]


class CompactorCalls(Protocol):
    """The three calls of `lakelog.service.compactor.Compactor` a pass is made of."""

    def topics_needing_work(self) -> list[str]:
        """Names of the topics a pass visits."""
        ...

    def compact_topic(self, topic: str, *, dry_run: bool = False) -> CompactionStep:
        """One bounded step of ``topic``; call again while ``done`` is False."""
        ...

    def collect(self, *, full: bool = True) -> GcReport:
        """Delete what nothing references any more (past the grace period); ``full``:
        scan every topic's segments for orphans too."""
        ...


@dataclass(slots=True)
class PassReport:
    """What a pass did: every step of every topic, and gc's report (None in a dry run)."""

    steps: list[CompactionStep] = field(default_factory=list)
    gc: GcReport | None = None


def run_topic(
    compactor: CompactorCalls,
    topic: str,
    *,
    dry_run: bool = False,
    keep_going: Callable[[], bool] = lambda: True,
    on_step: Callable[[CompactionStep], None] | None = None,
    listed: bool = False,
) -> list[CompactionStep]:
    """Steps of ``topic`` until one is ``done`` or ``keep_going`` says stop.

    ``keep_going`` is asked after every step that is not done (a Lambda task stops before
    its deadline); a dry run stops after its first step, since it changes nothing that
    would let a second step see further. With ``listed`` (the topic comes from
    ``topics_needing_work``), a topic deleted since is one ``done`` step that did nothing,
    not an error: a user deleting a topic must not fail the pass (and its gc).

    Raises
    ------
    TopicNotFoundError
        No topic of that name, unless ``listed``.
    """
    steps: list[CompactionStep] = []
    while True:
        try:
            step = compactor.compact_topic(topic, dry_run=dry_run)
        except TopicNotFoundError:
            if not listed:
                raise
            step = CompactionStep(topic, done=True, actions=(f"topic {topic} is gone",))
        steps.append(step)
        if on_step is not None:
            on_step(step)
        if step.done or dry_run or not keep_going():
            return steps


def run_pass(
    compactor: CompactorCalls,
    topics: Iterable[str] | None = None,
    *,
    dry_run: bool = False,
    on_step: Callable[[CompactionStep], None] | None = None,
    keep_going: Callable[[], bool] = lambda: True,
    full_gc: bool = True,
) -> PassReport:
    """A whole pass: each topic (``topics``, or those needing work) to done, then gc
    (``full_gc``: with the scan of every topic's segments for orphans, ADR 0013 5.1).

    A listed topic deleted while the pass runs is skipped; one of ``topics`` that does not
    exist raises `TopicNotFoundError`.

    A dry run reports what the first step of each topic would do and skips gc. When
    ``keep_going`` says stop (asked after every step), the pass ends there, gc included:
    the next pass carries on (a stopping ``lakelog dev`` must not wait for a long pass).
    """
    report = PassReport()
    names = compactor.topics_needing_work() if topics is None else list(topics)
    for name in names:
        if not keep_going():
            return report
        report.steps.extend(
            run_topic(
                compactor,
                name,
                dry_run=dry_run,
                keep_going=keep_going,
                on_step=on_step,
                listed=topics is None,
            )
        )
    if not dry_run and keep_going():
        report.gc = compactor.collect(full=full_gc)
    return report

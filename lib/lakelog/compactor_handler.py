"""The compactor's Lambda tasks: list the topics, compact one topic, collect garbage.

The state machine of each deployment (ADR 0013) calls three functions built from this
module, one per task, so each gets only the permissions its task needs:

==================  ============================  =============================================
task                input                         output
==================  ============================  =============================================
``list_topics``     anything                      ``{"topics": [name, ...]}``
``compact_topic``   ``{"topic": name}``           ``{"topic", "done", "steps", counters...}``
``collect``         ``{"gc"?: "full"|"light"}``   ``{"gc", "segments_deleted", "topics_purged"}``
==================  ============================  =============================================

``collect`` runs the full gc (a scan of every topic's segments for orphans) unless the
pass's input says ``"gc": "light"``: the 5-minute schedule starts light passes, a daily
one a full pass (ADR 0013, 5.1); an execution started by hand without input is full.

``compact_topic`` runs steps until the topic is done or the Lambda deadline nears (less
than the reserve left, `STEP_RESERVE_MS` by default); the state machine calls it again
while ``done`` is false. A topic deleted after ``list_topics`` named it is ``done`` at
once (a user deleting a topic must not fail the pass and skip its gc); an event that is
not an object naming a topic is refused with `InvalidRequestError`. The handlers are built
once per process (`make_task_handlers`), at cold start in Lambda, and on any engine in
tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aws_lambda_powertools.metrics import MetricUnit

from lakelog.api.settings import ApiSettings
from lakelog.errors import InvalidRequestError
from lakelog.service.compactor import CompactionSettings, CompactionStep
from lakelog.service.engine import Engine
from lakelog.service.passes import CompactorCalls, run_topic
from lakelog.telemetry import NAMESPACE, Handler, Telemetry, remaining_ms

__all__ = [
    "GC_MODES",
    "METRICS",
    "NAMESPACE",
    "SERVICE",
    "STEP_RESERVE_MS",
    "TaskHandler",
    "TaskHandlers",
    "compactor_for",
    "compactor_from_env",
    "make_task_handlers",
    "step_totals",
]

SERVICE: Final = "lakelog-compactor"
METRICS: Final = {
    "Passes": MetricUnit.Count,
    "TopicsNeedingWork": MetricUnit.Count,
    "CompactionSteps": MetricUnit.Count,
    "BytesExpired": MetricUnit.Bytes,
    "ChainItemsRemoved": MetricUnit.Count,
    "L1EntriesRemoved": MetricUnit.Count,
    "RecordsCompacted": MetricUnit.Count,
    "SegmentsMerged": MetricUnit.Count,
    "BytesMerged": MetricUnit.Bytes,
    "L0BacklogAge": MetricUnit.Seconds,
    "SegmentsDeleted": MetricUnit.Count,
    "TopicsPurged": MetricUnit.Count,
    "TaskFailures": MetricUnit.Count,
}
"""What the tasks publish (namespace `NAMESPACE`, dimension ``service`` = `SERVICE`), summed
per pass on the dashboard, except ``L0BacklogAge`` (its maximum is what the alarm watches).

``Passes``: one per ``list_topics``, the first task of every pass. ``L0BacklogAge``: one per
``compact_topic`` call, the last step's `CompactionStep.l0_backlog_ms` in seconds, with the
topic as a property of the record (not a dimension: one metric for all topics).
``TaskFailures``: one per task call that raised (each retry counts)."""
GC_MODES: Final = ("full", "light")
"""What a pass's ``gc`` input may say; without it a pass runs the full gc."""
STEP_RESERVE_MS: Final = 20_000
"""A step starts only while this much time is left before the Lambda deadline: one step
reads at most `CompactionSettings.max_items_per_step` chain items and writes one merged
segment, which takes seconds, not tens of seconds."""

TaskHandler = Handler
"""A Lambda handler: (event, context) -> JSON-serializable output."""


@dataclass(frozen=True, slots=True)
class TaskHandlers:
    """The three task handlers of one compactor."""

    list_topics: TaskHandler
    compact_topic: TaskHandler
    collect: TaskHandler


def compactor_for(engine: Engine, settings: CompactionSettings | None = None) -> CompactorCalls:
    """The compactor over ``engine``'s stores and gc."""
    from lakelog.service.compactor import Compactor  # noqa: PLC0415

    compactor: CompactorCalls = Compactor(engine.context, engine.gc, settings)
    return compactor


def compactor_from_env(environ: Mapping[str, str]) -> CompactorCalls:
    """The compactor of the deployment ``environ`` names (bucket and tables).

    Raises
    ------
    lakelog.api.settings.SettingsError
        If a name is missing or malformed (fails the cold start).
    """
    names = ApiSettings.from_env(environ).names
    return compactor_for(Engine.from_session(names))


def step_totals(topic: str, steps: list[CompactionStep]) -> dict[str, Any]:
    """The output of ``compact_topic``: the last step's ``done`` and the steps' sums."""
    log_start_offsets: dict[str, int] = {}
    for step in steps:
        log_start_offsets.update({str(p): o for p, o in step.log_start_offsets.items()})
    return {
        "topic": topic,
        "done": steps[-1].done,
        "steps": len(steps),
        "bytes_expired": sum(step.bytes_expired for step in steps),
        "items_removed": sum(step.items_removed for step in steps),
        "entries_removed": sum(step.entries_removed for step in steps),
        "segments_deleted": sum(step.segments_deleted for step in steps),
        "segments_merged": sum(step.segments_merged for step in steps),
        "bytes_merged": sum(step.bytes_merged for step in steps),
        "records_compacted": sum(step.records_compacted for step in steps),
        "l0_backlog_ms": steps[-1].l0_backlog_ms,
        "log_start_offsets": log_start_offsets,
    }


def make_task_handlers(
    compactor: CompactorCalls, *, reserve_ms: int = STEP_RESERVE_MS
) -> TaskHandlers:
    """The task handlers over ``compactor``.

    Parameters
    ----------
    compactor
        What runs the steps (`compactor_for` an engine).
    reserve_ms
        ``compact_topic`` starts no step with less time than this left before the deadline
        (the context's ``get_remaining_time_in_millis``; no context, no deadline).
    """
    telemetry = Telemetry(SERVICE, METRICS)
    logger, metrics, publish = telemetry.logger, telemetry.metrics, telemetry.publish

    def list_topics(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        topics = compactor.topics_needing_work()
        logger.info("topics needing work", extra={"topics": len(topics)})
        publish(Passes=1, TopicsNeedingWork=len(topics))
        return {"topics": topics}

    def compact_topic(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        topic = event.get("topic") if isinstance(event, Mapping) else None
        if not isinstance(topic, str) or not topic:
            raise InvalidRequestError(f"compact_topic needs {{'topic': name}}, got {event!r}")

        def keep_going() -> bool:
            remaining = remaining_ms(context)
            return remaining is None or remaining >= reserve_ms

        # The topic comes from list_topics: one deleted since is done, not a failed pass.
        steps = run_topic(compactor, topic, keep_going=keep_going, listed=True)
        output = step_totals(topic, steps)
        logger.info("compacted", extra=output)
        metrics.add_metadata(key="topic", value=topic)
        publish(
            CompactionSteps=output["steps"],
            BytesExpired=output["bytes_expired"],
            ChainItemsRemoved=output["items_removed"],
            L1EntriesRemoved=output["entries_removed"],
            SegmentsDeleted=output["segments_deleted"],
            SegmentsMerged=output["segments_merged"],
            BytesMerged=output["bytes_merged"],
            RecordsCompacted=output["records_compacted"],
            L0BacklogAge=output["l0_backlog_ms"] // 1000,
        )
        return output

    def collect(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        mode = event.get("gc", "full") if isinstance(event, Mapping) else "full"
        if mode not in GC_MODES:
            raise InvalidRequestError(f"collect's gc is one of {GC_MODES}, got {mode!r}")
        report = compactor.collect(full=mode == "full")
        output = {
            "gc": mode,
            "segments_deleted": report.segments_deleted,
            "topics_purged": report.topics_purged,
        }
        logger.info("collected", extra=output)
        publish(SegmentsDeleted=report.segments_deleted, TopicsPurged=report.topics_purged)
        return output

    def counting_failures(handler: TaskHandler) -> TaskHandler:
        def run(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
            try:
                return handler(event, context)
            except Exception:
                publish(TaskFailures=1)
                raise

        return run

    def wrap(handler: TaskHandler) -> TaskHandler:
        return telemetry.instrument(counting_failures(handler))

    return TaskHandlers(wrap(list_topics), wrap(compact_topic), wrap(collect))

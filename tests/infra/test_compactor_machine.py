"""The synthesized compactor state machine, run by `tests.infra.states` on the real handlers.

Each Task calls, in-process, the handler its function's ``Handler`` names: on moto, the
very module Lambda loads (``functions/compactor/handler.py``, built from the environment
the stack gives it); elsewhere the handlers `make_task_handlers` builds over a scripted
compactor, to drive the loop, the retries and the failure path.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from lakelog import Engine, OffsetOutOfRangeError, Record
from lakelog.compactor_handler import make_task_handlers
from lakelog.environment import ENV_BUCKET, ENV_CATALOG_TABLE, ENV_LEDGER_TABLE
from lakelog.errors import InvalidRequestError, UnavailableError
from lakelog.service.context import now_ms
from lakelog.storage.keys import ResourceNames
from tests.compactor_support import ScriptedCompactor
from tests.infra.states import (
    ExecutionFailedError,
    Interpreter,
    UnsupportedError,
    resolve_definition,
)
from tests.infra.synth import REPO_ROOT, SynthCache, Synthesized
from tests.infra.test_compactor import state_machine_id

pytestmark = [
    pytest.mark.infra,
    # A task that raised added no metric; Powertools warns when it flushes none.
    pytest.mark.filterwarnings("ignore:No application metrics:UserWarning"),
]

HANDLER_MODULE = "functions.compactor.handler."
DAY_MS = 24 * 3600 * 1000
EVENTS = REPO_ROOT / "events"


@dataclass
class Deadline:
    """A Lambda context whose deadline is always ``remaining_ms`` away."""

    remaining_ms: int
    function_name: str = "lakelog-test-compactor"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:test"
    aws_request_id: str = "test"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture(scope="module")
def dev(synth: SynthCache) -> Synthesized:
    return synth.environment("dev")


def interpreter(
    stack: Synthesized, tasks: object, context: Any, sleeps: list[float] | None = None
) -> Interpreter:
    """The stack's machine, each task function running its handler from ``tasks``."""
    functions = stack.resources("AWS::Lambda::Function")

    def invoke(logical_id: str, event: Any) -> Any:
        handler = functions[logical_id]["Properties"]["Handler"]
        assert handler.startswith(HANDLER_MODULE), handler
        run: Callable[[Any, Any], Any] = getattr(tasks, handler.removeprefix(HANDLER_MODULE))
        return run(event, context)

    definition = resolve_definition(stack.template_json, state_machine_id(stack))
    record = sleeps.append if sleeps is not None else (lambda _seconds: None)
    return Interpreter(definition, invoke, record)


def test_one_execution_loops_each_topic_until_done_then_collects(dev: Synthesized) -> None:
    compactor = ScriptedCompactor({"a": 3, "b": 1})
    # Below the reserve: each invocation runs exactly one step, so the machine loops.
    tasks = make_task_handlers(compactor, reserve_ms=10_000)
    machine = interpreter(dev, tasks, Deadline(remaining_ms=5_000))

    output = machine.run({})

    assert output == {"listed": {"topics": ["a", "b"]}}
    assert compactor.calls == [
        "list",
        "compact:a",
        "compact:a",
        "compact:a",
        "compact:b",
        "collect",
    ]
    assert machine.visited.count("TopicDone") == 4
    assert machine.visited[-1] == "Collect"


@pytest.mark.parametrize(
    ("execution_input", "collect_call"),
    [({"gc": "light"}, "collect:light"), ({"gc": "full"}, "collect"), ({}, "collect")],
)
def test_the_execution_input_says_whether_collect_runs_the_full_gc(
    dev: Synthesized, execution_input: dict[str, str], collect_call: str
) -> None:
    # Given the input each schedule gives an execution (or none, started by hand)
    compactor = ScriptedCompactor({"a": 1})
    machine = interpreter(dev, make_task_handlers(compactor), Deadline(remaining_ms=60_000))

    # When the pass runs, then it compacts as always and collects as the input says
    output = machine.run(execution_input)

    assert compactor.calls == ["list", "compact:a", collect_call]
    assert output == {**execution_input, "listed": {"topics": ["a"]}}


def test_collect_refuses_a_gc_mode_it_does_not_know() -> None:
    compactor = ScriptedCompactor({})
    tasks = make_task_handlers(compactor)

    with pytest.raises(InvalidRequestError, match="gc"):
        tasks.collect({"gc": "deep"}, Deadline(remaining_ms=60_000))
    assert compactor.calls == []


def test_one_execution_expires_old_records_on_moto(
    dev: Synthesized,
    make_engine: Callable[..., Engine],
    resources: ResourceNames,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a topic keeping a day of records, with two batches older than that
    engine = make_engine(sleep=lambda _seconds: None)
    engine.create_topic("events", config={"retention_ms": DAY_MS})
    now = now_ms()
    for timestamp in (now - 3 * DAY_MS, now - 2 * DAY_MS, now):
        engine.append("events", [Record(value=b"v", partition=0, timestamp_ms=timestamp)])
    # and the task functions' module loaded as Lambda loads it, from the stack's variables
    for name, value in {
        ENV_BUCKET: resources.bucket,
        ENV_LEDGER_TABLE: resources.ledger_table,
        ENV_CATALOG_TABLE: resources.catalog_table,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delitem(sys.modules, "functions.compactor.handler", raising=False)
    module = importlib.import_module("functions.compactor.handler")

    # When one execution of the synthesized machine runs
    interpreter(dev, module, Deadline(remaining_ms=60_000)).run({})

    # Then the expired batches are below the new log start, and the rest is readable
    [partition] = engine.describe_topic("events").partitions
    assert partition.log_start_offset == 2
    with pytest.raises(OffsetOutOfRangeError):
        engine.fetch("events", 0, 0)
    assert [r.offset for r in engine.fetch("events", 0, 2).records] == [2]


def test_a_task_with_time_left_runs_steps_until_the_topic_is_done() -> None:
    compactor = ScriptedCompactor({"a": 3})
    tasks = make_task_handlers(compactor, reserve_ms=10_000)

    output = tasks.compact_topic({"topic": "a"}, Deadline(remaining_ms=60_000))

    assert output == {
        "topic": "a",
        "done": True,
        "steps": 3,
        "bytes_expired": 0,
        "items_removed": 0,
        "entries_removed": 0,
        "segments_deleted": 0,
        "segments_merged": 6,
        "bytes_merged": 6 << 20,
        "records_compacted": 0,
        "l0_backlog_ms": 0,
        "log_start_offsets": {},
    }


def test_failed_tasks_are_retried_with_exponential_backoff(dev: Synthesized) -> None:
    compactor = ScriptedCompactor({"a": 1}, failures={"list": 2, "compact:a": 1})
    sleeps: list[float] = []
    machine = interpreter(dev, make_task_handlers(compactor), Deadline(60_000), sleeps)

    machine.run({})

    assert compactor.calls == ["list"] * 3 + ["compact:a"] * 2 + ["collect"]
    assert sleeps == [2, 4, 2]


def test_a_task_that_keeps_failing_is_recorded_and_fails_the_execution(dev: Synthesized) -> None:
    compactor = ScriptedCompactor({"a": 1, "b": 1}, failures={"compact:a": 10})
    machine = interpreter(dev, make_task_handlers(compactor), Deadline(60_000))

    with pytest.raises(ExecutionFailedError) as failed:
        machine.run({})

    assert failed.value.error == "CompactorPassFailed"
    assert "UnavailableError" in failed.value.cause and "compact:a failed" in failed.value.cause
    assert compactor.calls.count("compact:a") == 4  # the call and three retries
    assert "collect" not in compactor.calls
    assert machine.visited[-2:] == ["RecordFailure", "PassFailed"]


def test_the_interpreter_refuses_what_it_does_not_implement(dev: Synthesized) -> None:
    definition = resolve_definition(dev.template_json, state_machine_id(dev))
    definition["States"]["ListTopics"]["InputPath"] = "$.x"
    tasks = make_task_handlers(ScriptedCompactor({}))
    machine = Interpreter(definition, lambda _id, event: event, lambda _seconds: None)

    with pytest.raises(UnsupportedError, match="InputPath"):
        machine.run({})
    definition["States"]["ListTopics"] = {"Type": "Wait", "Seconds": 1, "Next": "EachTopic"}
    with pytest.raises(UnsupportedError, match="Wait"):
        Interpreter(definition, lambda _id, event: tasks.collect(event, None), print).run({})


def test_the_sample_events_are_what_the_tasks_take_and_give() -> None:
    samples = {
        path.stem: json.loads(path.read_text()) for path in (EVENTS / "compactor").glob("*.json")
    }
    tasks = make_task_handlers(ScriptedCompactor({"orders": 3}), reserve_ms=10_000)
    context = Deadline(remaining_ms=5_000)  # one step per call

    assert tasks.list_topics(samples["list_topics"], context) == {"topics": ["orders"]}
    first = tasks.compact_topic(samples["compact_topic"], context)
    assert set(first) == set(samples["compact_topic_again"])
    assert tasks.compact_topic(samples["compact_topic_again"], context)["topic"] == "orders"
    assert tasks.collect(samples["collect"], context) == {
        "gc": "light",
        "segments_deleted": 1,
        "topics_purged": 0,
    }
    assert tasks.collect(samples["collect_full"], context)["gc"] == "full"


def test_compact_topic_without_a_topic_is_refused_before_any_step() -> None:
    compactor = ScriptedCompactor({"orders": 1})
    tasks = make_task_handlers(compactor)

    for event in ({}, {"topic": ""}, {"topic": 7}):
        with pytest.raises(InvalidRequestError, match="needs"):
            tasks.compact_topic(event, Deadline(remaining_ms=60_000))
    assert compactor.calls == []


def _emf(output: str) -> list[dict[str, Any]]:
    """The EMF records Powertools printed, each checked for its namespace and dimension."""
    records = [json.loads(line) for line in output.splitlines() if '"_aws"' in line]
    for record in records:
        [directive] = record["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "lakelog"
        assert directive["Dimensions"] == [["service"]]
        assert record["service"] == "lakelog-compactor"
    return records


def _units(record: dict[str, Any]) -> dict[str, str]:
    [directive] = record["_aws"]["CloudWatchMetrics"]
    return {metric["Name"]: metric["Unit"] for metric in directive["Metrics"]}


def test_compact_topic_publishes_what_it_did_as_metrics(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    tasks = make_task_handlers(ScriptedCompactor({"orders": 3}))

    tasks.compact_topic({"topic": "orders"}, Deadline(remaining_ms=60_000))

    [emf] = _emf(capsys.readouterr().out)
    assert (emf["CompactionSteps"], emf["SegmentsMerged"], emf["BytesExpired"]) == ([3], [6], [0])
    assert (emf["BytesMerged"], emf["L0BacklogAge"]) == ([6 << 20], [0])
    assert (emf["ChainItemsRemoved"], emf["L1EntriesRemoved"]) == ([0], [0])
    assert emf["RecordsCompacted"] == [0]


def test_a_pass_of_the_sample_events_publishes_passes_work_and_backlog_per_topic(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a topic whose mergeable items have waited 90 minutes, compacted one step a call
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    samples = {
        path.stem: json.loads(path.read_text()) for path in (EVENTS / "compactor").glob("*.json")
    }
    tasks = make_task_handlers(
        ScriptedCompactor({"orders": 2}, backlog_ms=90 * 60_000), reserve_ms=10_000
    )
    context = Deadline(remaining_ms=5_000)

    # When the tasks run on the sample events, as one pass's state machine calls them
    tasks.list_topics(samples["list_topics"], context)
    tasks.compact_topic(samples["compact_topic"], context)
    tasks.compact_topic(samples["compact_topic_again"], context)
    tasks.collect(samples["collect"], context)

    # Then one pass is counted; each compact_topic call publishes its work and the topic's
    # backlog age in seconds, naming the topic without making it a dimension
    listed, first, again, collected = _emf(capsys.readouterr().out)
    assert (listed["Passes"], listed["TopicsNeedingWork"]) == ([1], [1])
    assert _units(listed)["Passes"] == "Count"
    assert (first["topic"], first["L0BacklogAge"], first["BytesMerged"]) == (
        "orders",
        [5400],
        [2 << 20],
    )
    assert _units(first) == _units(again)
    assert {name: _units(first)[name] for name in ("L0BacklogAge", "BytesMerged")} == {
        "L0BacklogAge": "Seconds",
        "BytesMerged": "Bytes",
    }
    assert (again["topic"], again["L0BacklogAge"]) == ("orders", [0])
    assert collected["SegmentsDeleted"] == [1]
    assert "topic" not in collected and "Passes" not in collected


def test_a_failing_task_publishes_a_task_failure_and_still_raises(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    compactor = ScriptedCompactor({"orders": 1}, failures={"compact:orders": 1, "collect": 1})
    tasks = make_task_handlers(compactor)

    with pytest.raises(UnavailableError):
        tasks.compact_topic({"topic": "orders"}, Deadline(remaining_ms=60_000))
    with pytest.raises(UnavailableError):
        tasks.collect({}, Deadline(remaining_ms=60_000))
    tasks.compact_topic({"topic": "orders"}, Deadline(remaining_ms=60_000))

    failed_compact, failed_collect, succeeded = _emf(capsys.readouterr().out)
    assert failed_compact["TaskFailures"] == [1]
    assert failed_collect["TaskFailures"] == [1]
    assert "TaskFailures" not in succeeded
    assert succeeded["CompactionSteps"] == [1]

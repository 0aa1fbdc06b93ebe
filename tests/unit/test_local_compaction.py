"""The dev server's compactor passes: one at a time, on request and on a schedule."""

from __future__ import annotations

import json
import threading
import time
from http import HTTPStatus

from lakelog.local.compaction import LocalCompactor
from lakelog.service.compactor import CompactionStep, GcReport
from lakelog.service.passes import run_pass
from tests.compactor_support import ScriptedCompactor

WAIT_S = 60.0
"""Longest a test waits for the scheduler thread: a backstop only a hang reaches (a loaded
machine may stall a thread for seconds)."""


def test_a_requested_pass_steps_each_topic_to_done_then_collects() -> None:
    compactor = ScriptedCompactor({"a": 2, "b": 1})
    local = LocalCompactor(lambda: compactor, every=0)

    status, reply = local.reply(b"{}")

    assert status == HTTPStatus.OK
    assert [(s["topic"], s["done"]) for s in reply["steps"]] == [
        ("a", False),
        ("a", True),
        ("b", True),
    ]
    assert reply["gc"] == {"segments_deleted": 1, "topics_purged": 0}
    assert compactor.calls == ["list", "compact:a", "compact:a", "compact:b", "collect"]


def test_a_dry_run_of_one_topic_takes_one_step_and_skips_gc() -> None:
    compactor = ScriptedCompactor({"a": 3, "b": 1})

    report = run_pass(compactor, ["a"], dry_run=True)

    assert [step.topic for step in report.steps] == ["a"]
    assert report.gc is None
    assert compactor.calls == ["compact:a"]


def test_bad_requests_are_refused_with_the_apis_error_body() -> None:
    local = LocalCompactor(lambda: ScriptedCompactor({"a": 1}), every=0)

    for body in (b"[1]", b"not json", b'{"topic": 3}', b'{"dry_run": "yes"}', b'{"x": 1}'):
        status, reply = local.reply(body)
        assert status == HTTPStatus.BAD_REQUEST, body
        assert reply["error"] == "invalid_request"
    status, reply = local.reply(b'{"topic": "a", "dry_run": true}')
    assert status == HTTPStatus.OK
    assert json.loads(json.dumps(reply))["steps"][0]["topic"] == "a"


def test_bodies_json_parsers_choke_on_are_refused_as_bad_requests() -> None:
    # Nesting deeper than Python's recursion limit, an integer of more digits than it
    # converts, a non-number: each an invalid_request, never an exception out of the route
    local = LocalCompactor(lambda: ScriptedCompactor({"a": 1}), every=0)

    for body in (b"[" * 100_000, b'{"topic": ' + b"9" * 5_000 + b"}", b'{"dry_run": NaN}'):
        status, reply = local.reply(body)
        assert status == HTTPStatus.BAD_REQUEST, body[:20]
        assert reply["error"] == "invalid_request"


def test_a_failing_call_answers_with_its_error() -> None:
    local = LocalCompactor(lambda: ScriptedCompactor({"a": 1}, failures={"list": 1}), every=0)

    status, reply = local.reply(b"{}")

    assert status == HTTPStatus.SERVICE_UNAVAILABLE
    assert reply["error"] == "unavailable"


class _Signalling(ScriptedCompactor):
    def __init__(self) -> None:
        super().__init__({})
        self.collected = threading.Event()

    def collect(self, *, full: bool = True) -> GcReport:
        report = super().collect(full=full)
        self.collected.set()
        return report


def test_scheduled_passes_run_in_the_background_and_survive_a_failed_pass() -> None:
    compactor = _Signalling()
    compactor.failures["list"] = 1  # the first scheduled pass fails
    local = LocalCompactor(lambda: compactor, every=0.001)

    local.start()
    try:
        assert compactor.collected.wait(timeout=WAIT_S)
    finally:
        local.stop(timeout=WAIT_S)  # the pass that collected ends before its count is read

    assert compactor.calls[:3] == ["list", "list", "collect"]
    assert local.passes >= 1


def test_scheduled_passes_run_the_full_gc_at_most_every_full_gc_every_requested_ones_always() -> (
    None
):
    compactor = ScriptedCompactor({})
    now = [0.0]
    local = LocalCompactor(lambda: compactor, every=0, full_gc_every=3600, clock=lambda: now[0])

    for at in (0, 60, 3540, 3600, 3660):  # scheduled passes at these seconds
        now[0] = at
        local.run_scheduled()
    now[0] = 3720
    local.reply(b"{}")  # lakelog compact
    now[0] = 3780
    local.run_scheduled()

    gc_calls = [call for call in compactor.calls if call.startswith("collect")]
    assert gc_calls == [
        "collect",
        "collect:light",
        "collect:light",
        "collect",
        "collect:light",
        "collect",
        "collect:light",
    ]


def test_no_schedule_when_every_is_zero() -> None:
    compactor = ScriptedCompactor({})
    local = LocalCompactor(lambda: compactor, every=0)

    local.start()
    local.stop()

    assert compactor.calls == []


class _Blocking(ScriptedCompactor):
    """A compactor whose first step waits until the test lets it go."""

    def __init__(self) -> None:
        super().__init__({"a": 1000, "b": 1})
        self.stepping = threading.Event()
        self.release = threading.Event()

    def compact_topic(self, topic: str, *, dry_run: bool = False) -> CompactionStep:
        self.stepping.set()
        assert self.release.wait(timeout=WAIT_S)
        return super().compact_topic(topic, dry_run=dry_run)


def test_stopping_ends_a_running_pass_after_its_current_step() -> None:
    # Given a scheduled pass in its first step of a topic that needs 1,000 steps
    compactor = _Blocking()
    local = LocalCompactor(lambda: compactor, every=0.001)
    local.start()
    assert compactor.stepping.wait(timeout=WAIT_S)

    # When the dev server stops while that step runs (not waiting), and the step ends
    local.stop(timeout=0)
    compactor.release.set()
    deadline = time.monotonic() + WAIT_S
    while local.passes == 0 and time.monotonic() < deadline:
        time.sleep(0.001)

    # Then the pass ended after that step: no other topic, no gc
    assert local.passes == 1
    assert compactor.calls == ["list", "compact:a"]

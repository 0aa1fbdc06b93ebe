"""Subscriptions under ``lakelog dev``, end to end: records produced over HTTP reach a
``local:`` function in the server's process as Powertools' `KafkaEvent`, in order per
partition and in batches of at most ``batch_size``; a batch the function keeps failing
lands in the on-failure topic after its retries while later records still arrive, and
``lakelog subscribe describe`` ends at lag 0. Waits poll the server's output with a
backstop; nothing sleeps."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from lakelog.local.process import DevProcess
from tests.e2e.conftest import REPO, create_topic, produce
from tests.e2e.test_dev_server import fetch_all, unb64
from tests.e2e.trigger_function import MARKER, POISON

FUNCTION = "local:tests.e2e.trigger_function:handler"
BACKSTOP_SECONDS = 120.0
"""Longest wait for a delivery; only a server that never delivers reaches it."""
LAKELOG = str(Path(sys.executable).parent / "lakelog")
"""The ``lakelog`` console script of the environment running the tests."""


def batches(dev: DevProcess, topic: str) -> list[list[list[Any]]]:
    """The records of each invocation the function printed for ``topic``, in order."""
    found = []
    for line in list(dev.lines):
        if line.startswith(MARKER):
            batch = json.loads(line[len(MARKER) :])
            if batch["topics"] == [topic]:
                found.append(batch["records"])
    return found


def printed_after(dev: DevProcess, seen: int) -> Callable[[str], bool]:
    """True once ``dev`` has printed more than ``seen`` lines."""
    return lambda _: len(dev.lines) > seen


def wait_until(condition: Callable[[], bool], what: str, dev: DevProcess) -> None:
    """Poll ``condition`` on each line the server prints, up to the backstop."""
    deadline = time.monotonic() + BACKSTOP_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} never happened:\n{dev.output}")
        # the next line the server prints, or a second without one: check again
        with contextlib.suppress(LookupError):
            dev.wait_for_line(printed_after(dev, len(dev.lines)), timeout=1.0)


def run(command: Sequence[str], env: Mapping[str, str]) -> str:
    """Run ``command`` in the repository root with ``env``; its output (fails unless 0)."""
    done = subprocess.run(
        list(command),
        check=False,
        cwd=REPO,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, (command, done.stdout, done.stderr)
    return done.stdout


def lakelog(dev: DevProcess, *args: str) -> str:
    """Run the ``lakelog`` console script against the dev server and return its output."""
    return run([LAKELOG, *args], {**os.environ, "LAKELOG_ENDPOINT": dev.api_url})


def value(text: str, partition: int) -> dict[str, Any]:
    return {"value": {"type": "STRING", "data": text}, "partition": partition}


def test_a_local_function_receives_batches_retries_and_sends_failures_on(
    api: httpx.Client, dev_server: DevProcess
) -> None:
    # Given a topic with two partitions, an on-failure topic and a local: function subscribed
    # with batches of 3, no window and one retry
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    failed = f"{topic}-failed"
    create_topic(api, topic, partitions=2)
    create_topic(api, failed, partitions=1)
    lakelog(
        dev_server,
        "subscribe", "create", topic, "e2e", "--function", FUNCTION,
        "--batch-size", "3", "--batching-window-ms", "0", "--starting-position", "TRIM_HORIZON",
        "--max-retries", "1", "--on-failure-topic", failed,
    )  # fmt: skip

    # When records are produced over HTTP to both partitions
    sent = {0: [f"p0-{i}" for i in range(7)], 1: [f"p1-{i}" for i in range(5)]}
    for partition, texts in sent.items():
        for text in texts:
            produce(api, topic, [value(text, partition)])

    def received(partition: int) -> list[str]:
        return [v for b in batches(dev_server, topic) for p, _, v in b if p == partition]

    wait_until(lambda: all(received(p) == t for p, t in sent.items()), "delivery", dev_server)

    # Then each partition's records arrive once, in order, in batches of at most 3 from
    # one partition each, at their offsets
    for batch in batches(dev_server, topic):
        assert 1 <= len(batch) <= 3
        assert len({p for p, _, _ in batch}) == 1
        for p, offset, text in batch:
            assert sent[p][offset] == text

    # When a record makes the function fail
    produce(api, topic, [value(POISON, 0)])
    wait_until(lambda: fetch_all(api, failed, 0) != [], "the on-failure record", dev_server)

    # Then its batch was tried twice (one retry) and its failure record names it
    poisoned = [b for b in batches(dev_server, topic) if [0, 7, POISON] in b]
    assert len(poisoned) == 2, poisoned
    assert dev_server.output.count(f"lakelog dev: {FUNCTION} raised:") == 2  # as Lambda logs
    assert "ValueError: poison record" in dev_server.lines
    (failure,) = fetch_all(api, failed, 0)
    body = json.loads(unb64(failure["value"]) or b"")
    assert body["requestContext"]["approximateInvokeCount"] == 2
    assert body["requestContext"]["functionArn"] == FUNCTION
    assert body["KafkaBatchInfo"]["topic"] == topic
    assert (body["KafkaBatchInfo"]["firstOffset"], body["KafkaBatchInfo"]["lastOffset"]) == (7, 7)

    # And records produced afterwards still arrive
    produce(api, topic, [value("after", 0)])
    wait_until(lambda: received(0)[-1:] == ["after"], "delivery after the failure", dev_server)

    # And describe ends at lag 0 on both partitions
    def lag() -> list[Any]:
        status = json.loads(lakelog(dev_server, "subscribe", "describe", topic, "e2e", "--json"))
        return [p["lag"] for p in status["partitions"]]

    wait_until(lambda: lag() == [0, 0], "lag 0", dev_server)

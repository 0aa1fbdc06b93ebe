"""The README's Kafka quick start, run as written against ``lakelog dev`` (on free ports:
its ``127.0.0.1:9092`` becomes the printed bootstrap address): kcat (librdkafka) and
kafka-python produce and consume, and the group kafka-python committed shows in
``lakelog group describe``."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from lakelog.local.process import DevProcess
from tests.e2e.conftest import REPO
from tests.e2e.test_dev_triggers import run

BIN = Path(sys.executable).parent
SECTION = "## Kafka clients on your laptop"
README_BOOTSTRAP = "127.0.0.1:9092"


def section() -> str:
    """The README's Kafka section."""
    text = (REPO / "README.md").read_text()
    return text[text.index(SECTION) :].split("\n## ", 1)[0]


def quick_start() -> list[str]:
    """The section's shell commands."""
    (bash,) = re.findall(r"```bash\n(.*?)```", section(), re.S)
    return [line for line in bash.splitlines() if line]


def quoted_example_line() -> str:
    """The line of the kafka-python example's output that the section quotes."""
    (line,) = re.findall(r"`(partition \d+ offset \d+: [^`]+)`", section())
    return line


def test_the_readme_kafka_quick_start_runs_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    assert shutil.which("kcat"), "kcat is missing: make dev / make test install it with apt-get"
    commands = quick_start()
    assert any(c.startswith("kcat") for c in commands)
    assert any("examples/kafka/produce_consume.py" in c for c in commands)

    monkeypatch.setenv("PYTHONPATH", str(REPO / "lib"))
    with DevProcess(
        "--port", "0", "--kafka-port", "0", cwd=str(REPO), command=[str(BIN / "lakelog")]
    ) as dev:
        dev.wait_ready()
        bootstrap = dev.kafka_bootstrap
        assert bootstrap is not None
        env = {
            **os.environ,
            "PATH": f"{BIN}:{os.environ['PATH']}",
            "LAKELOG_ENDPOINT": dev.api_url,
        }
        outputs = []
        for written in commands:
            command = written.replace(README_BOOTSTRAP, bootstrap)
            if "produce_consume.py" in command:  # its bootstrap is an argument
                command = command.split("#")[0].strip() + f" {bootstrap}"
            outputs.append(run(["bash", "-c", command], env))
        group = json.loads(run(["lakelog", "--json", "group", "describe", "readme"], env))

    by_command = dict(zip(commands, outputs, strict=True))
    consumed = next(out for c, out in by_command.items() if " -C " in c)
    assert sorted(consumed.splitlines()) == ["user-1 hello", "user-2 world"]
    example = next(out for c, out in by_command.items() if "produce_consume.py" in c)
    values = sorted(line.split(": ", 1)[1] for line in example.splitlines())
    assert values == ["click 0", "click 1", "click 2", "hello", "world"]
    # And the line the README quotes is one the example printed (partitions come from the
    # clients' partitioners: kafka-python's murmur2, kcat's CRC32, both deterministic)
    assert quoted_example_line() in example.splitlines()
    committed = sum(p["committed_offset"] or 0 for p in group["partitions"])
    assert committed == 5

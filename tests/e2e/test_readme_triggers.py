"""The README's trigger quick start, run as written: its commands against ``lakelog dev``
started with the ``lakelog`` console script from the repository root, and the line it says
the server prints."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from lakelog.local.process import DevProcess
from tests.e2e.conftest import REPO
from tests.e2e.test_dev_triggers import run, wait_until

BIN = Path(sys.executable).parent
"""The virtual environment running the tests (the README's ``make dev`` creates ``.venv``):
its ``bin`` holds the ``lakelog`` console script."""
SECTION = "## A function on every record, on your laptop"


def quick_start() -> tuple[list[str], str]:
    """The section's shell commands (without activating the venv) and the line it shows."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION) :].split("\n## ", 1)[0]
    bash, printed = (m.group(1) for m in re.finditer(r"```\w+\n(.*?)```", section, re.S))
    commands = [line for line in bash.splitlines() if line and not line.startswith(". ")]
    return commands, printed.strip()


def test_the_readme_trigger_quick_start_prints_what_it_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    commands, printed = quick_start()
    assert any("subscribe create" in c for c in commands)

    # Given lakelog dev started as a user does: the console script, in the repository root
    monkeypatch.setenv("PYTHONPATH", str(REPO / "lib"))  # not the root itself
    with DevProcess(
        "--port", "0", "--kafka-port", "0", cwd=str(REPO), command=[str(BIN / "lakelog")]
    ) as dev:
        dev.wait_ready()
        # When the README's commands run in a shell with the venv's PATH
        env = {
            **os.environ,
            "PATH": f"{BIN}:{os.environ['PATH']}",
            "LAKELOG_ENDPOINT": dev.api_url,
        }
        for command in commands:
            run(["bash", "-c", command], env)

        # Then the server prints the line the README shows (waited for with a backstop)
        assert dev.wait_for_line(lambda line: line == printed, timeout=120.0) == printed

        # And describe reaches what the README says: partition 0 committed at 1, lag 0
        def partitions() -> list[tuple[int, int | None, int | None]]:
            out = run(["lakelog", "--json", "subscribe", "describe", "orders", "print"], env)
            return [
                (p["partition"], p["committed_offset"], p["lag"])
                for p in json.loads(out)["partitions"]
            ]

        wait_until(lambda: partitions() == [(0, 1, 0)], "lag 0", dev)

    # And nothing alarming was printed along the way
    assert dev.exit_code == 0, dev.output
    assert "Traceback" not in dev.output and "failed" not in dev.output, dev.output

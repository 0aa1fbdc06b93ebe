"""The README's trigger quick start, run as written: its commands against ``lakelog dev``
started with the ``lakelog`` console script from the repository root, and the line it says
the server prints."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from lakelog.local.process import DevProcess
from tests.e2e.conftest import REPO
from tests.e2e.test_dev_triggers import wait_until

BIN = Path("/work/main/.venv/bin")
"""The virtual environment the README's ``make dev`` creates (``.venv/bin``)."""
SECTION = "## A function on every record, on your laptop"


def quick_start() -> tuple[list[str], str]:
    """The section's shell commands (without activating the venv) and the line it shows."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION) :].split("\n## ", 1)[0]
    bash, printed = (m.group(1) for m in re.finditer(r"```\w+\n(.*?)```", section, re.S))
    commands = [line for line in bash.splitlines() if line and not line.startswith(". ")]
    return commands, printed.strip()


def test_the_readme_trigger_quick_start_prints_what_it_says() -> None:
    commands, printed = quick_start()
    assert any("subscribe create" in c for c in commands)

    # Given lakelog dev started as a user does: the console script, in the repository root
    env = {**os.environ, "PYTHONPATH": str(REPO / "lib")}  # not the root itself
    os_env = os.environ.copy()
    os.environ.update(env)
    try:
        dev = DevProcess("--port", "0", cwd=str(REPO), command=[str(BIN / "lakelog")])
    finally:
        os.environ.clear()
        os.environ.update(os_env)
    with dev:
        dev.wait_ready()
        # When the README's commands run in a shell with the venv's PATH
        shell_env = {
            **env,
            "PATH": f"{BIN}:{os.environ['PATH']}",
            "LAKELOG_ENDPOINT": dev.api_url,
        }
        for command in commands:
            done = subprocess.run(
                ["bash", "-c", command],
                check=False,
                cwd=REPO,
                env=shell_env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, (command, done.stdout, done.stderr, dev.output)

        # Then the server prints the line the README shows (waited for with a backstop)
        assert dev.wait_for_line(lambda line: line == printed, timeout=120.0) == printed

        # And describe reaches what the README says: partition 0 committed at 1, lag 0
        def partitions() -> list[tuple[int, int | None, int | None]]:
            done = subprocess.run(
                [str(BIN / "lakelog"), "--json", "subscribe", "describe", "orders", "print"],
                check=True,
                env=shell_env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            status = json.loads(done.stdout)
            return [(p["partition"], p["committed_offset"], p["lag"]) for p in status["partitions"]]

        wait_until(lambda: partitions() == [(0, 1, 0)], "lag 0", dev)

    # And nothing alarming was printed along the way
    assert dev.exit_code == 0, dev.output
    assert "Traceback" not in dev.output and "failed" not in dev.output, dev.output

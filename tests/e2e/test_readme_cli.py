"""The README's ``lakelog`` command examples, run as written against ``lakelog dev`` (the
``lakelog`` console script of the virtualenv on ``PATH``, ``LAKELOG_ENDPOINT`` naming the
started server)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from tests.e2e.conftest import REPO, DevProcess
from tests.e2e.test_dev_triggers import run

BIN = Path(sys.executable).parent
SECTION = "## The `lakelog` command"


def examples() -> list[str]:
    """The section's shell commands."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION) :].split("\n## ", 1)[0]
    (bash,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [line for line in bash.splitlines() if line]


def test_the_readme_cli_examples_run_as_written(dev_server: DevProcess) -> None:
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "PYTHONPATH": str(REPO / "lib"),
        "LAKELOG_ENDPOINT": dev_server.api_url,
    }

    # When every command runs in a shell (each must exit 0)
    outputs = {command: run(["bash", "-c", command], env) for command in examples()}

    # Then the keyed lines come back with their keys, and the group read and committed both
    printed = next(out for c, out in outputs.items() if "--print-key" in c)
    assert sorted(printed.splitlines()) == [
        'customer-42\t{"total": 12}',
        'customer-7\t{"total": 3}',
    ]
    in_group = next(out for c, out in outputs.items() if "--group billing" in c)
    assert sorted(in_group.splitlines()) == ['{"total": 12}', '{"total": 3}']
    described = json.loads(run(["lakelog", "--json", "group", "describe", "billing"], env))
    assert sum(p["committed_offset"] or 0 for p in described["partitions"]) == 2
    bench = next(out for c, out in outputs.items() if c.startswith("lakelog bench"))
    assert re.search(r"^producer +10000 ", bench, re.M), bench
    assert re.search(r"^consumer +10000 ", bench, re.M), bench

"""The README's Python SDK example, run as written against ``lakelog dev`` (its
``http://127.0.0.1:8080`` becomes the started server's URL): it must end on its own and
print what its comments say."""

from __future__ import annotations

import os
import re
import sys

from tests.e2e.conftest import REPO, DevProcess
from tests.e2e.test_dev_triggers import run

SECTION = "## The Python SDK"
README_URL = "http://127.0.0.1:8080"


def example() -> str:
    """The section's Python code block."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION) :].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    return str(code)


def test_the_readme_sdk_example_ends_and_prints_its_record(dev_server: DevProcess) -> None:
    code = example()
    assert README_URL in code

    # When the example runs as a script against the dev server
    output = run(
        [sys.executable, "-c", code.replace(README_URL, dev_server.api_url)],
        {**os.environ, "PYTHONPATH": str(REPO / "lib")},
    )

    # Then it ended by itself, after printing the send's metadata and the record it consumed
    meta, consumed = output.splitlines()
    assert meta.startswith("RecordMetadata(topic='orders', partition=")
    assert consumed.endswith(" 0 b'{\"total\": 12}'")

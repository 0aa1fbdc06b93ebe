"""The README's curl examples of the HTTP API, run as written against ``lakelog dev`` (its
``localhost:8080`` becomes the started server's address)."""

from __future__ import annotations

import json
import os
import re

from tests.e2e.conftest import REPO, DevProcess
from tests.e2e.test_dev_triggers import run

SECTION = "## The HTTP API on your laptop"
README_ADDRESS = "localhost:8080"


def examples() -> str:
    """The section's shell block (its quoted bodies span lines: it runs as one script)."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION) :].split("\n## ", 1)[0]
    (bash,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    return str(bash)


def test_the_readme_http_examples_answer_2xx_with_what_they_say(dev_server: DevProcess) -> None:
    script = examples()
    calls = script.count("curl -s ")
    assert calls >= 5 and README_ADDRESS in script

    # When the block runs with the server's address, curl failing on an HTTP error and
    # ending each reply with a new line
    address = dev_server.api_url.removeprefix("http://")
    runnable = script.replace(README_ADDRESS, address).replace("curl -s ", "curl -sf -w '\\n' ")
    output = run(["bash", "-e", "-c", runnable], dict(os.environ))

    # Then every call answered a JSON body, in the order of the block
    created, appended, earliest, fetched, fetched_many, joined, group = (
        json.loads(line) for line in output.splitlines()
    )
    assert calls == 7
    assert [p["partition"] for p in created["partitions"]] == [0, 1, 2]
    assert appended["results"][0]["partition"] == 0  # murmur2("customer-42") % 3
    assert earliest == {"offset": 0}
    assert [r["offset"] for r in fetched["records"]] == [0]
    assert [p["partition"] for p in fetched_many["partitions"]] == [0, 1]
    assert joined["member_id"] in [m["member_id"] for m in group["members"]]

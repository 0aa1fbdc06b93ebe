"""What loads when: the SDK over HTTP and the CLI's HTTP commands never import the engine.

Each case runs in a fresh interpreter and reads ``sys.modules`` after it, so what an
earlier test imported cannot hide a heavy import. Only which modules load is asserted,
never how long it takes (``benchmarks/startup.py`` measures that).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.cli.conftest import closed_port
from tests.e2e.conftest import REPO

HEAVY = ("pyarrow", "boto3", "botocore", "moto", "lakelog.service", "lakelog.log.codec")
"""Modules (and packages, with everything under them) only direct mode and ``dev`` need."""


def loaded_after(program: str) -> list[str]:
    """The modules of `HEAVY` that are loaded after running ``program`` in a new process."""
    probe = (
        "import json, sys\n"
        f"heavy = {HEAVY!r}\n"
        "try:\n"
        + "".join(f"    {line}\n" for line in program.splitlines())
        + "except SystemExit:\n"
        "    pass\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(heavy))\n"
        "print(json.dumps(loaded), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded: list[str] = json.loads(done.stderr.strip().splitlines()[-1])
    return sorted({name.split(".")[0] if "lakelog" not in name else name for name in loaded})


@pytest.mark.parametrize(
    "program",
    [
        "import lakelog",
        "from lakelog import Client, TopicPartition",
        "import lakelog.client",
        "from lakelog import Client\nClient('http://127.0.0.1:8080').close()",
    ],
)
def test_the_sdk_over_http_loads_no_engine_pyarrow_or_boto3(program: str) -> None:
    assert loaded_after(program) == []


def test_lakelog_help_loads_no_engine_pyarrow_or_boto3() -> None:
    program = "import sys\nsys.argv = ['lakelog', '--help']\nfrom lakelog.cli import main\nmain()"
    assert loaded_after(program) == []


def test_an_http_command_loads_no_engine_pyarrow_or_boto3() -> None:
    # Given a command that only talks HTTP (it fails: nothing listens on the port)
    endpoint = f"http://127.0.0.1:{closed_port()}"
    program = (
        "import sys\n"
        f"sys.argv = ['lakelog', '--endpoint', {endpoint!r}, 'topic', 'list']\n"
        "from lakelog.cli import main\n"
        "main()"
    )

    assert loaded_after(program) == []


def test_direct_mode_loads_the_engine_when_asked_for() -> None:
    # `from lakelog import Engine` still works; it is what loads the engine and pyarrow
    loaded = loaded_after("from lakelog import Engine\nassert Engine.__name__ == 'Engine'")

    assert "lakelog.service.engine" in loaded
    assert "pyarrow" in loaded


def test_an_unknown_attribute_of_lakelog_is_an_attribute_error() -> None:
    import lakelog  # noqa: PLC0415 - the module under test

    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        _ = lakelog.Nothing  # type: ignore[attr-defined]

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


CONTRACT_MODELS = ("pydantic", "pydantic_core", "lakelog.contract.models")
"""What the SDK loads at its first HTTP reply (or request body), not before."""


def loaded_after(program: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """The modules of ``heavy`` that are loaded after running ``program`` in a new process."""
    probe = (
        "import json, sys\n"
        f"heavy = {heavy!r}\n"
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
    assert loaded_after(HELP) == []


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


HELP = "import sys\nsys.argv = ['lakelog', '--help']\nfrom lakelog.cli import main\nmain()"


@pytest.mark.parametrize(
    "program",
    [
        "import lakelog",
        HELP,
        "from lakelog import Client\nClient('http://127.0.0.1:8080').close()",
        "from lakelog import ToOffset\nfrom lakelog.contract.operations import ResetOffsets",
    ],
)
def test_pydantic_and_the_contract_models_wait_for_the_first_request(program: str) -> None:
    assert loaded_after(program, CONTRACT_MODELS) == []


def test_lakelog_help_loads_no_sdk_and_no_http_client() -> None:
    assert loaded_after(HELP, ("lakelog.client", "urllib3")) == []


def test_the_first_reply_loads_the_contract_models_to_read_it() -> None:
    # Given a transport whose sender answers a topic list without a network
    program = (
        "from lakelog.client.http import HttpReply, HttpTransport\n"
        "from lakelog.contract.operations import ListTopics\n"
        "def send(method, url, body, headers):\n"
        '    return HttpReply(200, b\'{"topics": ["orders"]}\')\n'
        "transport = HttpTransport('http://127.0.0.1:8080', sender=send)\n"
        "assert transport.call(ListTopics()) == ['orders']\n"
    )

    assert loaded_after(program, CONTRACT_MODELS) == sorted(CONTRACT_MODELS)


def test_direct_mode_loads_the_engine_when_asked_for() -> None:
    # `from lakelog import Engine` still works; it is what loads the engine and pyarrow
    loaded = loaded_after("from lakelog import Engine\nassert Engine.__name__ == 'Engine'")

    assert "lakelog.service.engine" in loaded
    assert "pyarrow" in loaded


def test_an_unknown_attribute_of_lakelog_is_an_attribute_error() -> None:
    import lakelog  # noqa: PLC0415 - the module under test

    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        _ = lakelog.Nothing  # type: ignore[attr-defined]

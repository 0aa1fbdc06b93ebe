"""The Lambda function loads neither the dev server's moto emulation nor moto itself.

`lakelog.local` (ADR 0006) patches moto and belongs to ``lakelog dev`` and the tests; a
Lambda that imported it would pay for moto at every cold start, or fail without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import json, sys
import {module}
print(json.dumps(sorted(m for m in sys.modules
                        if m.split(".")[0] == "moto" or m.split(".")[:2] == ["lakelog", "local"])))
"""


def _dev_modules_loaded_by(module: str) -> list[str]:
    """The moto and ``lakelog.local`` modules a fresh interpreter holds after importing
    ``module`` with the API function's environment."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "lib"), str(REPO_ROOT)]),
        "LAKELOG_BUCKET": "lakelog-dev-segments",
        "LAKELOG_LEDGER_TABLE": "lakelog-dev-ledger",
        "LAKELOG_CATALOG_TABLE": "lakelog-dev-catalog",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_METRICS_NAMESPACE": "lakelog",
    }
    result = subprocess.run(
        [sys.executable, "-c", _PROBE.format(module=module)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.slow
def test_importing_the_api_lambda_handler_loads_neither_moto_nor_the_dev_server() -> None:
    assert _dev_modules_loaded_by("functions.api.handler") == []


@pytest.mark.slow
def test_importing_the_compactor_lambda_handler_loads_neither_moto_nor_the_dev_server() -> None:
    assert _dev_modules_loaded_by("functions.compactor.handler") == []


@pytest.mark.slow
def test_importing_the_dispatcher_lambda_handler_loads_neither_moto_nor_the_dev_server() -> None:
    # functions.dispatcher.handler builds the dispatcher (and its invokers) at import
    assert _dev_modules_loaded_by("functions.dispatcher.handler") == []


@pytest.mark.slow
def test_the_probe_sees_the_emulation_when_a_module_does_load_it() -> None:
    loaded = _dev_modules_loaded_by("lakelog.local.emulation")
    assert "lakelog.local.emulation" in loaded

"""The CDK app: ``cdk synth|deploy -c env=<name>`` builds the stack ``lakelog-<name>``.

Run by the CDK CLI through ``cdk.json`` (``.venv/bin/python cdk/app.py``). Synthesis needs
no AWS credentials and no git: the environment's region comes from ``cdk/config`` and the
account is left to deploy time.
"""

from __future__ import annotations

import sys
from pathlib import Path

_CDK_DIR = Path(__file__).resolve().parent
# cdk/ is this script's directory, so it is already sys.path[0]; lib/ makes the lakelog
# package of this checkout importable even where it is not pip-installed.
sys.path.insert(1, str(_CDK_DIR.parent / "lib"))

from aws_cdk import App  # noqa: E402

from config import UnknownEnvironmentError, load_environment  # noqa: E402
from stacks import build_app  # noqa: E402

DEFAULT_ENVIRONMENT = "dev"
"""Environment built when no ``-c env=<name>`` is given."""


def main() -> int:
    """Synthesize the requested environment; exit status 2 names the valid ones."""
    app = App()
    name = app.node.try_get_context("env") or DEFAULT_ENVIRONMENT
    try:
        config = load_environment(str(name))
    except UnknownEnvironmentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    build_app(app, config)
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())

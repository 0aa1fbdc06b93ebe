"""The app as the CDK CLI runs it (``cdk.json``), stack properties and stable outputs."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.outputs import StableOutputs
from tests.infra.synth import REPO_ROOT, Synthesized

pytestmark = pytest.mark.infra

CDK_JSON = json.loads((REPO_ROOT / "cdk.json").read_text())


def _run_app(env_name: str, outdir: Path) -> subprocess.CompletedProcess[str]:
    """Run ``cdk.json``'s app as the CLI would, with no AWS credentials in reach."""
    context = {**CDK_JSON.get("context", {}), "env": env_name}
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "CDK_")) and key != "PYTHONPATH"
    }
    environment |= {
        "CDK_OUTDIR": str(outdir),
        "CDK_CONTEXT_JSON": json.dumps(context),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_SHARED_CREDENTIALS_FILE": str(outdir / "no-credentials"),
        "AWS_CONFIG_FILE": str(outdir / "no-config"),
    }
    return subprocess.run(
        shlex.split(CDK_JSON["app"]),
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_cdk_json_runs_the_app_with_the_project_python() -> None:
    assert CDK_JSON["app"] == ".venv/bin/python cdk/app.py"


def test_cdk_json_app_synthesizes_without_credentials_or_git(tmp_path: Path) -> None:
    # Given an output directory outside the repository and no credentials or git
    outdir = tmp_path / "cdk.out"

    # When the app runs the way `cdk synth -c env=dev` runs it
    result = _run_app("dev", outdir)

    # Then it writes the lakelog-dev stack, checked by cdk-nag
    assert result.returncode == 0, result.stderr
    template = json.loads((outdir / "lakelog-dev.template.json").read_text())
    assert {"BucketName", "LedgerTableName", "CatalogTableName"} <= set(template["Outputs"])
    manifest = json.loads((outdir / "manifest.json").read_text())
    assert manifest["artifacts"]["lakelog-dev"]["environment"] == (
        "aws://unknown-account/eu-west-1"
    )


def test_cdk_json_app_rejects_an_unknown_environment(tmp_path: Path) -> None:
    result = _run_app("qa", tmp_path / "cdk.out")

    assert result.returncode == 2
    assert "unknown environment 'qa'; valid names: dev, prod, staging" in result.stderr


def test_stack_is_named_and_placed_by_the_environment(env_stack: Synthesized) -> None:
    stack = env_stack.stack

    assert stack.stack_name == f"lakelog-{env_stack.config.name}"
    assert stack.region == env_stack.config.region
    assert stack.termination_protection is env_stack.config.deletion_protection


def test_outputs_have_stable_names_and_no_exports(env_stack: Synthesized) -> None:
    outputs: dict[str, Any] = env_stack.template_json["Outputs"]
    expected = {"BucketName", "LedgerTableName", "CatalogTableName", "DashboardName", "ApiUrl"}
    expected.add("CompactorStateMachineArn")
    expected.add("DispatcherStreamFailureQueueUrl")
    if env_stack.config.alarm_notifications:
        expected.add("AlarmTopicArn")

    assert set(outputs) == expected
    assert all("Export" not in output for output in outputs.values())
    assert outputs["BucketName"]["Value"]["Ref"] in env_stack.resources("AWS::S3::Bucket")
    tables = env_stack.resources("AWS::DynamoDB::Table")
    assert outputs["LedgerTableName"]["Value"]["Ref"] in tables
    assert outputs["CatalogTableName"]["Value"]["Ref"] in tables


def test_stable_outputs_refuse_duplicates_and_bad_names(bare_stack: Any) -> None:
    outputs = StableOutputs(bare_stack)
    outputs.add("ApiUrl", "https://example.invalid", "the API")

    with pytest.raises(ValueError, match="already defined"):
        outputs.add("ApiUrl", "https://example.invalid", "the API again")
    with pytest.raises(ValueError, match="alphanumeric"):
        outputs.add("Api-Url", "https://example.invalid", "not a logical id")
    assert outputs.names == ("ApiUrl",)


def test_components_are_built_on_the_shared_platform(synth: Any) -> None:
    probe = synth.functions("dev")

    assert set(probe.stack.components) == {"Probe"}
    assert probe.stack.platform.storage is probe.stack.storage

"""Least privilege and linting: cdk-nag, wildcard actions, cfn-lint, on every template."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint_file  # type: ignore[import-untyped]

from components.nag import MIN_REASON_LENGTH, acknowledge
from tests.infra.synth import ENVIRONMENTS, SynthCache, Synthesized

pytestmark = pytest.mark.infra

_KINDS = ("environment", "functions", "watched")
_GATEWAY_STACKS = [("gateway", "dev"), ("gateway", "prod")]
"""Stacks with the optional Kafka gateway: alarms off and data destroyed, and the reverse."""
_WILDCARD_ACTIONS = {"*", "s3:*", "dynamodb:*"}


@pytest.fixture(
    scope="module",
    params=[(kind, name) for kind in _KINDS for name in sorted(ENVIRONMENTS)] + _GATEWAY_STACKS,
    ids=lambda param: f"{param[0]}-{param[1]}",
)
def any_stack(request: pytest.FixtureRequest, synth: SynthCache) -> Synthesized:
    """Every synthesized template: the real stacks and the stacks with test components."""
    kind, name = request.param
    result: Synthesized = getattr(synth, kind)(name)
    return result


@pytest.fixture(
    scope="module",
    params=[(kind, name) for kind in ("environment", "functions") for name in sorted(ENVIRONMENTS)]
    + _GATEWAY_STACKS,
    ids=lambda param: f"{param[0]}-{param[1]}",
)
def checked_stack(request: pytest.FixtureRequest, synth: SynthCache) -> Synthesized:
    """Stacks synthesized with the AWS Solutions checks (the real ones and LakelogFunction)."""
    kind, name = request.param
    result: Synthesized = getattr(synth, kind)(name)
    return result


def _policy_documents(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        for key in ("PolicyDocument", "KeyPolicy", "AssumeRolePolicyDocument"):
            if key in properties:
                yield logical_id, properties[key]
        for policy in properties.get("Policies", []):
            yield logical_id, policy["PolicyDocument"]


def test_cdk_nag_finds_nothing_unacknowledged(checked_stack: Synthesized) -> None:
    assert checked_stack.validation_error is None
    assert checked_stack.violations() == []


def test_every_acknowledgment_sits_on_a_resource_and_says_why(any_stack: Synthesized) -> None:
    for logical_id, resource in any_stack.template_json["Resources"].items():
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
            assert len(rule["reason"]) >= MIN_REASON_LENGTH, (logical_id, rule)
    assert "cdk_nag" not in any_stack.template_json.get("Metadata", {})


def test_acknowledging_on_a_whole_stack_is_refused(bare_stack: Any) -> None:
    with pytest.raises(ValueError, match="on the resource"):
        acknowledge(bare_stack, "AwsSolutions-S1", "a reason that is long enough")
    with pytest.raises(ValueError, match="must say why"):
        acknowledge(bare_stack.node, "AwsSolutions-S1", "because")


def test_no_policy_allows_wildcard_actions(any_stack: Synthesized) -> None:
    for logical_id, document in _policy_documents(any_stack.template_json):
        for statement in document["Statement"]:
            if statement["Effect"] != "Allow":
                continue
            actions = statement.get("Action", [])
            actions = [actions] if isinstance(actions, str) else actions
            assert not _WILDCARD_ACTIONS & set(actions), (logical_id, statement)


def test_cfn_lint_passes(any_stack: Synthesized) -> None:
    matches = lint_file(
        any_stack.template_path, config=ManualArgs(regions=[any_stack.config.region])
    )

    assert [str(match) for match in matches] == []

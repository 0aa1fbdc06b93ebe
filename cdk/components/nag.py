"""cdk-nag: run the AWS Solutions checks and acknowledge a finding on one resource.

cdk-nag 3 plugs into CDK's policy validation (``Validations.of(app).add_plugins``) and
reads acknowledgments recorded with ``Validations.of(construct).acknowledge``. An
acknowledgment covers the construct it is recorded on and its children, so callers pass
the single resource (or the L2 construct wrapping it) the finding is about, never a stack.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, CfnResource, Stack, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

__all__ = ["MIN_REASON_LENGTH", "acknowledge", "add_aws_solutions_checks", "ignore_cfn_lint_rule"]

MIN_REASON_LENGTH = 20
"""A reason shorter than this cannot say why the finding is acceptable."""


def add_aws_solutions_checks(app: App) -> None:
    """Check every stack of ``app`` against the AWS Solutions pack when it synthesizes.

    Acknowledged findings are also written into each resource's ``cdk_nag`` metadata, so
    the template itself records what was accepted and why.
    """
    Validations.of(app).add_plugins(
        AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True)
    )


def acknowledge(
    resource: IConstruct, rule: str, reason: str, *, applies_to: str | None = None
) -> None:
    """Accept the cdk-nag finding ``rule`` on ``resource`` (and its children) only.

    Parameters
    ----------
    resource
        The resource the finding is about; a `Stack` is refused.
    rule
        Rule id such as ``AwsSolutions-S1``.
    reason
        Why the finding is acceptable here.
    applies_to
        The finding's detail, for rules that report one per offending value
        (``Resource::<Bucket1234.Arn>/segments/*`` for ``AwsSolutions-IAM5``).

    Raises
    ------
    ValueError
        If ``resource`` is a stack or ``reason`` is too short to explain anything.
    """
    if isinstance(resource, Stack):
        raise ValueError(f"acknowledge {rule} on the resource, not on stack {resource.node.path}")
    if len(reason.strip()) < MIN_REASON_LENGTH:
        raise ValueError(f"the reason for acknowledging {rule} must say why: {reason!r}")
    rule_id = f"{rule}[{applies_to}]" if applies_to else rule
    Validations.of(resource).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def ignore_cfn_lint_rule(resource: CfnResource, rule: str, reason: str) -> None:
    """Make cfn-lint skip ``rule`` on ``resource`` only (resource ``Metadata``).

    For warnings about what CDK itself generates, where changing the output would be
    riskier than the warning; ``reason`` must say why, like an acknowledgment's.

    Raises
    ------
    ValueError
        If ``reason`` is too short to explain anything.
    """
    if len(reason.strip()) < MIN_REASON_LENGTH:
        raise ValueError(f"the reason for ignoring {rule} must say why: {reason!r}")
    resource.add_metadata("cfn-lint", {"config": {"ignore_checks": [rule]}})

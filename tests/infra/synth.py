"""Synthesized stacks for the infrastructure tests, and the test-only components.

Importing this module prepares the process for jsii (Node.js banner silenced) and puts
``cdk/`` on ``sys.path`` so the app's packages (``config``, ``components``, ``stacks``)
import as they do under ``cdk/app.py``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CDK_DIR = REPO_ROOT / "cdk"

# jsii prints a banner about the Node.js version on every start; silence it (the value of
# the end-of-life variable must name the Node major version).
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20,22")
if str(CDK_DIR) not in sys.path:
    sys.path.insert(0, str(CDK_DIR))

from aws_cdk import App, CfnResource, Environment, Stack  # noqa: E402
from aws_cdk import aws_apigatewayv2 as apigwv2  # noqa: E402
from aws_cdk import aws_stepfunctions as sfn  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402
from constructs import Construct  # noqa: E402

from components.nag import add_aws_solutions_checks, ignore_cfn_lint_rule  # noqa: E402
from components.platform import Component, Platform  # noqa: E402
from config import ENVIRONMENTS, EnvironmentConfig  # noqa: E402
from stacks import LakelogStack, build_app  # noqa: E402

__all__ = [
    "CDK_DIR",
    "ENVIRONMENTS",
    "GATEWAY_DOMAIN",
    "PROBE_HANDLER",
    "REPO_ROOT",
    "SynthCache",
    "Synthesized",
    "bare_stack_factory",
    "policy_actions",
    "with_gateway",
]

GATEWAY_CERTIFICATE = "certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
"""The ACM certificate (in each environment's account and region) of the gateway stacks."""
GATEWAY_DOMAIN = "kafka.example.com"

PROBE_HANDLER = "lakelog.storage.keys.chain_pk"
"""A real function in the code asset; the probe functions are never invoked."""


@dataclass(frozen=True)
class Synthesized:
    """One synthesized stack: its config, template, assembly directory and nag report."""

    config: EnvironmentConfig
    stack: LakelogStack
    outdir: Path
    template_json: dict[str, Any]
    report: dict[str, Any]
    validation_error: str | None

    @cached_property
    def template(self) -> Template:
        """The template, for ``aws_cdk.assertions`` matchers."""
        return Template.from_json(self.template_json)

    @property
    def template_path(self) -> Path:
        return self.outdir / f"{self.stack.stack_name}.template.json"

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """Resources of ``resource_type`` by logical id."""
        return {
            logical_id: resource
            for logical_id, resource in self.template_json["Resources"].items()
            if resource["Type"] == resource_type
        }

    def violations(self) -> list[tuple[str, str, str]]:
        """Unacknowledged validation findings: (plugin, rule, construct path)."""
        return [
            (plugin["pluginName"], violation["ruleName"], construct["constructPath"])
            for plugin in self.report.get("pluginReports", [])
            for violation in plugin.get("violations", [])
            for construct in violation.get("violatingConstructs", [])
        ]


def probe_functions(scope: Construct, construct_id: str, *, platform: Platform) -> Construct:
    """A test component: two functions with different grants, as later components will."""
    component = Construct(scope, construct_id)
    reader = platform.add_function(
        component,
        "Reader",
        short_name="reader",
        handler=PROBE_HANDLER,
        description="Probe: reads segments and the ledger",
    )
    platform.storage.grant_read_segments(reader)
    platform.storage.grant_ledger_read(reader)
    platform.storage.grant_catalog_read(reader)

    writer = platform.add_function(
        component,
        "Writer",
        short_name="writer",
        handler=PROBE_HANDLER,
        description="Probe: appends and collects garbage",
        memory_mb=2048,
        timeout_seconds=120,
    )
    platform.storage.grant_write_segments(writer)
    platform.storage.grant_list_segments(writer)
    platform.storage.grant_delete_segments(writer)
    platform.storage.grant_ledger_append(writer)
    platform.storage.grant_ledger_delete(writer)
    platform.storage.grant_catalog_write(writer)
    platform.storage.grant_ledger_stream_read(writer)
    return component


def probe_watched(scope: Construct, construct_id: str, *, platform: Platform) -> Construct:
    """A test component: an HTTP API and a state machine handed to monitoring."""
    component = Construct(scope, construct_id)
    api = apigwv2.HttpApi(component, "ProbeApi")
    state_machine = sfn.StateMachine(
        component,
        "ProbeStateMachine",
        definition_body=sfn.DefinitionBody.from_chainable(sfn.Pass(component, "Noop")),
    )
    state_machine_resource = state_machine.node.default_child
    if isinstance(state_machine_resource, CfnResource):
        ignore_cfn_lint_rule(
            state_machine_resource, "W3005", "test-only state machine; CDK's redundant DependsOn"
        )
    platform.monitoring.watch_http_api(api, label="ProbeApi")
    platform.monitoring.watch_state_machine(state_machine, label="ProbeCompactor")
    return component


def _with_probe(
    component: Component, *, checks: bool
) -> Callable[[App, EnvironmentConfig], LakelogStack]:
    """A builder of the environment's stack with ``component`` added as ``Probe``."""

    def build(app: App, config: EnvironmentConfig) -> LakelogStack:
        stack = LakelogStack(app, config=config, components=[("Probe", component)])
        if checks:
            add_aws_solutions_checks(app)
        return stack

    return build


def with_gateway(config: EnvironmentConfig, **settings: Any) -> EnvironmentConfig:
    """``config`` with its Kafka gateway enabled (a certificate in its region; ``settings``
    override the rest)."""
    certificate = f"arn:aws:acm:{config.region}:123456789012:{GATEWAY_CERTIFICATE}"
    gateway = {"enabled": True, "certificate_arn": certificate, "domain_name": GATEWAY_DOMAIN}
    return EnvironmentConfig.model_validate(
        {**config.model_dump(), "kafka_gateway": {**gateway, **settings}}
    )


class SynthCache:
    """Synthesizes each (kind, environment) once and keeps the result for the session."""

    def __init__(self, tmp_factory: pytest.TempPathFactory) -> None:
        self._tmp_factory = tmp_factory
        self._cache: dict[tuple[str, str], Synthesized] = {}

    def environment(self, name: str) -> Synthesized:
        """The real stack of environment ``name``, as the app builds it (cdk-nag on)."""
        return self._get("env", name, build_app)

    def functions(self, name: str) -> Synthesized:
        """The stack of ``name`` plus two probe functions, checked by cdk-nag."""
        return self._get("functions", name, _with_probe(probe_functions, checks=True))

    def watched(self, name: str) -> Synthesized:
        """The stack of ``name`` plus a test HTTP API and state machine (no cdk-nag)."""
        return self._get("watched", name, _with_probe(probe_watched, checks=False))

    def gateway(self, name: str) -> Synthesized:
        """The real stack of ``name`` with its Kafka gateway enabled (`with_gateway`),
        checked by cdk-nag."""
        return self._get("gateway", name, build_app, with_gateway(ENVIRONMENTS[name]))

    def _get(
        self,
        kind: str,
        name: str,
        build: Callable[[App, EnvironmentConfig], LakelogStack],
        config: EnvironmentConfig | None = None,
    ) -> Synthesized:
        key = (kind, name)
        if key not in self._cache:
            config = config or ENVIRONMENTS[name]
            outdir = self._tmp_factory.mktemp(f"cdk-{kind}-{name}")
            app = App(outdir=str(outdir))
            stack = build(app, config)
            validation_error = None
            try:
                app.synth()
            except RuntimeError as exc:  # cdk-nag errors fail synthesis after writing
                if "ValidationFailed" not in str(exc):
                    raise
                validation_error = str(exc)
            template_json = json.loads((outdir / f"{stack.stack_name}.template.json").read_text())
            report_path = outdir / "validation-report.json"
            report = json.loads(report_path.read_text()) if report_path.exists() else {}
            self._cache[key] = Synthesized(
                config, stack, outdir, template_json, report, validation_error
            )
        return self._cache[key]


def bare_stack_factory() -> Stack:
    """An empty stack in a fresh app, for construct-level checks that never synthesize."""
    return Stack(App(), "Bare", env=Environment(region="eu-west-1"))


def policy_actions(statements: list[dict[str, Any]]) -> set[str]:
    """Every IAM action the policy ``statements`` name."""
    actions: set[str] = set()
    for statement in statements:
        value = statement["Action"]
        actions.update([value] if isinstance(value, str) else value)
    return actions

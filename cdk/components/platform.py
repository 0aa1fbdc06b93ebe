"""What every component receives: the environment and the shared constructs it builds on.

A component (the HTTP API, the compactor, the trigger dispatcher) is any callable
``Component(scope, construct_id, platform=platform)`` returning a construct. It creates its
functions with `Platform.add_function` (which also puts them on the dashboard and under
alarms), grants them what they need through ``platform.storage.grant_*``, hands its API or
state machine to ``platform.monitoring.watch_*`` and publishes its endpoints with
``platform.outputs.add``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from aws_cdk import Aws
from constructs import Construct

from components.function import LakelogFunction
from components.monitoring import Monitoring
from components.outputs import StableOutputs
from components.storage import Storage
from config.environment import EnvironmentConfig
from lakelog.environment import ENV_TRIGGER_FUNCTION_PREFIXES

__all__ = ["Component", "Platform"]


@dataclass(frozen=True, slots=True)
class Platform:
    """The environment's configuration and shared constructs.

    Parameters
    ----------
    config
        The environment being built.
    storage
        Bucket and tables, with their grant helpers.
    monitoring
        Dashboard and alarms.
    outputs
        Stable stack outputs.
    """

    config: EnvironmentConfig
    storage: Storage
    monitoring: Monitoring
    outputs: StableOutputs

    @property
    def function_prefixes(self) -> tuple[str, ...]:
        """ARN prefixes of the functions subscriptions may deliver to (ADR 0015 §4), in the
        stack's account when the environment names none."""
        return self.config.function_prefixes(self.config.account or Aws.ACCOUNT_ID, Aws.PARTITION)

    def trigger_environment(self) -> dict[str, str]:
        """The variable telling a function (the API, the dispatcher) `function_prefixes`."""
        return {ENV_TRIGGER_FUNCTION_PREFIXES: ",".join(self.function_prefixes)}

    def add_function(
        self,
        scope: Construct,
        construct_id: str,
        *,
        short_name: str,
        handler: str,
        description: str,
        environment: Mapping[str, str] | None = None,
        memory_mb: int | None = None,
        timeout_seconds: int | None = None,
    ) -> LakelogFunction:
        """A `LakelogFunction` that knows the resource names and is monitored.

        It starts with no access to data: grant it what it needs through
        ``platform.storage.grant_*``.
        """
        function = LakelogFunction(
            scope,
            construct_id,
            config=self.config,
            short_name=short_name,
            handler=handler,
            description=description,
            environment={**self.storage.environment_variables(), **(environment or {})},
            memory_mb=memory_mb,
            timeout_seconds=timeout_seconds,
        )
        self.monitoring.watch_function(function.function, label=short_name)
        return function


class Component(Protocol):
    """A part of the service built on the platform (HTTP API, compactor, triggers)."""

    def __call__(self, scope: Construct, construct_id: str, *, platform: Platform) -> Construct:
        """Build the component under ``scope``."""
        ...

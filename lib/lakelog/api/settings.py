"""Configuration of the API function, parsed once from its environment."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from lakelog.environment import ENV_TRIGGER_FUNCTION_PREFIXES
from lakelog.settings import DeploymentSettings, SettingsError

__all__ = ["ApiSettings", "SettingsError"]


class ApiSettings(DeploymentSettings):
    """What the API function needs to know about its deployment.

    `DeploymentSettings`, and the function ARN prefixes topics may subscribe
    (comma-separated; none: any Lambda function, ADR 0015 §1).
    """

    VARIABLES: ClassVar[Mapping[str, str]] = {
        **DeploymentSettings.VARIABLES,
        "function_prefixes": ENV_TRIGGER_FUNCTION_PREFIXES,
    }
    LISTS: ClassVar[frozenset[str]] = DeploymentSettings.LISTS | {"function_prefixes"}
    PART: ClassVar[str] = "API function"

    function_prefixes: tuple[str, ...] = ()

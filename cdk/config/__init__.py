"""Deployment environments of the CDK app: one module per environment, one model for all.

Add an environment by writing ``config/<name>.py`` with a ``CONFIG = EnvironmentConfig(...)``
and listing it in `ENVIRONMENTS`; ``cdk deploy -c env=<name>`` then builds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from config import dev, prod, staging
from config.environment import EnvironmentConfig

__all__ = ["ENVIRONMENTS", "EnvironmentConfig", "UnknownEnvironmentError", "load_environment"]

ENVIRONMENTS: Final[Mapping[str, EnvironmentConfig]] = MappingProxyType(
    {config.name: config for config in (dev.CONFIG, staging.CONFIG, prod.CONFIG)}
)
"""Every environment the app can build, by name."""


class UnknownEnvironmentError(LookupError):
    """The requested environment has no module in `config`.

    Parameters
    ----------
    name
        The name that was asked for.
    valid
        The names that exist.
    """

    def __init__(self, name: str, valid: tuple[str, ...]) -> None:
        self.name = name
        self.valid = valid
        super().__init__(f"unknown environment {name!r}; valid names: {', '.join(valid)}")

    def __str__(self) -> str:
        return str(self.args[0])


def load_environment(name: str) -> EnvironmentConfig:
    """The configuration of environment ``name``.

    Raises
    ------
    UnknownEnvironmentError
        If ``name`` is not one of `ENVIRONMENTS`; its message lists the valid names.
    """
    try:
        return ENVIRONMENTS[name]
    except KeyError:
        raise UnknownEnvironmentError(name, tuple(sorted(ENVIRONMENTS))) from None

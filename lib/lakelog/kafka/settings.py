"""Configuration of a deployed Kafka gateway, parsed once from its environment."""

from __future__ import annotations

from typing import ClassVar

from lakelog.settings import DeploymentSettings, SettingsError

__all__ = ["GatewaySettings", "SettingsError"]


class GatewaySettings(DeploymentSettings):
    """What ``lakelog kafka`` needs to know about its deployment (`DeploymentSettings`:
    the bucket and tables, the default ACL effect and the bootstrap administrators).

    Where it listens and what it advertises are options of the command (each with its
    ``LAKELOG_KAFKA_*`` variable), not of the deployment.
    """

    PART: ClassVar[str] = "Kafka gateway"

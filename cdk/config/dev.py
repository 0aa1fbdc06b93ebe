"""dev: one developer's sandbox. Cheap, verbose, open, and deleted without a trace."""

from __future__ import annotations

from config.environment import EnvironmentConfig

CONFIG = EnvironmentConfig(
    name="dev",
    region="eu-west-1",
    function_memory_mb=512,
    function_timeout_seconds=30,
    log_level="DEBUG",
    log_retention_days=7,
    removal_policy="destroy",
    point_in_time_recovery=False,
    deletion_protection=False,
    alarms_enabled=False,
    alarm_notifications=False,
    access_logging=False,
    default_acl_effect="allow",
    api_throttle_rate=50,
    api_throttle_burst=100,
    compactor_schedule="rate(1 hour)",
    tracing=False,
)

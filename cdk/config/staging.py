"""staging: prod's shape at a smaller size; alarms on but nobody paged; torn down freely."""

from __future__ import annotations

from config.environment import EnvironmentConfig

CONFIG = EnvironmentConfig(
    name="staging",
    region="eu-west-1",
    function_memory_mb=1024,
    function_timeout_seconds=30,
    log_level="INFO",
    log_retention_days=30,
    removal_policy="destroy",
    point_in_time_recovery=True,
    deletion_protection=False,
    alarms_enabled=True,
    alarm_notifications=False,
    access_logging=False,
    default_acl_effect="deny",
    api_throttle_rate=200,
    api_throttle_burst=400,
    compactor_schedule="rate(15 minutes)",
    tracing=True,
)

"""prod: data outlives the stack, every access is logged, alarms page someone."""

from __future__ import annotations

from config.environment import EnvironmentConfig

CONFIG = EnvironmentConfig(
    name="prod",
    region="eu-west-1",
    function_memory_mb=1769,  # one full vCPU: Parquet encoding is CPU-bound
    function_timeout_seconds=30,
    log_level="INFO",
    log_retention_days=365,
    removal_policy="retain",
    point_in_time_recovery=True,
    deletion_protection=True,
    alarms_enabled=True,
    alarm_notifications=True,
    access_logging=True,
    access_log_retention_days=365,
    default_acl_effect="deny",
    api_throttle_rate=1000,
    api_throttle_burst=2000,
    compactor_schedule="rate(5 minutes)",
    tracing=True,
)

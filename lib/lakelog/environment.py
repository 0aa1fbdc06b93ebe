"""Names of the environment variables every lakelog function reads at cold start.

The CDK app sets exactly these; each function's pydantic settings model reads them.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ENV_ADMIN_PRINCIPALS",
    "ENV_BOOTSTRAP_SERVERS",
    "ENV_BUCKET",
    "ENV_CATALOG_TABLE",
    "ENV_DEFAULT_ACL_EFFECT",
    "ENV_DISPATCH_CONCURRENCY",
    "ENV_ENVIRONMENT",
    "ENV_LEDGER_TABLE",
    "ENV_TRIGGER_FUNCTION_PREFIXES",
]

ENV_ENVIRONMENT: Final = "LAKELOG_ENVIRONMENT"
ENV_BUCKET: Final = "LAKELOG_BUCKET"
ENV_LEDGER_TABLE: Final = "LAKELOG_LEDGER_TABLE"
ENV_CATALOG_TABLE: Final = "LAKELOG_CATALOG_TABLE"
ENV_DEFAULT_ACL_EFFECT: Final = "LAKELOG_DEFAULT_ACL_EFFECT"
ENV_ADMIN_PRINCIPALS: Final = "LAKELOG_ADMIN_PRINCIPALS"
"""Comma-separated principal patterns that always hold ``admin`` (bootstrap administrators)."""
ENV_TRIGGER_FUNCTION_PREFIXES: Final = "LAKELOG_TRIGGER_FUNCTION_PREFIXES"
"""Comma-separated Lambda ARN prefixes a subscription's ``function_arn`` must start with
(the dispatcher's role may invoke only those, ADR 0015 §4)."""
ENV_DISPATCH_CONCURRENCY: Final = "LAKELOG_DISPATCH_CONCURRENCY"
"""Deliveries one dispatcher run makes at once (``max_concurrent_deliveries``); the CDK app
sets it from the function's memory (`lakelog.service.dispatch.deliveries_for_memory`)."""
ENV_BOOTSTRAP_SERVERS: Final = "LAKELOG_BOOTSTRAP_SERVERS"
"""``bootstrapServers`` of the events the dispatcher sends (the Kafka gateway's address,
when the deployment has one)."""

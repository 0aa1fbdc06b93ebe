"""The API function's handler: Powertools logging, tracing and metrics around the resolver.

`make_handler` builds it once per process (at cold start in Lambda, at start-up in the local
server), so both run the same code on the same kind of event.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from lakelog.api.app import create_app, precheck
from lakelog.api.errors import error_body, status_of
from lakelog.api.settings import ApiSettings
from lakelog.service.engine import Engine
from lakelog.service.subscriptions import FunctionPolicy

__all__ = ["SERVICE", "Handler", "make_handler"]

SERVICE = "lakelog-api"
NAMESPACE = "lakelog"

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def make_handler(settings: ApiSettings, engine: Engine | None = None) -> Handler:
    """The Lambda handler of the HTTP API for one deployment.

    Parameters
    ----------
    settings
        Names of the deployment's resources and its default ACL policy.
    engine
        The engine to serve; by default one on boto3's default session.
    """
    logger = Logger(service=SERVICE)
    tracer = Tracer(service=SERVICE)
    metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
    engine = engine or Engine.from_session(
        settings.names, functions=FunctionPolicy(prefixes=settings.function_prefixes)
    )
    access = engine.access_control(settings.default_acl, admins=settings.admin_principals)
    app = create_app(engine, access, metrics, logger)

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if is_metrics_disabled():
            # Disabled metrics are neither flushed nor cleared by Powertools; drop the last
            # request's so they do not pile up (and print) in a long-lived local process.
            metrics.clear_metrics()
        started = time.perf_counter()
        try:
            refused = precheck(event)
            if refused is not None:
                metrics.add_metric(name=f"Errors.{refused.code}", unit=MetricUnit.Count, value=1)
                return {
                    "statusCode": int(status_of(refused)),
                    "headers": {"Content-Type": "application/json"},
                    "body": json.dumps(error_body(refused)),
                    "isBase64Encoded": False,
                }
            return app.resolve(event, context)
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=elapsed)

    return handler

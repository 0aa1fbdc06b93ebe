"""API Gateway HTTP API (payload format 2.0) events, as API Gateway sends them to Lambda.

The local server turns each HTTP request into one of these for the API handler, exactly
as API Gateway with IAM authorization would, with the configured principal as the caller.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

__all__ = ["LocalContext", "http_event"]

_TEXT_TYPES = ("application/json", "text/", "application/x-www-form-urlencoded")


def http_event(
    method: str,
    path: str,
    *,
    query: str = "",
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    principal: str | None = None,
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """An HTTP API v2 event for ``method path?query`` with ``body``.

    ``principal`` becomes ``requestContext.authorizer.iam.userArn`` (the IAM caller);
    None sends the request with no authorizer context.
    """
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    content_type = lowered.get("content-type", "")
    text = not body or any(content_type.startswith(t) for t in _TEXT_TYPES)
    try:
        body_text = body.decode() if text else None
    except UnicodeDecodeError:
        body_text = None
    request_id = uuid.uuid4().hex
    now = time.time()
    context: dict[str, Any] = {
        "accountId": "000000000000",
        "apiId": "local",
        "domainName": lowered.get("host", "127.0.0.1"),
        "domainPrefix": "local",
        "http": {
            "method": method.upper(),
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": lowered.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }
    if principal is not None:
        context["authorizer"] = {
            "iam": {
                "accessKey": "LOCAL",
                "accountId": "000000000000",
                "callerId": principal,
                "principalOrgId": None,
                "userArn": principal,
                "userId": principal,
            }
        }
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": lowered,
        "requestContext": context,
        "isBase64Encoded": body_text is None,
    }
    if query:
        params: dict[str, str] = {}
        for key, value in parse_qsl(query, keep_blank_values=True):
            params[key] = f"{params[key]},{value}" if key in params else value
        event["queryStringParameters"] = params
    if body:
        event["body"] = body_text if body_text is not None else base64.b64encode(body).decode()
    return event


@dataclass
class LocalContext:
    """The parts of Lambda's context object the handler's Powertools decorators read."""

    function_name: str = "lakelog-api-local"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:lakelog-api-local"
    aws_request_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def get_remaining_time_in_millis(self) -> int:
        """Lambda's deadline; the local server has none, so report 15 minutes."""
        return 15 * 60 * 1000

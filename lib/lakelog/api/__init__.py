"""The HTTP API v1: the resolver and the Lambda handler factory (bodies: `lakelog.contract`)."""

from __future__ import annotations

from lakelog.api.handler import make_handler
from lakelog.api.settings import ApiSettings

__all__ = ["ApiSettings", "make_handler"]

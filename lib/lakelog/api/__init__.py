"""The HTTP API v1: contract models, the resolver and the Lambda handler factory."""

from __future__ import annotations

from lakelog.api.handler import make_handler
from lakelog.api.settings import ApiSettings

__all__ = ["ApiSettings", "make_handler"]

"""Use cases of the engine: topic admin, append, fetch and gc."""

from __future__ import annotations

from lakelog.service.engine import Engine

__all__ = ["Engine"]

"""Running lakelog on one machine: AWS emulated in-process by moto."""

from __future__ import annotations

from lakelog.local.emulation import serialize_moto_dynamodb

__all__ = ["serialize_moto_dynamodb"]

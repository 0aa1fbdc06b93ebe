"""Benchmarks of lakelog on moto: AWS calls, request units, CPU and cost per operation."""

from __future__ import annotations

__all__: list[str] = []

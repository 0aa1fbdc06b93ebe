"""The log: segment codec, ledger protocol and partitioner."""

from __future__ import annotations

__all__: list[str] = []

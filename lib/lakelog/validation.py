"""One-line summaries of pydantic validation errors, for error messages people read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["summarize"]


def summarize(
    errors: Iterable[Mapping[str, Any]], *, prefix: str = "", skip: frozenset[str] = frozenset()
) -> str:
    """``"field.path: message; ..."`` for each error; ``prefix`` goes before each path.

    ``skip`` names location parts to leave out (a framework's ``"body"`` wrapper).
    """
    parts = []
    for error in errors:
        path = ".".join(str(p) for p in error.get("loc", ()) if str(p) not in skip)
        parts.append(f"{prefix}{path or 'value'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)

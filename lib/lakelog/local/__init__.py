"""Running lakelog on one machine (``lakelog dev``): AWS emulated in-process by moto.

Needs the ``lakelog[local]`` extra. Part of the dev server, never of a Lambda: the API
function imports nothing from here (ADR 0006). Tests that want storage without moto use
`lakelog.storage.memory` instead.
"""

from __future__ import annotations

from lakelog.local.emulation import serialize_moto_dynamodb

__all__ = ["serialize_moto_dynamodb"]

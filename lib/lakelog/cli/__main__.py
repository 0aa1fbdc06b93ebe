"""``python -m lakelog.cli``: the ``lakelog`` command."""

from __future__ import annotations

from lakelog.cli import main

main()

"""The CLI package: defaults named in the CLI agree with the modules they stand for."""

from __future__ import annotations

from lakelog.cli import common, compact, dev
from lakelog.local import compaction, server


def test_dev_defaults_are_the_local_servers() -> None:
    # The CLI names them itself so `lakelog --help` does not load the server
    assert common.DEFAULT_PORT == server.DEFAULT_PORT
    assert dev.DEFAULT_PRINCIPAL == server.DEFAULT_PRINCIPAL
    assert common.DEFAULT_COMPACT_EVERY == compaction.DEFAULT_COMPACT_EVERY
    assert compact.COMPACT_PATH == compaction.COMPACT_PATH

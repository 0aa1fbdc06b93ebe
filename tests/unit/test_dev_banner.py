"""The query ``lakelog dev``'s banner prints for DuckDB reads every segment it matches, L0
and L1 alike, with the columns of both (run here on a local copy of the bucket's layout)."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
from rich.console import Console

from lakelog.cli.dev import _print_banner
from lakelog.log.codec import SegmentBuilder

BUCKET = "lakelog-local-segments"


def banner_query() -> str:
    """The SELECT of the banner's DuckDB line."""
    service: Any = SimpleNamespace(
        host="127.0.0.1",
        api_url="http://127.0.0.1:8080",
        docs_url="http://127.0.0.1:8080/v1/docs",
        s3_endpoint_url="http://127.0.0.1:5000",
        kafka_bootstrap=None,
        bucket=BUCKET,
        principal="arn:aws:iam::000000000000:user/local-developer",
        default_acl="allow",
        compact_every=60.0,
    )
    text = io.StringIO()
    _print_banner(Console(file=text, width=10_000), service)
    (line,) = (line for line in text.getvalue().splitlines() if line.strip().startswith("DuckDB"))
    return line.split("USE_SSL false); ", 1)[1]


def segment(level: str, base_offset: int | None) -> bytes:
    builder = SegmentBuilder("t1", level=level)
    builder.add_batch(0, [1_000], [b"k"], [level.encode()], [[]], base_offset=base_offset)
    return builder.build().body


def test_the_banner_query_keeps_the_offset_column_of_merged_segments(tmp_path: Path) -> None:
    # Given the bucket's layout with an L0 flush segment and an L1 segment (offset column)
    l0 = tmp_path / "segments" / "t1" / "L0" / "0000000001000-a.parquet"
    l1 = tmp_path / "segments" / "t1" / "L1" / "0" / "00000000000000000007-b.parquet"
    for path, body in ((l0, segment("L0", None)), (l1, segment("L1", 7))):
        path.parent.mkdir(parents=True)
        path.write_bytes(body)

    # When the banner's query runs on it
    query = banner_query().replace(f"s3://{BUCKET}/", f"{tmp_path}/")
    relation = duckdb.sql(query)
    assert relation is not None

    # Then both rows come back, the merged one with its offset
    assert "offset" in relation.columns
    rows = relation.select('value, "offset"').order("value").fetchall()
    assert rows == [(b"L0", None), (b"L1", 7)]

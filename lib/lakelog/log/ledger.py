"""Per-partition entries read as a dense run: the compactor's L1 entries (ADR 0012).

The ledger's append protocol is the chain's (`lakelog.log.chain`): one item per append for
the whole topic. Offsets below a partition's L1 end are served from per-partition L1
entries (`lakelog.log.records.Entry`, at ``p#{topic_id}#{partition}``) that the compactor's
merge writes (ADR 0012, 1.5 and 1.7; `lakelog.service.merge`); they are read with
`contiguous_run`, so a reader only ever
returns a dense run of entries from the requested offset and a batch is never visible
without its predecessor.
"""

from __future__ import annotations

from collections.abc import Sequence

from lakelog.log.records import Entry

__all__ = ["contiguous_run"]


def contiguous_run(entries: Sequence[Entry], offset: int) -> list[Entry]:
    """The entries that form a dense run starting with the batch that holds ``offset``.

    Entries after a gap are dropped: a reader must never see a batch without its
    predecessor, even if a query observed a later write before an earlier one. ADR 0012
    (1.5) reads the compactor's per-partition L1 entries with it, for offsets below the
    partition's L1 end.
    """
    run: list[Entry] = []
    expected = offset
    for entry in entries:
        starts_here = entry.base_offset == expected or (not run and entry.base_offset <= expected)
        if not starts_here or entry.last_offset < expected:
            break
        run.append(entry)
        expected = entry.last_offset + 1
    return run

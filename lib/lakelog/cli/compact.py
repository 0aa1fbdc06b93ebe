"""``lakelog compact``: one compactor pass of ``lakelog dev`` now, or what it would do.

The pass runs inside the dev server, on its storage, through the local server's own route
(`lakelog.local.compaction.COMPACT_PATH`); the deployed HTTP API has no such route, since a
deployment compacts on its schedule (ADR 0013).
"""

from __future__ import annotations

import json
from typing import Any, Final

import click

from lakelog.cli.common import CommandError, Settings, json_option, print_json

__all__ = ["COMPACT_PATH", "compact", "print_pass"]

COMPACT_PATH: Final = "/local/compact"
"""The dev server's pass route (`lakelog.local.compaction.COMPACT_PATH`, kept equal by a
test; named here so ``lakelog --help`` does not load the server)."""
PASS_TIMEOUT_SECONDS: Final = 900.0
"""How long the command waits for a pass."""


def _post(endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    import urllib3  # noqa: PLC0415 - loaded when the command runs

    url = endpoint.rstrip("/") + COMPACT_PATH
    try:
        response = urllib3.request("POST", url, json=body, timeout=PASS_TIMEOUT_SECONDS)
    except urllib3.exceptions.HTTPError as exc:
        raise CommandError("unavailable", f"cannot reach {endpoint}: {exc}") from None
    try:
        reply = json.loads(response.data or b"{}")
    except json.JSONDecodeError:
        reply = {}
    if not isinstance(reply, dict):
        reply = {}
    # The API answers a route it lacks with 404 not_found; API Gateway an unsigned call
    # with 403 and no error code.
    if response.status in (403, 404) and reply.get("error") in (None, "not_found"):
        raise CommandError(
            "not_supported",
            f"{endpoint} runs no compactor pass on request: lakelog compact drives lakelog "
            "dev; a deployment compacts on its schedule (state machine <prefix>-compactor)",
        )
    if response.status != 200:
        raise CommandError(
            str(reply.get("error", "internal")),
            str(reply.get("message", f"HTTP {response.status} from {url}")),
        )
    return reply


def print_pass(reply: dict[str, Any], dry_run: bool) -> None:
    """A pass's reply for people: per step its counters, then its actions, then gc."""
    steps: list[dict[str, Any]] = reply["steps"]
    if not steps:
        click.echo("no topic needs work")
    for step in steps:
        counters = [
            f"{step['bytes_expired']} bytes expired",
            f"{step['items_removed']} chain items removed",
            f"{step['entries_removed']} L1 entries removed",
            f"{step['segments_deleted']} segments deleted",
            f"{step['segments_merged']} segments merged ({step['bytes_merged']} bytes)",
            f"{step['records_compacted']} records compacted",
        ]
        starts = step["log_start_offsets"]
        if starts:
            moved = ", ".join(
                f"{p}->{o}" for p, o in sorted(starts.items(), key=lambda i: int(i[0]))
            )
            counters.append(f"log_start_offset {moved}")
        verb = "would do" if dry_run else ("done" if step["done"] else "more to do")
        click.echo(f"{step['topic']}: {verb}: {', '.join(counters)}")
        for action in step["actions"]:
            click.echo(f"  {action}")
    gc = reply.get("gc")
    if gc is not None:
        click.echo(
            f"gc: {gc['segments_deleted']} segments deleted, {gc['topics_purged']} topics purged"
        )


@click.command(short_help="Run one compactor pass of lakelog dev now.")
@click.argument("topic", required=False)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Say what the first step of each topic would do; change nothing (no gc).",
)
@json_option
@click.pass_obj
def compact(settings: Settings, topic: str | None, dry_run: bool, as_json: bool) -> None:
    """Run one compactor pass now: TOPIC, or every topic that needs work, then the full gc.

    The full gc also scans every topic's segments for orphans (of crashed appends and
    merges); lakelog dev's own scheduled passes run it at most hourly. Prints what each
    step did (retention, merges, log_start_offset moves, segments deleted) and what gc
    deleted. Talks to lakelog dev, which also runs passes on its own schedule.
    """
    body: dict[str, Any] = {"dry_run": dry_run}
    if topic is not None:
        body["topic"] = topic
    reply = _post(settings.endpoint, body)
    if as_json or settings.json:
        print_json(reply)
    else:
        print_pass(reply, dry_run)

"""Compactor passes of the local dev server: on a schedule, and on request.

``lakelog dev`` runs a pass every ``compact_every`` seconds in a background thread, and a
pass whenever ``lakelog compact`` posts to `COMPACT_PATH`, a route of the local server
only (ADR 0013: the deployed HTTP API does not compact; its role may not delete segments).
Both run `run_pass` over the same compactor, one pass at a time. A requested pass runs the
full gc (the scan of every topic's segments for orphans); scheduled passes run it at most
every ``full_gc_every`` seconds (`DEFAULT_FULL_GC_EVERY`) and the light gc otherwise, as a
deployment's schedules do (ADR 0013, 5.3).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
import traceback
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Final, TextIO

from lakelog.api.app import parse_json
from lakelog.contract.errors import error_body, status_of
from lakelog.errors import InvalidRequestError, LakelogError
from lakelog.service.passes import CompactorCalls, PassReport, run_pass

__all__ = [
    "COMPACT_PATH",
    "DEFAULT_COMPACT_EVERY",
    "DEFAULT_FULL_GC_EVERY",
    "LocalCompactor",
    "pass_reply",
]

COMPACT_PATH: Final = "/local/compact"
"""``POST {"topic"?: name, "dry_run"?: bool}``: one pass now; the reply is `pass_reply`."""
DEFAULT_COMPACT_EVERY: Final = 60.0
"""Seconds between the dev server's passes."""
DEFAULT_FULL_GC_EVERY: Final = 3600.0
"""Seconds at least between two scheduled passes of the dev server that run the full gc."""


def pass_reply(report: PassReport) -> dict[str, Any]:
    """``{"steps": [step, ...], "gc": {...} | null}``, each as its dataclass's fields."""
    return {
        "steps": [dataclasses.asdict(step) for step in report.steps],
        "gc": None if report.gc is None else dataclasses.asdict(report.gc),
    }


class LocalCompactor:
    """Runs passes one at a time, on request and (when ``every`` > 0) on a schedule.

    Parameters
    ----------
    make_compactor
        Builds the compactor, on the first pass.
    every
        Seconds between scheduled passes; 0 runs none.
    log
        Where a failed scheduled pass is reported (it never stops the schedule).
    full_gc_every
        Seconds at least between two scheduled passes running the full gc (the first
        scheduled pass runs it; a requested pass always does).
    clock
        Seconds of a monotonic clock (`time.monotonic`), for ``full_gc_every``.
    """

    def __init__(
        self,
        make_compactor: Callable[[], CompactorCalls],
        every: float = DEFAULT_COMPACT_EVERY,
        log: TextIO | None = None,
        *,
        full_gc_every: float = DEFAULT_FULL_GC_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._make = make_compactor
        self._compactor: CompactorCalls | None = None
        self.every = every
        self.full_gc_every = full_gc_every
        self._clock = clock
        self._last_full_gc: float | None = None
        self._log = log
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0
        """Passes run so far (scheduled and requested)."""

    def run(
        self, topic: str | None = None, *, dry_run: bool = False, full_gc: bool = True
    ) -> PassReport:
        """One pass over ``topic`` (or every topic needing work), after any pass running;
        its gc is the full one unless ``full_gc`` is False.

        Once `stop` is called the pass ends after its current step."""
        with self._lock:
            if self._compactor is None:
                self._compactor = self._make()
            report = run_pass(
                self._compactor,
                None if topic is None else [topic],
                dry_run=dry_run,
                keep_going=lambda: not self._stop.is_set(),
                full_gc=full_gc,
            )
            if full_gc and report.gc is not None:
                self._last_full_gc = self._clock()
            self.passes += 1
            return report

    def run_scheduled(self) -> PassReport:
        """A scheduled pass: the full gc if none ran for ``full_gc_every`` seconds."""
        last = self._last_full_gc
        due = last is None or self._clock() - last >= self.full_gc_every
        return self.run(full_gc=due)

    def reply(self, body: bytes) -> tuple[HTTPStatus, dict[str, Any]]:
        """The status and JSON body answering a ``POST`` to `COMPACT_PATH` with ``body``."""
        try:
            request = parse_json(body or b"{}")
            if not isinstance(request, dict) or set(request) - {"topic", "dry_run"}:
                raise InvalidRequestError('the body is {"topic"?: name, "dry_run"?: bool}')
            topic, dry_run = request.get("topic"), request.get("dry_run", False)
            if not (topic is None or isinstance(topic, str)) or not isinstance(dry_run, bool):
                raise InvalidRequestError("topic is a name or null, dry_run a boolean")
            return HTTPStatus.OK, pass_reply(self.run(topic, dry_run=dry_run))
        except json.JSONDecodeError as exc:
            error: LakelogError = InvalidRequestError(f"the body is not JSON: {exc}")
        except LakelogError as exc:
            error = exc
        return HTTPStatus(int(status_of(error))), error_body(error)

    def start(self) -> None:
        """Start the scheduled passes (none when ``every`` is 0)."""
        if self.every <= 0 or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name="lakelog-dev-compactor", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the schedule; a pass running ends after its current step (waited for up
        to ``timeout`` seconds)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.run_scheduled()
            except Exception:  # a failed pass is reported; the next one tries again
                print("lakelog dev: a compactor pass failed:", file=self._log or sys.stderr)
                traceback.print_exc(file=self._log or sys.stderr)

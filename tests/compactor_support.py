"""A scripted stand-in for the compactor's three calls, for the tests of its drivers."""

from __future__ import annotations

from dataclasses import dataclass, field

from lakelog.errors import UnavailableError
from lakelog.service.compactor import CompactionStep, GcReport

__all__ = ["ScriptedCompactor"]


@dataclass
class ScriptedCompactor:
    """Topics that need a given number of steps; failures injected per call name."""

    steps_left: dict[str, int]
    failures: dict[str, int] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    backlog_ms: int = 0
    """The L0 backlog age each step reports while steps are left (the last reports 0)."""

    def _maybe_fail(self, call: str) -> None:
        self.calls.append(call)
        if self.failures.get(call, 0) > 0:
            self.failures[call] -= 1
            raise UnavailableError(f"{call} failed (injected)")

    def topics_needing_work(self) -> list[str]:
        self._maybe_fail("list")
        return sorted(self.steps_left)

    def compact_topic(self, topic: str, *, dry_run: bool = False) -> CompactionStep:
        self._maybe_fail(f"compact:{topic}")
        assert self.steps_left[topic] > 0, f"{topic} compacted after it was done"
        self.steps_left[topic] -= 1
        done = self.steps_left[topic] == 0
        return CompactionStep(
            topic,
            done=done,
            segments_merged=2,
            bytes_merged=2 << 20,
            l0_backlog_ms=0 if done else self.backlog_ms,
        )

    def collect(self, *, full: bool = True) -> GcReport:
        self._maybe_fail("collect" if full else "collect:light")
        return GcReport(segments_deleted=1)

"""`GroupClock`: the time a consumer's group membership keeps (heartbeats, auto-commit).

The coordinator reads it to decide when a heartbeat or an auto-commit is due, and its
heartbeat thread waits on it between rounds. `SYSTEM_CLOCK` is the real one; tests give a
consumer a fake one (``Consumer(..., _clock=...)``), shared with the engines' ``clock_ms``,
so that sessions, heartbeats and lease moves happen when the test moves time, never
because a machine was slow.
"""

from __future__ import annotations

import threading
import time
from typing import Final, Protocol

__all__ = ["SYSTEM_CLOCK", "GroupClock", "SystemClock"]


class GroupClock(Protocol):
    """Seconds that only go forward, and a wait measured in them."""

    def monotonic(self) -> float:
        """Seconds since an arbitrary start; never goes back."""
        ...

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait until ``event`` is set or ``seconds`` passed; whether it is set."""
        ...


class SystemClock:
    """`time.monotonic`, and `threading.Event.wait`."""

    def monotonic(self) -> float:
        """`time.monotonic`."""
        return time.monotonic()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """``event.wait(seconds)``."""
        return event.wait(seconds)


SYSTEM_CLOCK: Final[GroupClock] = SystemClock()
"""The clock a consumer keeps unless given another."""

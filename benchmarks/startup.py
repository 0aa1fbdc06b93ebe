"""Start-up time of ``import lakelog`` and of the ``lakelog`` command.

Each case runs in a fresh interpreter (``sys.executable``, this environment), ``runs``
times; the report keeps the median wall time. The HTTP command asks a loopback port
nothing listens on, so it measures start-up plus one refused connection, not a server.
``python -m benchmarks.startup`` prints the numbers alone.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

__all__ = ["StartupReport", "StartupWorkload", "run_startup"]


@dataclass(frozen=True, slots=True)
class StartupWorkload:
    """Runs per case (the median is kept)."""

    runs: int = 5


@dataclass(frozen=True, slots=True)
class StartupReport:
    """Median wall seconds of each case."""

    runs: int
    python_s: float
    """``python -c pass``: the interpreter alone, for reference."""
    import_s: float
    """``python -c "import lakelog"``."""
    help_s: float
    """``lakelog --help``."""
    http_command_s: float
    """``lakelog --endpoint http://127.0.0.1:PORT topic list`` (connection refused)."""


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _median_s(args: list[str], runs: int) -> float:
    """Median wall seconds of running ``python ARGS`` to its end, ``runs`` times."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, *args], capture_output=True, check=False, timeout=120)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run_startup(workload: StartupWorkload | None = None) -> StartupReport:
    """Measure every case; see `StartupReport`."""
    runs = (workload or StartupWorkload()).runs
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    cli = ["-m", "lakelog.cli"]
    return StartupReport(
        runs=runs,
        python_s=_median_s(["-c", "pass"], runs),
        import_s=_median_s(["-c", "import lakelog"], runs),
        help_s=_median_s([*cli, "--help"], runs),
        http_command_s=_median_s([*cli, "--endpoint", endpoint, "topic", "list"], runs),
    )


if __name__ == "__main__":
    sys.stdout.write(f"{run_startup()}\n")

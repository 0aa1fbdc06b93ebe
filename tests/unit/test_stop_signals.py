"""`lakelog.cli.common.StopSignals`: Ctrl-C and SIGTERM as a wait for a serving command.

A Python signal handler runs in the main thread between any two bytecodes, also while that
thread holds a lock. The tests deliver a real SIGTERM at each line the wait executes (a
trace function raises it there), in a child process so that a deadlock is a failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from lakelog.cli.common import StopSignals
from tests.e2e.conftest import REPO

CHILD_TIMEOUT = 60.0
"""Longest a child may take; only one that deadlocks reaches it."""

# Counts the lines the wait executes, then for each one k runs a fresh wait with SIGTERM
# raised at line k. A timer raises it late for the lines past the one where wait blocks.
_AT_EACH_LINE = textwrap.dedent(
    """
    import os, signal, sys, threading
    from lakelog.cli.common import StopSignals

    def wait_with_signal_at(line):
        seen = 0
        def tracer(frame, event, arg):
            def local(frame, event, arg):
                nonlocal seen
                if event == "line":
                    seen += 1
                    if seen == line:
                        signal.raise_signal(signal.SIGTERM)
                return local
            return local
        late = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM))
        with StopSignals() as signals:
            late.start()
            sys.settrace(tracer)
            try:
                received = signals.wait()
            finally:
                sys.settrace(None)
            late.cancel()
            late.join()
        assert received == signal.SIGTERM, received
        return seen

    lines = wait_with_signal_at(0)
    assert lines > 0
    for line in range(1, lines + 1):
        wait_with_signal_at(line)
    print("lines", lines)
    """
)


def run_child(script: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(REPO / "lib"), str(REPO)))}
    try:
        return subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the child deadlocked: {exc.stdout!r} {exc.stderr!r}")


def test_a_signal_at_any_line_of_the_wait_ends_it() -> None:
    result = run_child(_AT_EACH_LINE)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("lines "), result.stdout


def test_a_signal_before_the_wait_is_not_lost() -> None:
    # A Ctrl-C while the server starts ends the wait that follows at once.
    result = run_child(
        textwrap.dedent(
            """
            import signal
            from lakelog.cli.common import StopSignals
            with StopSignals() as signals:
                signal.raise_signal(signal.SIGINT)
                print(signals.wait())
            """
        )
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(int(signal.SIGINT))


def test_leaving_restores_the_handlers_and_the_wakeup_fd() -> None:
    def handler(signum: int, frame: object) -> None:
        raise AssertionError("not called")

    previous = {sig: signal.signal(sig, handler) for sig in StopSignals.SIGNALS}
    try:
        wakeup = signal.set_wakeup_fd(-1)
        with StopSignals():
            assert all(signal.getsignal(sig) is not handler for sig in StopSignals.SIGNALS)
        assert all(signal.getsignal(sig) is handler for sig in StopSignals.SIGNALS)
        assert signal.set_wakeup_fd(wakeup) == -1
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)

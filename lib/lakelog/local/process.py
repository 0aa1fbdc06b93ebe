"""``lakelog dev`` as a child process: for end-to-end tests and benchmarks.

`DevProcess` starts ``python -m lakelog.cli dev ARGS``, reads the banner it prints (API URL,
docs URL, S3 endpoint, bucket) and keeps reading its output, so the access log can never
fill the pipe and block the server. Callers wait for output by condition (`wait_ready`,
`wait_for_line`), never by sleeping.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Final

__all__ = ["DevProcess", "start_dev"]

START_TIMEOUT: Final = 60.0
"""How long `wait_ready` and `wait_for_line` wait: a backstop for a server that never
prints, not a measure of how fast it starts."""
STOP_TIMEOUT: Final = 60.0
"""How long `stop` waits for the exit before it kills: a backstop for a hung server (the
server's own drain takes a few seconds at most; tests of promptness time it themselves)."""
_BANNER: Final = {
    "api_url": re.compile(r"^\s*API\s+(http://\S+)\s*$"),
    "docs_url": re.compile(r"^\s*Docs\s+(http://\S+)\s*$"),
    "s3_endpoint_url": re.compile(r"^\s*S3 endpoint\s+(http://\S+)\s*$"),
    "bucket": re.compile(r"^\s*Bucket\s+(\S+)\s*$"),
    "kafka": re.compile(r"^\s*Kafka\s+(\S+)"),
}


class DevProcess:
    """One ``lakelog dev`` child process and what its banner said."""

    def __init__(
        self,
        *args: str,
        cwd: str | None = None,
        command: Sequence[str] | None = None,
        subcommand: str = "dev",
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Start ``COMMAND SUBCOMMAND ARGS`` in ``cwd``; ``command`` defaults to
        ``python -m lakelog.cli`` (give the ``lakelog`` console script to run it as a user
        does), ``subcommand`` to ``dev``; ``env`` is added to this process's environment
        (without ``AWS_ENDPOINT_URL`` unless ``env`` names it)."""
        environ = {**os.environ, "PYTHONUNBUFFERED": "1"}
        environ.pop("AWS_ENDPOINT_URL", None)
        environ.update(env or {})
        self.name = f"lakelog {subcommand}"
        self.process = subprocess.Popen(
            [*(command or (sys.executable, "-m", "lakelog.cli")), subcommand, *args],
            cwd=cwd,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.info: dict[str, str] = {}
        self.exit_code: int | None = None
        self._printed = threading.Condition()  # notified on each line, and at the end
        self._ended = False
        self._drain = threading.Thread(target=self._read, daemon=True)
        self._drain.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._printed:
                self.lines.append(line.rstrip("\n"))
                for name, pattern in _BANNER.items():
                    match = pattern.match(line)
                    if match:
                        self.info[name] = match.group(1)
                self._printed.notify_all()
        with self._printed:
            self._ended = True
            self._printed.notify_all()

    @property
    def output(self) -> str:
        """Everything the process printed so far."""
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> DevProcess:
        """Wait until the banner is printed; raise with the output if it never is."""
        with self._printed:
            self._printed.wait_for(lambda: self._ended or len(self.info) == len(_BANNER), timeout)
            ready = len(self.info) == len(_BANNER)
        if not ready:
            self.kill()
            raise RuntimeError(f"{self.name} did not start:\n{self.output}")
        return self

    def wait_for_line(self, wanted: Callable[[str], bool], timeout: float = START_TIMEOUT) -> str:
        """The first line printed, so far or from now on, for which ``wanted`` is true.

        Raises
        ------
        LookupError
            The process ended, or ``timeout`` seconds passed, without printing one; the
            message holds the output.
        """
        found: list[str] = []
        checked = 0

        def printed() -> bool:  # called with the condition held
            nonlocal checked
            found.extend(line for line in self.lines[checked:] if wanted(line))
            checked = len(self.lines)
            return bool(found) or self._ended

        with self._printed:
            self._printed.wait_for(printed, timeout)
        if not found:
            raise LookupError(f"{self.name} printed no such line:\n{self.output}")
        return found[0]

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        """The exit code, once the process has ended and its output is read."""
        code = self.process.wait(timeout)
        self._drain.join(timeout)
        return code

    def interrupt(self, sig: signal.Signals = signal.SIGINT) -> None:
        """Send ``sig`` (Ctrl-C by default)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def kill(self) -> None:
        """Make sure the process is gone."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(STOP_TIMEOUT)
        self._drain.join(STOP_TIMEOUT)

    def stop(self) -> int:
        """Ctrl-C, wait for the exit (kill after `STOP_TIMEOUT`); the exit code."""
        self.interrupt()
        try:
            self.exit_code = self.wait_exit()
            return self.exit_code
        finally:
            self.kill()

    def __enter__(self) -> DevProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        """`stop`; the exit code is then in ``exit_code``."""
        self.stop()

    @property
    def api_url(self) -> str:
        """The API's base URL."""
        return self.info["api_url"]

    @property
    def s3_endpoint_url(self) -> str:
        """moto's endpoint (S3 and DynamoDB)."""
        return self.info["s3_endpoint_url"]

    @property
    def kafka_bootstrap(self) -> str | None:
        """The Kafka protocol's ``bootstrap.servers``; None when it is off."""
        value = self.info["kafka"]
        return None if value == "off" else value

    @property
    def bucket(self) -> str:
        """The segment bucket."""
        return self.info["bucket"]


def start_dev(*args: str) -> DevProcess:
    """``lakelog dev --port 0 --kafka-port 0 ARGS`` started and ready (both on free ports:
    several may run at once)."""
    return DevProcess("--port", "0", "--kafka-port", "0", *args).wait_ready()

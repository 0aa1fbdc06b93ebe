"""moto as a server in a child process, so that its CPU is not counted as the caller's.

`moto_server` (in the benchmark's process) starts ``python -m benchmarks.motoserver`` (the
child), which applies `lakelog.local.serialize_moto_dynamodb` to its own moto, serves
S3 and DynamoDB with `moto.server.ThreadedMotoServer` on a free port of 127.0.0.1, writes
the port on its stdout and serves until its stdin closes: when `moto_server` closes it on
exit, or when the parent dies for any reason (the pipe then closes too).
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["main", "moto_server"]

_ROOT = Path(__file__).resolve().parent.parent
_STARTUP_SECONDS = 60.0
_STOP_SECONDS = 10.0


def main() -> int:
    """Child process: serve moto on a free port until stdin closes; print the port first."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - only the child needs it

    from lakelog.local import serialize_moto_dynamodb  # noqa: PLC0415

    serialize_moto_dynamodb()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        sys.stdout.write(f"{server.get_host_and_port()[1]}\n")
        sys.stdout.flush()
        sys.stdin.read()  # returns at end of file: the parent closed the pipe or is gone
    finally:
        server.stop()
    return 0


def _stop(process: subprocess.Popen[str]) -> None:
    """Close the child's stdin, then terminate, then kill it, until it has exited."""
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


@contextmanager
def moto_server() -> Iterator[str]:
    """Run a moto server in a child process for the ``with`` block; yield its endpoint.

    The child is stopped when the block exits, however it exits.

    Yields
    ------
    str
        ``http://127.0.0.1:{port}``.

    Raises
    ------
    RuntimeError
        The server did not start within a minute or did not report its port.
    """
    environment = dict(os.environ)
    path = environment.get("PYTHONPATH")
    environment["PYTHONPATH"] = f"{_ROOT}{os.pathsep}{path}" if path else str(_ROOT)
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.motoserver"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=environment,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], _STARTUP_SECONDS)
        line = process.stdout.readline().strip() if ready else ""
        if not line.isdigit():
            raise RuntimeError(f"the moto server did not start (exit code {process.poll()})")
        yield f"http://127.0.0.1:{int(line)}"
    finally:
        _stop(process)


if __name__ == "__main__":
    raise SystemExit(main())

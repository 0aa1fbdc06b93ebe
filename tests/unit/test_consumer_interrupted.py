"""An SDK consumer interrupted by Ctrl-C (Python's `KeyboardInterrupt`, raised wherever
the main thread is) still closes: `Consumer.close` leaves the group and returns.

The test raises a real SIGINT at each call of the SDK's functions while a group member
polls (a trace function raises it there), in a child process so that a close that waits
forever is a failure rather than a hung suite.
"""

from __future__ import annotations

import textwrap

from tests.unit.test_stop_signals import run_child

# For each call k of the SDK's functions (lakelog/client/), a fresh group's member polls
# the topic's two records, interrupted at call k when k comes before it has read them,
# then closes as a user's `with` block or `finally` does.
_AT_EACH_CALL = textwrap.dedent(
    """
    import signal, sys
    from lakelog.client import Client
    from lakelog.service.engine import Engine
    from lakelog.storage.memory import MemoryStorage
    from lakelog.types import Record

    engine = Engine(*MemoryStorage().stores(), sleep=lambda _s: None)
    engine.create_topic("orders", 2)
    engine.append("orders", [Record(value=b"v", partition=p) for p in (0, 1)])
    client = Client(transport=engine)

    def poll_with_interrupt_at(call):
        seen = 0
        def tracer(frame, event, arg):
            nonlocal seen
            if event == "call" and "lakelog/client/" in frame.f_code.co_filename:
                seen += 1
                if seen == call:
                    signal.raise_signal(signal.SIGINT)
            return None
        consumer = client.consumer(
            "orders", group_id=f"billing-{call}", auto_offset_reset="earliest",
            session_timeout_ms=6_000,
        )
        sys.settrace(tracer)
        try:
            read = 0
            while read < 2:
                read += sum(map(len, consumer.poll(timeout_ms=1_000).values()))
        except KeyboardInterrupt:
            pass
        finally:
            sys.settrace(None)
            consumer.close()
        return seen

    calls = poll_with_interrupt_at(0)
    assert calls > 0
    for call in range(1, calls + 1):
        poll_with_interrupt_at(call)
    print("calls", calls)
    """
)


def test_a_consumer_interrupted_at_any_call_of_its_poll_still_closes() -> None:
    result = run_child(_AT_EACH_CALL)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("calls "), result.stdout

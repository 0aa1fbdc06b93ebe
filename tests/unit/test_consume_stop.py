"""``lakelog consume`` stopped by Ctrl-C or SIGTERM: it leaves its group and exits.

A Python signal handler runs in the main thread between bytecodes, for instance where a
function starts. The test delivers a real SIGTERM at each call of the consumer's functions
while a group member reads (a trace function raises it there), in a child process so that
an exit that waits forever is a failure rather than a hung suite.
"""

from __future__ import annotations

import textwrap

from tests.unit.test_stop_signals import run_child

# For each call k of the consumer's functions (lakelog/client/), where a real handler may
# run, a fresh group's member reads the topic's two records, stopped by SIGTERM at call k
# when k comes before it has read them, then leaves the group.
_AT_EACH_CALL = textwrap.dedent(
    """
    import signal, sys
    from lakelog.cli.consume import _Reading, _RecordPrinter, _read_until_stopped
    from lakelog.client import Client
    from lakelog.errors import GroupNotFoundError
    from lakelog.service.engine import Engine
    from lakelog.storage.memory import MemoryStorage
    from lakelog.types import Record

    signal.signal(signal.SIGTERM, lambda *_: None)  # one that comes after the reading
    engine = Engine(*MemoryStorage().stores(), sleep=lambda _s: None)
    engine.create_topic("orders", 2)
    engine.append("orders", [Record(value=b"v", partition=p) for p in (0, 1)])
    client = Client(transport=engine)
    printer = _RecordPrinter(as_json=False, print_key=False, separator="\\t")

    def members(group):
        try:
            return client.describe_group(group).members
        except GroupNotFoundError:  # stopped before it joined
            return ()

    def read_with_signal_at(call):
        seen = 0
        def tracer(frame, event, arg):
            nonlocal seen
            if event == "call" and "lakelog/client/" in frame.f_code.co_filename:
                seen += 1
                if seen == call:
                    signal.raise_signal(signal.SIGTERM)
            return None
        group = f"billing-{call}"
        consumer = client.consumer(
            "orders", group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
        )
        reading = _Reading(consumer, printer, commit=True)
        sys.settrace(tracer)
        try:
            _read_until_stopped(reading, 2, 60.0)
        finally:
            sys.settrace(None)
        assert members(group) == (), call
        return seen

    calls = read_with_signal_at(0)
    assert calls > 0
    for call in range(1, calls + 1):
        read_with_signal_at(call)
    print("calls", calls)
    """
)


def test_a_signal_at_any_call_of_a_group_member_s_reading_ends_it_and_it_leaves() -> None:
    result = run_child(_AT_EACH_CALL)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("calls "), result.stdout

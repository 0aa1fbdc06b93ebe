"""Each error the SDK can meet is the same exception, with the same attributes, on both
transports: over HTTP it is rebuilt from the reply by its own constructor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lakelog.client import Client
from lakelog.contract.operations import (
    Append,
    CommitOffsets,
    CreateTopic,
    DescribeTopic,
    Fetch,
    InitProducerId,
    JoinGroup,
)
from lakelog.errors import (
    GroupNotEmptyError,
    GroupNotFoundError,
    InvalidRequestError,
    LakelogError,
    LeaseFencedError,
    OffsetOutOfRangeError,
    OutOfOrderSequenceError,
    PayloadTooLargeError,
    ProducerFencedError,
    ThrottledError,
    TopicExistsError,
    TopicNotFoundError,
    UnavailableError,
    UnknownProducerError,
)
from lakelog.service.produce import AppendRetryPolicy
from lakelog.storage.faults import FailPoint
from lakelog.types import OffsetCommit, ProducerBatch, Record
from tests.conftest import MakeFaulty
from tests.integration.sdk.conftest import Serve


def _raised(call: Callable[[], Any]) -> LakelogError:
    with pytest.raises(LakelogError) as caught:
        call()
    return caught.value


def _check(error: LakelogError, kind: type[LakelogError], **attributes: Any) -> None:
    assert type(error) is kind, error
    assert error.code == kind.code
    assert {name: getattr(error, name) for name in attributes} == attributes
    assert str(error) == error.message and error.message


def test_topic_errors(client: Client) -> None:
    client.create_topic("t", partitions=2)

    _check(_raised(lambda: client.describe_topic("nope")), TopicNotFoundError, topic="nope")
    _check(_raised(lambda: client.create_topic("t")), TopicExistsError, topic="t")
    _check(_raised(lambda: client.create_topic("u", partitions=0)), InvalidRequestError)
    _check(
        _raised(lambda: client.call(Fetch("t", 1, 7, 10, 1 << 20))),
        OffsetOutOfRangeError,
        topic="t",
        partition=1,
        offset=7,
        log_start_offset=0,
        high_watermark=0,
    )
    assert _raised(lambda: client.delete_topic("nope")).message == (
        TopicNotFoundError("nope").message
    )


def test_record_errors(client: Client) -> None:
    client.create_topic("small", config={"max_record_bytes": 1024})
    transport = client.transport
    producer_id = transport.call(InitProducerId())
    transport.call(
        Append("small", [Record(b"a", partition=0)], ProducerBatch(producer_id, 1, sequence=0))
    )

    _check(
        _raised(lambda: transport.call(Append("small", [Record(b"x" * 2048, partition=0)]))),
        PayloadTooLargeError,
    )
    _check(
        _raised(
            lambda: transport.call(
                Append(
                    "small", [Record(b"b", partition=0)], ProducerBatch(producer_id, 0, sequence=1)
                )
            )
        ),
        ProducerFencedError,
        producer_id=producer_id,
        epoch=0,
        current_epoch=1,
    )
    _check(
        _raised(
            lambda: transport.call(
                Append(
                    "small", [Record(b"c", partition=0)], ProducerBatch(producer_id, 1, sequence=5)
                )
            )
        ),
        OutOfOrderSequenceError,
        producer_id=producer_id,
        partition=-1,  # one sequence per topic (ADR 0012): no partition to name
        sequence=5,
        expected=1,
    )
    guessed = producer_id ^ 1  # an id the caller does not hold
    _check(
        _raised(
            lambda: transport.call(
                Append("small", [Record(b"d", partition=0)], ProducerBatch(guessed, 0, sequence=0))
            )
        ),
        UnknownProducerError,
        producer_id=guessed,
    )


def test_group_errors(client: Client) -> None:
    client.create_topic("g-topic", partitions=2)
    transport = client.transport
    member = transport.call(JoinGroup("g", ["g-topic"]))
    held = sorted(member.assignments, key=lambda a: a.partition)
    stale = [OffsetCommit("g-topic", a.partition, 0, a.lease_epoch + 1) for a in held]

    _check(
        _raised(lambda: transport.call(CommitOffsets("g", member.member_id, stale))),
        LeaseFencedError,
        group="g",
        member_id=member.member_id,
        partitions=(("g-topic", 0), ("g-topic", 1)),
    )
    _check(
        _raised(lambda: client.reset_offsets("g", "g-topic", to="earliest")),
        GroupNotEmptyError,
        group="g",
        members=(member.member_id,),
    )
    _check(_raised(lambda: client.describe_group("nobody")), GroupNotFoundError, group="nobody")


@pytest.mark.parametrize(
    ("point", "kind"),
    [(FailPoint.CONFLICT, UnavailableError), (FailPoint.THROTTLE, ThrottledError)],
)
def test_storage_errors(
    make_faulty: MakeFaulty, serve: Serve, point: FailPoint, kind: type[LakelogError]
) -> None:
    engine, injector = make_faulty(retry=AppendRetryPolicy(max_attempts=1))
    transport = serve(engine)
    transport.call(CreateTopic("busy"))
    injector.arm(point)

    error = _raised(lambda: transport.call(Append("busy", [Record(b"x", partition=0)])))

    assert isinstance(error, kind)
    assert error.code == kind.code
    assert transport.call(DescribeTopic("busy")).partitions[0].high_watermark == 0

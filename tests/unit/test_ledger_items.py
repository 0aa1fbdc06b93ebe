"""The packed attributes of ledger v2 items (ADR 0012, 1.1), byte for byte."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lakelog.errors import CorruptLedgerError
from lakelog.log.records import (
    BatchRef,
    ChainItem,
    PartitionMark,
    ProducerRequest,
    ProducerStamp,
    TopicProducerState,
)
from lakelog.storage.attributes import (
    Item,
    chain_item_from_item,
    chain_item_to_item,
    pack_varints,
    producer_from_item,
    producer_item,
    ttl_seconds,
    unpack_varints,
    unzigzag,
    zigzag,
)

T = 1_767_225_600_000
DIGEST = bytes(range(8))
ITEM = ChainItem(
    seq=5,
    append_time_ms=T,
    max_timestamp=T,
    partitions=2,
    snapshot=(PartitionMark(300, 128), PartitionMark(1, 2)),
    batches=(BatchRef(1, 2, 300, 200, T - 1),),
    segment_id=bytes(24),
    segment_size=400,
    footer_offset=304,
    producer=ProducerStamp(258, 1, 128, 2, DIGEST),
)


@pytest.mark.parametrize(
    ("value", "size"),
    [(0, 1), (127, 1), (128, 2), (2**14 - 1, 2), (2**35 - 1, 5), (2**42 - 1, 6), (2**63, 10)],
)
def test_a_varint_takes_one_byte_per_7_bits_and_reads_back(value: int, size: int) -> None:
    packed = pack_varints([value, 1])

    assert len(packed) == size + 1
    assert unpack_varints(packed) == (value, 1)


def test_zigzag_interleaves_signs_and_reads_back() -> None:
    assert [zigzag(v) for v in (0, -1, 1, -2, 2)] == [0, 1, 2, 3, 4]
    assert all(unzigzag(zigzag(v)) == v for v in (*range(-300, 300), -(2**62), 2**62))


def test_a_negative_varint_is_refused() -> None:
    with pytest.raises(ValueError, match="-1"):
        pack_varints([-1])


def test_the_packed_attributes_are_laid_out_as_the_adr_says() -> None:
    attrs = chain_item_to_item("t#x#0", ITEM)

    assert attrs["h"] == {"B": bytes([0xAC, 0x02, 0x80, 0x01, 1, 2])}
    assert attrs["b"] == {"B": bytes([1, 2, 0xAC, 0x02, 0xC8, 0x01, 1])}
    assert attrs["p"] == {"B": (258).to_bytes(8, "big") + bytes([1, 0x80, 0x01, 2]) + DIGEST}
    assert attrs["g"] == {"B": bytes(24)}
    assert {name: attrs[name] for name in "vtmnzf"} == {
        "v": {"N": "2"},
        "t": {"N": str(T)},
        "m": {"N": str(T)},
        "n": {"N": "2"},
        "z": {"N": "400"},
        "f": {"N": "304"},
    }
    assert "s" not in attrs and "k" not in attrs
    assert chain_item_from_item(attrs) == ITEM


def test_a_producer_item_packs_its_requests_and_keeps_whole_seconds() -> None:
    state = TopicProducerState(9, 1, 4, (ProducerRequest(3, 2, 300, DIGEST),), T + 1)

    attrs = producer_item("x", state)

    assert attrs["pk"] == {"S": "pr#x#9"} and attrs["sk"] == {"N": "0"}
    assert attrs["r"] == {"B": bytes([3, 2, 0xAC, 0x02]) + DIGEST}
    assert attrs["expires_at"] == {"N": str(T // 1000 + 1)}
    assert producer_from_item(attrs) == replace(state, expires_ms=T + 1000)


def test_ttl_seconds_rounds_up_so_second_conditions_match_millisecond_checks() -> None:
    for expires_ms in (T, T + 1, T + 999, T + 1000):
        stored_ms = ttl_seconds(expires_ms) * 1000
        assert stored_ms >= expires_ms
        for now_ms in range(T - 1500, T + 2500, 250):
            assert (ttl_seconds(expires_ms) < ttl_seconds(now_ms)) is (stored_ms < now_ms)


def _corrupted(**attrs: Item) -> Item:
    return {**chain_item_to_item("t#x#0", ITEM), **attrs}


@pytest.mark.parametrize(
    ("attrs", "reason"),
    [
        (_corrupted(h={"B": bytes([1, 2, 3])}), "attribute h: odd"),
        (_corrupted(h={"B": bytes([1, 0x80])}), "attribute h: truncated varint"),
        (_corrupted(b={"B": bytes([1, 2, 3])}), "attribute b: incomplete"),
        (_corrupted(p={"B": bytes(12)}), "attribute p: truncated"),
        (_corrupted(p={"B": bytes(8) + bytes([1, 1, 1]) + DIGEST + b"x"}), "after the producer"),
        (_corrupted(k={"S": "other"}), "unknown kind"),
        (_corrupted(v={"N": "1"}), "format version 1"),
        ({k: v for k, v in _corrupted().items() if k != "v"}, "format version -1"),
    ],
    ids=["odd-h", "truncated-h", "short-b", "short-p", "long-p", "kind", "v1", "no-v"],
)
def test_an_unreadable_chain_item_raises_corrupt_ledger_naming_it(attrs: Item, reason: str) -> None:
    with pytest.raises(CorruptLedgerError, match=reason) as refused:
        chain_item_from_item(attrs)

    assert refused.value.key == "t#x#0/5"

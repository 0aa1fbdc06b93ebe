"""Cursors: what a fetch reply carries so a sequential reader never searches again, and
everything a forged or damaged one can be (ADR 0012, 1.5)."""

from __future__ import annotations

import base64
import uuid

import pytest

from lakelog.errors import InvalidRequestError
from lakelog.log.chain import Cursor, decode_cursor, encode_cursor

TOPIC = uuid.UUID(int=0x0123456789ABCDEF0123456789ABCDEF).hex
MAX = 2**63 - 1


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def raw(partition: int = 1, seq: int = 2, offset: int = 3, version: int = 2) -> bytes:
    return (
        bytes([version]) + bytes.fromhex(TOPIC) + varint(partition) + varint(seq) + varint(offset)
    )


@pytest.mark.parametrize(
    "cursor",
    [
        Cursor(TOPIC, 0, 0, 0),
        Cursor(TOPIC, 7, 1_700_000, 123_456_789_012),
        Cursor(TOPIC, 999, MAX, MAX),
        Cursor(uuid.uuid4().hex, 127, 128, 16_383),
        Cursor("f" * 32, 16_384, 2**35, 2**42),
    ],
)
def test_a_cursor_round_trips(cursor: Cursor) -> None:
    text = encode_cursor(cursor)
    assert decode_cursor(text) == cursor
    assert "=" not in text and "+" not in text and "/" not in text


def test_the_layout_is_version_topic_and_three_varints() -> None:
    text = encode_cursor(Cursor(TOPIC, 1, 2, 300))
    assert text == b64(raw(1, 2, 300))
    assert base64.urlsafe_b64decode(text + "==")[-2:] == bytes([0xAC, 0x02])


def test_a_cursor_is_short() -> None:
    assert len(encode_cursor(Cursor(TOPIC, 99, 2**21, 2**35))) <= 40


def test_a_topic_id_that_is_not_a_uuid_cannot_be_encoded() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        encode_cursor(Cursor("abcd", 0, 0, 0))
    with pytest.raises(ValueError, match="varint"):
        encode_cursor(Cursor(TOPIC, -1, 0, 0))


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(None, id="none"),
        pytest.param(12, id="int"),
        pytest.param(b64(raw()).encode(), id="bytes"),
        pytest.param(["x"], id="list"),
        pytest.param("", id="empty"),
        pytest.param(b64(raw()) + "=", id="padding"),
        pytest.param(b64(raw()) + "==", id="double-padding"),
        pytest.param(b64(raw()).replace("-", "+").replace("_", "/") + "+/", id="standard-alphabet"),
        pytest.param(b64(raw())[:-1] + "!", id="bad-character"),
        pytest.param(b64(raw())[:10] + " " + b64(raw())[10:], id="whitespace"),
        pytest.param(b64(raw())[:-1], id="truncated-base64"),
        pytest.param(b64(raw()) + "é", id="non-ascii"),
        pytest.param("A" * 5000, id="huge"),
        pytest.param(b64(raw(version=1)), id="version-1"),
        pytest.param(b64(raw(version=3)), id="version-3"),
        pytest.param(b64(raw()[:17]), id="no-numbers"),
        pytest.param(b64(raw()[:10]), id="short-topic"),
        pytest.param(b64(raw()[:-1]), id="missing-offset"),
        pytest.param(b64(raw() + b"\x00"), id="trailing-byte"),
        pytest.param(b64(raw()[:-1] + b"\x83"), id="unterminated-varint"),
        pytest.param(b64(raw(offset=MAX)[:-9] + varint(2**63)), id="varint-of-2-63"),
        pytest.param(b64(raw(offset=0)[:-1] + b"\xff" * 11 + b"\x01"), id="eleven-byte-varint"),
        pytest.param(b64(raw(offset=0)[:-1] + b"\x80\x00"), id="overlong-varint"),
    ],
)
def test_a_malformed_cursor_is_refused(text: object) -> None:
    with pytest.raises(InvalidRequestError, match=r"^malformed cursor$"):
        decode_cursor(text)


def test_non_canonical_trailing_bits_are_refused() -> None:
    text = b64(raw())
    assert len(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))) % 3 != 0
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    changed = text[:-1] + alphabet[alphabet.index(text[-1]) ^ 1]
    with pytest.raises(InvalidRequestError, match="malformed cursor"):
        decode_cursor(changed)

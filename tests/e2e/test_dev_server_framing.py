"""How ``lakelog dev`` frames request bodies, over a raw socket.

The dev server reads bodies itself (``Content-Length`` or ``Transfer-Encoding: chunked``)
before it hands them to the API handler, so it must refuse, in the API's ``{"error",
"message"}`` shape and before reading on, every framing it cannot read safely: negative,
non-hex or over-long chunk sizes, chunk extensions and trailers past their limit, bodies
past its body limit, bodies that end early, and requests whose length two headers disagree
on. Each request is written byte for byte; the client never closes its side unless the test
says so, so a server that waits for more bytes than it should makes the test fail (after
``REPLY_TIMEOUT``) instead of answering.

The server runs in this process (`LocalService`, moto in-process) for the whole module.
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from lakelog.errors import LakelogError
from lakelog.local import server
from lakelog.local.server import (
    MAX_CHUNK_LINE_BYTES,
    MAX_CHUNK_METADATA_BYTES,
    MAX_REQUEST_BYTES,
    LocalService,
)

REPLY_TIMEOUT = 30.0
"""Seconds a test waits for the reply; only reached when the server waits for bytes that
are never sent (the failure the tests look for)."""


@dataclass(frozen=True)
class Reply:
    """One HTTP response read off the socket."""

    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, Any]:
        """The ``{"error", "message"}`` body, checked to be JSON with both fields."""
        assert self.headers.get("content-type", "").startswith("application/json"), self
        body = json.loads(self.body)
        assert isinstance(body, dict), body
        assert set(body) >= {"error", "message"} and body["message"], body
        return body


@pytest.fixture(scope="module")
def access_log() -> io.StringIO:
    return io.StringIO()


@pytest.fixture(scope="module")
def service(access_log: io.StringIO) -> Iterator[LocalService]:
    with LocalService(port=0, access_log=access_log) as running:
        yield running


@pytest.fixture(scope="module")
def address(service: LocalService) -> tuple[str, int]:
    url = urlsplit(service.api_url)
    assert url.hostname is not None and url.port is not None
    return url.hostname, url.port


def exchange(address: tuple[str, int], request: bytes, *, close_write: bool = False) -> Reply:
    """Send ``request`` as is and read one response (by its Content-Length)."""
    with socket.create_connection(address, timeout=REPLY_TIMEOUT) as conn:
        conn.sendall(request)
        if close_write:
            conn.shutdown(socket.SHUT_WR)
        stream = conn.makefile("rb")
        status_line = stream.readline()
        assert status_line.startswith(b"HTTP/1.1 "), status_line
        headers: dict[str, str] = {}
        while (line := stream.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = stream.read(int(headers.get("content-length", "0")))
        return Reply(int(status_line.split()[1]), headers, body)


def head(*fields: str, path: str = "/v1/topics") -> bytes:
    """A POST request's head with ``fields`` (each ``"Name: value"``)."""
    lines = [f"POST {path} HTTP/1.1", "Host: lakelog", "Content-Type: application/json"]
    return ("\r\n".join([*lines, *fields]) + "\r\n\r\n").encode("latin-1")


def create_body(topic: str) -> bytes:
    return json.dumps({"name": topic, "partitions": 1}).encode()


def chunk(data: bytes, extension: bytes = b"") -> bytes:
    return b"%x%s\r\n%s\r\n" % (len(data), extension, data)


LAST_CHUNK = b"0\r\n\r\n"


def assert_refused(reply: Reply, status: int, code: str) -> None:
    assert reply.status == status, reply
    assert reply.error()["error"] == code, reply
    assert reply.headers.get("connection") == "close", reply


def assert_invalid(
    address: tuple[str, int], request: bytes, topic: str, *, close_write: bool = False
) -> None:
    """``request`` (which would create ``topic``) is refused as 400 and creates nothing."""
    assert_refused(exchange(address, request, close_write=close_write), 400, "invalid_request")
    described = exchange(address, f"GET /v1/topics/{topic} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert described.status == 404, described


# What is read -------------------------------------------------------------------------------


def test_a_chunked_body_with_extensions_and_trailers_is_read(
    address: tuple[str, int], topic_name: str
) -> None:
    body = create_body(topic_name)
    request = (
        head("Transfer-Encoding: chunked")
        + chunk(body[:7], b";name=value")
        + chunk(body[7:], b" ; flag")
        + b"0\r\nX-Checksum: none\r\n\r\n"
    )

    reply = exchange(address, request)

    assert reply.status == 201, reply
    assert json.loads(reply.body)["name"] == topic_name


def test_chunk_sizes_are_hex_in_either_case_with_leading_zeros(
    address: tuple[str, int], topic_name: str
) -> None:
    body = create_body(topic_name)
    request = (
        head("Transfer-Encoding: CHUNKED") + b"%06X\r\n%s\r\n" % (len(body), body) + LAST_CHUNK
    )

    reply = exchange(address, request)

    assert reply.status == 201, reply


# Chunk sizes --------------------------------------------------------------------------------


def test_a_negative_chunk_size_is_400_without_reading_on(
    address: tuple[str, int], topic_name: str
) -> None:
    # Given a chunk that says it is -1 bytes long, followed by more bytes than that
    request = head("Transfer-Encoding: chunked") + b"-1\r\n" + create_body(topic_name)

    # When the client waits for the answer without closing its side, then the server
    # answers at once instead of reading until the client stops sending
    assert_invalid(address, request, topic_name)


@pytest.mark.parametrize(
    "size",
    [b"0x%x", b"+%x", b" %x", b"%x_", b"-0%x", b"%xg", b"", b";%x"],
    ids=["0x", "plus", "leading-space", "underscore", "minus", "not-hex", "empty", "ext-only"],
)
def test_a_chunk_size_that_is_not_hex_digits_is_400(
    address: tuple[str, int], topic_name: str, size: bytes
) -> None:
    body = create_body(topic_name)
    line = size % len(body) if b"%" in size else size
    request = head("Transfer-Encoding: chunked") + line + b"\r\n" + body + b"\r\n" + LAST_CHUNK

    assert_invalid(address, request, topic_name)


@pytest.mark.parametrize(
    "line",
    [
        lambda n: b"0" * MAX_CHUNK_LINE_BYTES + b"%x" % n,
        lambda n: b"%x;" % n + b"e" * MAX_CHUNK_LINE_BYTES,
    ],
    ids=["leading-zeros", "extension"],
)
def test_a_chunk_size_line_over_the_line_limit_is_400(
    address: tuple[str, int], topic_name: str, line: Any
) -> None:
    body = create_body(topic_name)
    request = (
        head("Transfer-Encoding: chunked") + line(len(body)) + b"\r\n" + body + b"\r\n" + LAST_CHUNK
    )

    assert_invalid(address, request, topic_name)


def test_chunk_extensions_past_their_limit_are_400(
    address: tuple[str, int], topic_name: str
) -> None:
    # Given many one-byte chunks, each line within the line limit, with a long extension
    extension = b";" + b"e" * (MAX_CHUNK_LINE_BYTES // 2)
    chunks = MAX_CHUNK_METADATA_BYTES // len(extension) + 1
    body = create_body(topic_name).ljust(chunks, b" ")
    request = head("Transfer-Encoding: chunked") + b"".join(
        chunk(body[i : i + 1], extension) for i in range(len(body))
    )

    assert_invalid(address, request + LAST_CHUNK, topic_name)


def test_trailers_past_their_limit_are_400(address: tuple[str, int], topic_name: str) -> None:
    trailer = b"X-Padding: " + b"p" * (MAX_CHUNK_LINE_BYTES // 2) + b"\r\n"
    trailers = trailer * (MAX_CHUNK_METADATA_BYTES // len(trailer) + 1)
    request = (
        head("Transfer-Encoding: chunked") + chunk(create_body(topic_name)) + b"0\r\n" + trailers
    )

    assert_invalid(address, request + b"\r\n", topic_name)


# The body limit ----------------------------------------------------------------------------


def test_a_chunk_past_the_body_limit_is_413_before_its_data_is_sent(
    address: tuple[str, int],
) -> None:
    request = head("Transfer-Encoding: chunked") + b"%x\r\n" % (MAX_REQUEST_BYTES + 1)

    reply = exchange(address, request)

    assert_refused(reply, 413, "payload_too_large")


def test_chunks_adding_up_past_the_body_limit_are_413_before_the_excess_is_sent(
    address: tuple[str, int],
) -> None:
    # Given a first chunk of 3/4 of the limit, sent in full, then a chunk that passes it
    first = b"x" * (MAX_REQUEST_BYTES * 3 // 4)
    request = head("Transfer-Encoding: chunked") + chunk(first) + b"%x\r\n" % len(first)

    reply = exchange(address, request)

    assert_refused(reply, 413, "payload_too_large")


def test_negative_chunks_do_not_lower_the_running_total(address: tuple[str, int]) -> None:
    first = b"x" * (MAX_REQUEST_BYTES * 3 // 4)
    request = head("Transfer-Encoding: chunked") + chunk(first) + b"-%x\r\n" % len(first)

    reply = exchange(address, request)

    assert_refused(reply, 400, "invalid_request")


# Bodies that end early or run on ------------------------------------------------------------


@pytest.mark.parametrize(
    "tail",
    [
        lambda body: b"%x\r\n%s" % (len(body), body[:10]),
        lambda body: b"%x\r\n%s" % (len(body), body),
        chunk,
        lambda body: chunk(body) + b"0\r\n",
        lambda body: chunk(body) + b"0\r\nX-Trailer: cut",
        lambda body: b"%x" % len(body),
    ],
    ids=["in-data", "before-crlf", "before-last-chunk", "before-end", "in-trailer", "in-size"],
)
def test_a_chunked_body_that_ends_early_is_400(
    address: tuple[str, int], topic_name: str, tail: Any
) -> None:
    request = head("Transfer-Encoding: chunked") + tail(create_body(topic_name))

    assert_invalid(address, request, topic_name, close_write=True)


def test_chunk_data_longer_than_its_size_is_400(address: tuple[str, int], topic_name: str) -> None:
    body = create_body(topic_name)
    request = head("Transfer-Encoding: chunked") + b"%x\r\n%sX\r\n" % (len(body), body)

    assert_invalid(address, request + LAST_CHUNK, topic_name)


# Headers that disagree ----------------------------------------------------------------------


def test_content_length_with_transfer_encoding_is_400(
    address: tuple[str, int], topic_name: str
) -> None:
    body = create_body(topic_name)
    request = head("Content-Length: 3", "Transfer-Encoding: chunked") + chunk(body) + LAST_CHUNK

    assert_invalid(address, request, topic_name)


@pytest.mark.parametrize(
    "coding", ["gzip, chunked", "chunked, gzip", "identity", "xchunked", "chunked, chunked"]
)
def test_a_transfer_coding_other_than_chunked_alone_is_400(
    address: tuple[str, int], topic_name: str, coding: str
) -> None:
    body = create_body(topic_name)
    request = head(f"Transfer-Encoding: {coding}") + chunk(body) + LAST_CHUNK

    assert_invalid(address, request, topic_name)


# Content-Length ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "declared",
    ["-1", "abc", "1_0", "+{n}", "{n}.0", "0x{n}", "\u00b2", "{n}, {m}", ""],
    ids=[
        "negative",
        "word",
        "underscore",
        "plus",
        "decimal",
        "hex",
        "superscript",
        "list",
        "empty",
    ],
)
def test_a_content_length_that_is_not_decimal_digits_is_400(
    address: tuple[str, int], topic_name: str, declared: str
) -> None:
    body = create_body(topic_name)
    value = declared.format(n=len(body), m=len(body) + 1)

    assert_invalid(address, head(f"Content-Length: {value}") + body, topic_name)


def test_two_content_lengths_that_disagree_are_400(
    address: tuple[str, int], topic_name: str
) -> None:
    body = create_body(topic_name)
    request = head(f"Content-Length: {len(body)}", f"Content-Length: {len(body) + 1}") + body

    assert_invalid(address, request + b" ", topic_name)


def test_the_same_content_length_twice_is_read(address: tuple[str, int], topic_name: str) -> None:
    body = create_body(topic_name)
    request = head(f"Content-Length: {len(body)}", f"Content-Length: {len(body)}") + body

    reply = exchange(address, request)

    assert reply.status == 201, reply


@pytest.mark.parametrize("digits", [20, 5_000], ids=["20-digits", "5000-digits"])
def test_a_content_length_too_large_for_any_body_is_413(
    address: tuple[str, int], digits: int
) -> None:
    reply = exchange(address, head("Content-Length: " + "9" * digits))

    assert_refused(reply, 413, "payload_too_large")


def test_a_body_shorter_than_its_content_length_is_400(
    address: tuple[str, int], topic_name: str
) -> None:
    body = create_body(topic_name)

    assert_invalid(
        address, head(f"Content-Length: {len(body) + 5}") + body, topic_name, close_write=True
    )


# The handler -------------------------------------------------------------------------------


def test_a_handler_that_raises_is_500_internal_in_the_error_shape(
    address: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a handler that raises instead of answering (the API's code is "internal")
    def raising(self: object, event: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("boom")

    monkeypatch.setattr(server._Invoker, "__call__", raising)

    reply = exchange(address, b"GET /v1/topics HTTP/1.1\r\nHost: x\r\n\r\n")

    assert reply.status == 500, reply
    assert reply.error()["error"] == LakelogError.code


# The access log ----------------------------------------------------------------------------


def test_a_refused_request_is_in_the_access_log_before_its_reply(
    address: tuple[str, int], access_log: io.StringIO
) -> None:
    path = "/v1/topics?probe=refused"

    reply = exchange(address, head("Content-Length: -1", path=path))

    assert reply.status == 400, reply
    assert f"POST {path} -> 400" in access_log.getvalue()

"""A raw Kafka connection for tests that need exact frames: requests encoded by kio's
writers (as `lakelog.kafka.protocol` decodes them), any bytes, and the answers read back."""

from __future__ import annotations

import io
import socket
import struct
from typing import Any, TypeVar

from kio.index import load_response_schema
from kio.schema.metadata.v12.request import MetadataRequest
from kio.serial import entity_reader, entity_writer

R = TypeVar("R")

TIMEOUT = 10.0

METADATA = MetadataRequest(
    topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False
)
"""Metadata v12 of every topic."""


def request_frame(request: Any, correlation_id: int = 1, client_id: str | None = "wire") -> bytes:
    """The size-prefixed frame of a kio request (any API and version)."""
    header_schema: Any = request.__header_schema__
    fields: dict[str, Any] = {
        "request_api_key": request.__api_key__,
        "request_api_version": request.__version__,
        "correlation_id": correlation_id,
    }
    if "client_id" in header_schema.__dataclass_fields__:
        fields["client_id"] = client_id
    buffer = io.BytesIO()
    entity_writer(header_schema)(buffer, header_schema(**fields))
    entity_writer(type(request))(buffer, request)
    body = buffer.getvalue()
    return struct.pack(">i", len(body)) + body


class Wire:
    """One TCP connection to a gateway."""

    def __init__(self, bootstrap: str) -> None:
        host, port = bootstrap.rsplit(":", 1)
        self.socket = socket.create_connection((host, int(port)), timeout=TIMEOUT)

    def send(self, data: bytes) -> None:
        self.socket.sendall(data)

    def request(self, request: Any, correlation_id: int = 1) -> None:
        self.send(request_frame(request, correlation_id))

    def receive(self, api_key: int, version: int) -> tuple[int, Any]:
        """The next answer, as the response of ``api_key`` at ``version``, and its
        correlation id."""
        (size,) = struct.unpack(">i", self._exactly(4))
        frame = memoryview(self._exactly(size))
        schema: Any = load_response_schema(api_key, version)
        header, used = entity_reader(schema.__header_schema__)(frame, 0)
        body, _ = entity_reader(schema)(frame, used)
        return int(header.correlation_id), body

    def call(self, request: Any, correlation_id: int = 1) -> Any:
        """Send ``request`` and read its answer (of the same version)."""
        self.request(request, correlation_id)
        answered, body = self.receive(request.__api_key__, request.__version__)
        assert answered == correlation_id
        return body

    def closed(self) -> bool:
        """Whether the gateway closed the connection (waits up to `TIMEOUT` for it)."""
        try:
            return self.socket.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.socket.close()

    def _exactly(self, size: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < size:
            chunk = self.socket.recv(size - len(chunks))
            if not chunk:
                raise ConnectionError("the gateway closed the connection")
            chunks += chunk
        return bytes(chunks)

"""`Transport` over the HTTP API v1: JSON over HTTPS, SigV4-signed when credentials exist."""

from __future__ import annotations

import base64
import copy
import gzip
import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import quote, unquote, urlencode, urlsplit

import urllib3

from lakelog.errors import (
    CorruptSegmentError,
    ForbiddenError,
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
    UnauthorizedError,
    UnavailableError,
)
from lakelog.limits import MAX_APPEND_BYTES
from lakelog.types import (
    Assignment,
    FetchResult,
    GroupDescription,
    Header,
    MemberInfo,
    Membership,
    OffsetCommit,
    PartitionInfo,
    PartitionLag,
    ProducerBatch,
    Record,
    RecordMetadata,
    StoredRecord,
    TopicDescription,
    TopicPartition,
)

if TYPE_CHECKING:  # boto3 loads only when a request is signed (see `HttpTransport`)
    import boto3
    from botocore.credentials import Credentials

__all__ = ["HttpTransport", "error_from_reply"]

_ERRORS: Final[dict[str, type[LakelogError]]] = {
    cls.code: cls
    for cls in (
        InvalidRequestError,
        PayloadTooLargeError,
        UnauthorizedError,
        ForbiddenError,
        TopicNotFoundError,
        TopicExistsError,
        OffsetOutOfRangeError,
        OutOfOrderSequenceError,
        ThrottledError,
        UnavailableError,
        CorruptSegmentError,
        GroupNotEmptyError,
        GroupNotFoundError,
    )
}
_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
_EXECUTE_API_HOST: Final = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$")
_JSON: Final = "application/json"


_ERROR_FIELDS: Final[dict[str, object]] = {
    "topic": None,
    "partition": None,
    "offset": None,
    "group": None,
    "member_id": None,
    "members": (),
    "partitions": (),
    "principal": None,
    "operation": None,
    "producer_id": None,
    "epoch": None,
}
"""Attributes the domain errors carry, and their values when a reply does not tell them."""


def _path_fields(path: str) -> dict[str, object]:
    """What a request path names: ``/v1/topics/{topic}/partitions/{p}``, ``/v1/groups/{g}``."""
    parts = [unquote(p) for p in path.split("?", 1)[0].strip("/").split("/")]
    found: dict[str, object] = {}
    for name, field in (("topics", "topic"), ("groups", "group"), ("members", "member_id")):
        if name in parts[:-1]:
            found[field] = parts[parts.index(name) + 1]
    if "partitions" in parts[:-1] and parts[parts.index("partitions") + 1].isdigit():
        found["partition"] = int(parts[parts.index("partitions") + 1])
    return found


def error_from_reply(status: int, body: bytes, path: str) -> LakelogError:
    """The domain error an HTTP error reply stands for.

    Built without its constructor (the reply has the message, not the arguments): the
    attributes the class carries are filled from the request path and the reply, else
    None. A code this client does not know keeps the server's ``code``.
    """
    try:
        reply = json.loads(body)
        code, message = str(reply["error"]), str(reply["message"])
    except (ValueError, KeyError, TypeError):
        reply, code, message = {}, "", body.decode(errors="replace")[:500] or f"HTTP {status}"
    if code == "fenced":
        kind: type[LakelogError] = LeaseFencedError if "/groups/" in path else ProducerFencedError
    elif code in _ERRORS:
        kind = _ERRORS[code]
    elif status == 413:
        kind = PayloadTooLargeError
    elif status in (429, 503, 502, 504):
        kind = ThrottledError if status == 429 else UnavailableError
    elif 400 <= status < 500:
        kind = InvalidRequestError
    else:
        kind = LakelogError
    error = kind.__new__(kind)
    LakelogError.__init__(error, message)
    vars(error).update({**_ERROR_FIELDS, **_path_fields(path)})
    if code and code != kind.code:
        error.code = code
    if isinstance(error, OffsetOutOfRangeError):
        error.log_start_offset = int(reply.get("log_start_offset") or 0)
        error.high_watermark = int(reply.get("high_watermark") or 0)
    return error


_RECORD_JSON_BYTES: Final = 160
"""Field names, types, braces, partition and timestamp of one record in a produce body."""
_HEADER_JSON_BYTES: Final = 24
"""Braces and field names of one header."""


def _b64_length(data: bytes | None) -> int:
    return 0 if data is None else 4 * ((len(data) + 2) // 3)


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def _record_json(record: Record) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if record.key is not None:
        item["key"] = {"type": "BINARY", "data": _b64(record.key)}
    if record.value is not None:
        item["value"] = {"type": "BINARY", "data": _b64(record.value)}
    if record.headers:
        item["headers"] = [{"key": k, "value": _b64(v)} for k, v in record.headers]
    if record.partition is not None:
        item["partition"] = record.partition
    if record.timestamp_ms is not None:
        item["timestamp_ms"] = record.timestamp_ms
    return item


def _topic(reply: Mapping[str, Any]) -> TopicDescription:
    return TopicDescription(
        name=reply["name"],
        topic_id=reply.get("topic_id", ""),
        config=reply["config"],
        partitions=[PartitionInfo(**p) for p in reply["partitions"]],
    )


class HttpTransport:
    """The HTTP API v1 at ``endpoint`` (a base URL without ``/v1``).

    Parameters
    ----------
    endpoint
        ``https://abc123.execute-api.eu-west-1.amazonaws.com`` or ``http://127.0.0.1:8080``.
    session
        boto3 session whose credentials sign requests (the default session when None).
    sign
        SigV4-sign requests for ``execute-api``. None: sign when the endpoint is not a
        loopback address and credentials exist.
    region
        Signing region; by default taken from an ``execute-api`` host name, else the session.
    compression
        ``"gzip"`` sends produce bodies gzip-compressed (``Content-Encoding: gzip``).
    timeout_s
        Connect and read timeout of each request.
    """

    max_request_bytes: Final = MAX_APPEND_BYTES - 64 * 1024
    """JSON bytes of the records of one append (`request_bytes` each): the 6 MiB body limit
    less room for the envelope and the producer's sequences."""

    @staticmethod
    def request_bytes(record: Record) -> int:
        """An upper bound of the bytes ``record`` takes in a produce body (base64 JSON)."""
        size = _RECORD_JSON_BYTES + _b64_length(record.key) + _b64_length(record.value)
        for name, value in record.headers:
            size += _HEADER_JSON_BYTES + len(json.dumps(name)) + _b64_length(value)
        return size

    def __init__(
        self,
        endpoint: str,
        *,
        session: boto3.Session | None = None,
        sign: bool | None = None,
        region: str | None = None,
        compression: Literal["gzip"] | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        parts = urlsplit(endpoint.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequestError(f"endpoint {endpoint!r} is not an http(s) URL")
        if parts.path.rstrip("/").endswith("/v1"):
            raise InvalidRequestError(f"endpoint {endpoint!r} must not include /v1")
        self.endpoint = endpoint.rstrip("/")
        self.compression = compression
        self._pool = urllib3.PoolManager(
            maxsize=16, timeout=urllib3.Timeout(connect=min(timeout_s, 10.0), read=timeout_s)
        )
        self._credentials: Credentials | None = None
        self._region = ""
        host = parts.hostname
        if sign is False or (sign is None and host in _LOOPBACK):
            return
        import boto3  # noqa: PLC0415 - only a signing transport needs it

        session = session or boto3.Session()
        credentials = session.get_credentials()
        if credentials is None:
            if sign:
                raise InvalidRequestError("sign=True but no AWS credentials were found")
            return
        match = _EXECUTE_API_HOST.search(host)
        self._region = region or (match.group(1) if match else session.region_name) or ""
        if not self._region:
            raise InvalidRequestError(
                "cannot tell the signing region from the endpoint: pass region="
            )
        self._credentials = credentials

    def compressed(self, compression: Literal["gzip"] | None) -> HttpTransport:
        """This transport (same connections and signer) with another body compression."""
        twin = copy.copy(self)
        twin.compression = compression
        return twin

    # Plumbing ------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
        *,
        compress: bool = False,
    ) -> Any:
        """Send one request; the decoded JSON reply (None for 204), or a domain error."""
        url = self.endpoint + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Accept": _JSON}
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = _JSON
            if compress:
                data = gzip.compress(data, compresslevel=1)
                headers["Content-Encoding"] = "gzip"
        if self._credentials is not None:
            headers = _signed_headers(
                self._credentials, self._region, method, url, data or b"", headers
            )
        try:
            response = self._pool.request(
                method, url, body=data, headers=headers, retries=False, preload_content=True
            )
        except urllib3.exceptions.HTTPError as error:
            raise UnavailableError(f"{method} {url}: {error}") from error
        if response.status >= 400:
            raise error_from_reply(response.status, response.data, path)
        if response.status == 204 or not response.data:
            return None
        try:
            return json.loads(response.data)
        except ValueError as error:  # an answer cut short or not from the API
            raise UnavailableError(f"{method} {url}: reply is not JSON: {error}") from error

    @staticmethod
    def _path(*segments: object) -> str:
        return "/v1/" + "/".join(quote(str(s), safe="") for s in segments)

    # Topics --------------------------------------------------------------------------
    def create_topic(
        self, name: str, partitions: int = 1, config: dict[str, Any] | None = None
    ) -> TopicDescription:
        """``POST /v1/topics``."""
        body: dict[str, Any] = {"name": name, "partitions": partitions}
        if config:
            body["config"] = config
        return _topic(self.request("POST", "/v1/topics", body))

    def list_topics(self) -> list[str]:
        """``GET /v1/topics``."""
        return list(self.request("GET", "/v1/topics")["topics"])

    def describe_topic(self, name: str) -> TopicDescription:
        """``GET /v1/topics/{topic}``."""
        return _topic(self.request("GET", self._path("topics", name)))

    def alter_topic(
        self, name: str, config: dict[str, Any] | None = None, partitions: int | None = None
    ) -> TopicDescription:
        """``PATCH /v1/topics/{topic}``."""
        body: dict[str, Any] = {}
        if config is not None:
            body["config"] = config
        if partitions is not None:
            body["partitions"] = partitions
        return _topic(self.request("PATCH", self._path("topics", name), body))

    def delete_topic(self, name: str) -> None:
        """``DELETE /v1/topics/{topic}``."""
        self.request("DELETE", self._path("topics", name))

    # Records -------------------------------------------------------------------------
    def init_producer_id(self) -> int:
        """``POST /v1/producers``."""
        return int(self.request("POST", "/v1/producers", {})["id"])

    def append(
        self, topic: str, records: Sequence[Record], producer: ProducerBatch | None = None
    ) -> list[RecordMetadata]:
        """``POST /v1/topics/{topic}/records``."""
        body: dict[str, Any] = {"records": [_record_json(r) for r in records]}
        if producer is not None:
            identity: dict[str, Any] = {"id": producer.producer_id, "epoch": producer.epoch}
            if producer.sequence is not None:
                identity["sequence"] = producer.sequence
            if producer.sequences:
                identity["sequences"] = {str(p): s for p, s in producer.sequences.items()}
            body["producer"] = identity
        reply = self.request(
            "POST",
            self._path("topics", topic, "records"),
            body,
            compress=self.compression == "gzip",
        )
        return [
            RecordMetadata(topic, r["partition"], r["offset"], r["timestamp_ms"])
            for r in reply["results"]
        ]

    def fetch(
        self, topic: str, partition: int, offset: int, max_records: int, max_bytes: int
    ) -> FetchResult:
        """``GET /v1/topics/{topic}/partitions/{p}/records``."""
        reply = self.request(
            "GET",
            self._path("topics", topic, "partitions", partition, "records"),
            query={"offset": offset, "max_records": max_records, "max_bytes": max_bytes},
        )
        records = [
            StoredRecord(
                partition=r["partition"],
                offset=r["offset"],
                timestamp_ms=r["timestamp_ms"],
                key=_unb64(r["key"]),
                value=_unb64(r["value"]),
                headers=tuple(_header(h) for h in r["headers"]),
            )
            for r in reply["records"]
        ]
        return FetchResult(
            topic=topic,
            partition=partition,
            records=records,
            next_offset=reply["next_offset"],
            high_watermark=reply["high_watermark"],
            log_start_offset=0,  # not in the fetch reply: list_offset(..., "earliest") has it
        )

    def _offset(self, topic: str, partition: int, **query: Any) -> int:
        path = self._path("topics", topic, "partitions", partition, "offsets")
        return int(self.request("GET", path, query=query)["offset"])

    def list_offset(self, topic: str, partition: int, spec: Literal["earliest", "latest"]) -> int:
        """``GET .../offsets?spec=``."""
        return self._offset(topic, partition, spec=spec)

    def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int | None:
        """``GET .../offsets?timestamp_ms=``; None when no record is that recent."""
        found = self._offset(topic, partition, timestamp_ms=timestamp_ms)
        if found >= self._offset(topic, partition, spec="latest"):
            return None
        return found

    # Groups --------------------------------------------------------------------------
    def join_group(
        self,
        group: str,
        topics: Sequence[str],
        member_id: str | None = None,
        session_timeout_ms: int | None = None,
    ) -> Membership:
        """``POST /v1/groups/{group}/members``."""
        body: dict[str, Any] = {"topics": list(topics)}
        if member_id is not None:
            body["member_id"] = member_id
        if session_timeout_ms is not None:
            body["session_timeout_ms"] = session_timeout_ms
        reply = self.request("POST", self._path("groups", group, "members"), body)
        return Membership(
            member_id=reply["member_id"],
            session_timeout_ms=reply["session_timeout_ms"],
            heartbeat_interval_ms=reply["heartbeat_interval_ms"],
            assignments=tuple(Assignment(**a) for a in reply["assignments"]),
        )

    def leave_group(self, group: str, member_id: str) -> None:
        """``DELETE /v1/groups/{group}/members/{member_id}``."""
        self.request("DELETE", self._path("groups", group, "members", member_id))

    def commit_offsets(self, group: str, member_id: str, offsets: Sequence[OffsetCommit]) -> None:
        """``POST /v1/groups/{group}/offsets``."""
        body = {
            "member_id": member_id,
            "offsets": [
                {
                    "topic": o.topic,
                    "partition": o.partition,
                    "offset": o.offset,
                    "lease_epoch": o.lease_epoch,
                }
                for o in offsets
            ],
        }
        self.request("POST", self._path("groups", group, "offsets"), body)

    def describe_group(self, group: str) -> GroupDescription:
        """``GET /v1/groups/{group}``."""
        reply = self.request("GET", self._path("groups", group))
        return GroupDescription(
            group=reply["group"],
            members=tuple(
                MemberInfo(
                    member_id=m["member_id"],
                    topics=tuple(m["topics"]),
                    expires_ms=m["expires_ms"],
                    assignments=tuple(
                        TopicPartition(a["topic"], a["partition"]) for a in m["assignments"]
                    ),
                )
                for m in reply["members"]
            ),
            partitions=tuple(PartitionLag(**p) for p in reply["partitions"]),
        )

    def reset_offsets(
        self,
        group: str,
        topic: str,
        *,
        to: Literal["earliest", "latest"] | None = None,
        offset: int | None = None,
        timestamp_ms: int | None = None,
    ) -> dict[int, int]:
        """``POST /v1/groups/{group}/offsets/reset``."""
        target: Any = (
            to
            if to is not None
            else {"offset": offset}
            if offset is not None
            else {"timestamp_ms": timestamp_ms}
        )
        reply = self.request(
            "POST", self._path("groups", group, "offsets", "reset"), {"topic": topic, "to": target}
        )
        return {p["partition"]: p["offset"] for p in reply["partitions"]}

    def close(self) -> None:
        """Close pooled connections."""
        self._pool.clear()


def _signed_headers(
    credentials: Credentials,
    region: str,
    method: str,
    url: str,
    data: bytes,
    headers: dict[str, str],
) -> dict[str, str]:
    """``headers`` with SigV4 ``execute-api`` signature headers added (botocore loads here)."""
    from botocore.auth import SigV4Auth  # noqa: PLC0415 - only signing needs botocore
    from botocore.awsrequest import AWSRequest  # noqa: PLC0415

    signed = AWSRequest(method=method, url=url, data=data, headers=headers)
    SigV4Auth(credentials.get_frozen_credentials(), "execute-api", region).add_auth(signed)
    return dict(signed.headers.items())


def _header(item: Mapping[str, Any]) -> Header:
    return (item["key"], _unb64(item["value"]))

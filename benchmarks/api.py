"""The HTTP API handler's CPU and request path, with moto in a separate process (workload e).

The API Lambda handler (`lakelog.api.handler.make_handler`) is called directly, with API
Gateway HTTP API (payload 2.0) events built by `lakelog.local.events.http_event`, exactly
as API Gateway would invoke it: no HTTP server in between.

What the CPU numbers count. In Lambda the handler's process runs Powertools, the
resolver, pydantic, JSON and base64, the engine (codec) and botocore (signing, checksums,
serialising and parsing AWS requests); S3 and DynamoDB run on AWS's CPUs. So moto, which
stands in for S3 and DynamoDB, runs in a child process (`benchmarks.motoserver`), and
`time.process_time` of this process counts the handler and botocore but not moto. The
clients use fake credentials and an ``endpoint_url`` on the child: nothing can reach AWS.
Two differences from Lambda remain: the clients talk plain HTTP to 127.0.0.1 (no TLS),
and moto's server closes every connection after one response, so botocore opens a TCP
connection per AWS call, which a Lambda keeps alive.

Wall time. The handler's wall time per request, which the Lambda cost uses as the billed
duration, is measured on this machine against moto: S3 and DynamoDB latencies from a real
Lambda (tens of milliseconds for a 0.5 MiB PUT) and Lambda's CPU share at
`LAMBDA_MEMORY_MB` differ, so it is an estimate, not a Lambda measurement.

Requests. A produce is ``POST /v1/topics/{topic}/records`` with 1,024 records of 1 KiB
values (`benchmarks.workloads.make_values`) in Confluent v3 form, ``{"type": "BINARY",
"data": <base64>}`` (1 MiB of record payload, about 1.37 MiB of JSON); the STRING and JSON
variants carry 1 KiB of text or a JSON object per value instead. A fetch is ``GET
/v1/topics/{topic}/partitions/0/records?offset=N&max_bytes=1048576&max_records=10000``,
which returns one 1 MiB batch as base64 JSON. Every status code and record count is
checked. Results are medians over the timed requests, per MiB of record payload.

``python -m benchmarks.api --profile`` profiles one produce and one fetch with cProfile
and prints where the handler's time goes.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import cProfile
import json
import os
import pstats
import random
import statistics
import string
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import boto3
from botocore.config import Config

from benchmarks.motoserver import moto_server
from benchmarks.recorder import CallRecorder, Usage
from benchmarks.workloads import MIB, make_values
from lakelog import ResourceNames
from lakelog.api.handler import Handler, make_handler
from lakelog.api.settings import ApiSettings
from lakelog.local.events import LocalContext, http_event
from lakelog.service.engine import Engine
from lakelog.storage import create_resources

__all__ = [
    "LAMBDA_MEMORY_MB",
    "ApiReport",
    "ApiWorkload",
    "RouteReport",
    "main",
    "profile_requests",
    "run_api",
]

LAMBDA_MEMORY_MB = 1024
"""Memory of the API function the Lambda cost assumes (arm64)."""

REGION = "us-east-1"
TOPIC_BINARY = "bench.api"
TOPIC_TEXT = "bench.api-text"
PRINCIPAL = "arn:aws:iam::000000000000:user/lakelog-bench"
ValueType = Literal["BINARY", "STRING", "JSON"]

_POWERTOOLS_QUIET = {
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}
_JSON_HEADERS = {"content-type": "application/json"}
_TEXT = string.ascii_letters + string.digits
_PHRASE = "lakelog benchmark record, "
_OK = 200
_CREATED = 201
_PROFILE_LINES = 25
_PROFILE_DEPTH = 5


@dataclass(frozen=True, slots=True)
class ApiWorkload:
    """Sizes of the API workload (the defaults take 10 to 20 seconds on two cores)."""

    records_per_request: int = 1024
    value_bytes: int = 1024
    timed_requests: int = 16
    """Timed produce requests of BINARY values, and as many timed fetches."""
    typed_requests: int = 6
    """Timed produce requests of STRING values, and as many of JSON values."""
    recorded_requests: int = 4
    """Produce and fetch requests whose AWS calls are recorded (not timed)."""
    seed: int = 1


@dataclass(frozen=True, slots=True)
class Invocation:
    """One handler call: its CPU and wall seconds and its body sizes."""

    cpu_seconds: float
    wall_seconds: float
    request_bytes: int
    response_bytes: int


@dataclass(frozen=True, slots=True)
class RouteReport:
    """Medians of the timed calls of one route, and the AWS calls of each call."""

    cpu_ms_per_mib: float
    wall_seconds: float
    request_bytes: int
    response_bytes: int
    payload_bytes: int
    """Record bytes (keys, values, headers) each call appended or returned."""
    usage: Usage


@dataclass(frozen=True, slots=True)
class ApiReport:
    """Produce (BINARY values) and fetch, and the CPU of produce with STRING and JSON values."""

    produce: RouteReport
    fetch: RouteReport
    produce_string_cpu_ms_per_mib: float
    produce_json_cpu_ms_per_mib: float
    memory_mb: int = LAMBDA_MEMORY_MB


class _Deployment:
    """The bucket and tables on the moto server, and API handlers on fresh clients.

    Parameters
    ----------
    endpoint
        URL of the moto server.
    names
        Bucket and tables.
    """

    def __init__(self, endpoint: str, names: ResourceNames) -> None:
        self.endpoint = endpoint
        self.names = names
        self.session = boto3.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name=REGION,
        )
        self.recorder = CallRecorder(self.client("dynamodb"))

    def client(self, service: Literal["s3", "dynamodb"]) -> Any:
        """A new client of ``service`` on the moto server (path-style S3 addressing)."""
        config = Config(s3={"addressing_style": "path"})
        return self.session.client(service, endpoint_url=self.endpoint, config=config)

    def create(self) -> None:
        """Create the bucket and both tables."""
        create_resources(self.client("s3"), self.client("dynamodb"), self.names)

    def handler(self) -> Handler:
        """A new API handler (cold caches, like a new Lambda) on recorded clients."""
        s3, dynamodb = self.client("s3"), self.client("dynamodb")
        self.recorder.attach(s3)
        self.recorder.attach(dynamodb)
        engine = Engine.from_clients(s3, dynamodb, self.names)
        settings = ApiSettings(
            bucket=self.names.bucket,
            ledger_table=self.names.ledger_table,
            catalog_table=self.names.catalog_table,
            default_acl="allow",
        )
        return make_handler(settings, engine)


# Requests ---------------------------------------------------------------------------
@contextmanager
def _quiet_powertools() -> Iterator[None]:
    """No metrics flush, no X-Ray, warnings only, and nothing printed on stdout.

    With ``POWERTOOLS_METRICS_DISABLED`` Powertools (3.37) never clears its metric set, and
    `Metrics.add_metric` prints it as EMF on stdout each time a metric reaches 100 values,
    disabled or not: stdout is sent to /dev/null meanwhile, so the table stays clean (and
    its warning about an empty metric set is silenced).
    """
    os.environ.update(_POWERTOOLS_QUIET)
    with (
        warnings.catch_warnings(),
        open(os.devnull, "w", encoding="utf-8") as sink,
        contextlib.redirect_stdout(sink),
    ):
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        yield


def _text_values(count: int, size: int, seed: int) -> list[str]:
    """``count`` ASCII strings of ``size`` characters: half random letters, half a phrase."""
    rng = random.Random(seed)
    phrase = _PHRASE * (size // len(_PHRASE) + 1)
    half = size // 2
    return ["".join(rng.choices(_TEXT, k=half)) + phrase[: size - half] for _ in range(count)]


def _json_values(texts: Sequence[str]) -> list[dict[str, Any]]:
    """JSON objects whose compact encoding is exactly as long as each text."""
    values: list[dict[str, Any]] = []
    for number, text in enumerate(texts):
        overhead = len(json.dumps({"n": number, "text": ""}, separators=(",", ":")))
        values.append({"n": number, "text": text[: len(text) - overhead]})
    return values


def _produce_body(value_type: ValueType, values: Sequence[Any]) -> tuple[bytes, int]:
    """A produce request body of ``values`` and the record payload it carries."""
    records: list[dict[str, Any]] = []
    payload = 0
    for value in values:
        if value_type == "BINARY":
            data: Any = base64.b64encode(value).decode("ascii")
            payload += len(value)
        elif value_type == "STRING":
            data = value
            payload += len(value.encode())
        else:
            data = value
            payload += len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        records.append({"value": {"type": value_type, "data": data}})
    return json.dumps({"records": records}, separators=(",", ":")).encode(), payload


def _invoke(
    handler: Handler, event: dict[str, Any], expected: int
) -> tuple[dict[str, Any], Invocation]:
    """Call the handler once; its reply body (parsed) and the measured invocation."""
    context = LocalContext()
    started_cpu, started_wall = time.process_time(), time.perf_counter()
    response = handler(event, context)
    cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started_wall
    body = str(response.get("body") or "")
    status = response.get("statusCode")
    if status != expected:
        raise RuntimeError(f"{event['rawPath']} returned {status}, not {expected}: {body[:300]}")
    request = event.get("body") or ""
    invocation = Invocation(cpu, wall, len(request.encode()), len(body.encode()))
    return json.loads(body) if body else {}, invocation


def _create_topic(handler: Handler, topic: str) -> None:
    body = json.dumps({"name": topic, "partitions": 1}).encode()
    event = http_event("POST", "/v1/topics", body=body, headers=_JSON_HEADERS, principal=PRINCIPAL)
    _invoke(handler, event, _CREATED)


def _produce(handler: Handler, topic: str, body: bytes, count: int) -> Invocation:
    event = http_event(
        "POST",
        f"/v1/topics/{topic}/records",
        body=body,
        headers=_JSON_HEADERS,
        principal=PRINCIPAL,
    )
    reply, invocation = _invoke(handler, event, _OK)
    results = reply["results"]
    offsets = [result["offset"] for result in results]
    if len(results) != count or offsets != list(range(offsets[0], offsets[0] + count)):
        raise RuntimeError(f"produce to {topic} acknowledged {len(results)} of {count} records")
    return invocation


def _fetch(handler: Handler, topic: str, offset: int, count: int) -> Invocation:
    query = f"offset={offset}&max_bytes={MIB}&max_records=10000"
    event = http_event(
        "GET", f"/v1/topics/{topic}/partitions/0/records", query=query, principal=PRINCIPAL
    )
    reply, invocation = _invoke(handler, event, _OK)
    records = reply["records"]
    if len(records) != count or records[0]["offset"] != offset:
        raise RuntimeError(f"fetch of {topic} at {offset} returned {len(records)} records")
    if reply["next_offset"] != offset + count:
        raise RuntimeError(f"fetch of {topic} at {offset} ends at {reply['next_offset']}")
    return invocation


def _cpu_ms_per_mib(calls: Sequence[Invocation], payload: int) -> float:
    """Median CPU milliseconds of ``calls`` per MiB of the ``payload`` each one moved."""
    return statistics.median(c.cpu_seconds for c in calls) * 1000 * MIB / payload


def _route(calls: Sequence[Invocation], usage: Usage, payload: int) -> RouteReport:
    """Medians of ``calls``, each of which appended or returned ``payload`` record bytes."""
    return RouteReport(
        cpu_ms_per_mib=_cpu_ms_per_mib(calls, payload),
        wall_seconds=statistics.median(c.wall_seconds for c in calls),
        request_bytes=int(statistics.median(c.request_bytes for c in calls)),
        response_bytes=int(statistics.median(c.response_bytes for c in calls)),
        payload_bytes=payload,
        usage=usage,
    )


# The workload -----------------------------------------------------------------------
def run_api(workload: ApiWorkload) -> ApiReport:
    """Produce and fetch through the API handler on a moto server in a child process.

    A warm handler (one produce done) makes ``recorded_requests`` recorded produce
    requests, then ``timed_requests`` timed ones, with BINARY values; then, to another
    topic, one untimed and ``typed_requests`` timed produce requests of STRING values and
    the same of JSON values. A second handler, warmed by one fetch, fetches the BINARY
    batches back one 1 MiB batch per request: ``recorded_requests`` recorded, then
    ``timed_requests`` timed. The recorder is paused while timing.

    Parameters
    ----------
    workload
        Sizes of the workload.

    Returns
    -------
    ApiReport
        Median CPU per MiB, wall time and body sizes, and AWS calls per request.
    """
    count = workload.records_per_request
    values = make_values(count, workload.value_bytes, workload.seed)
    texts = _text_values(count, workload.value_bytes, workload.seed)
    binary, payload = _produce_body("BINARY", values)
    string_body, string_payload = _produce_body("STRING", texts)
    json_body, json_payload = _produce_body("JSON", _json_values(texts))
    with _quiet_powertools(), moto_server() as endpoint:
        deployment = _Deployment(endpoint, ResourceNames.for_prefix("bench-api"))
        recorder = deployment.recorder
        with recorder.paused():
            deployment.create()
            writer = deployment.handler()
            _create_topic(writer, TOPIC_BINARY)
            _create_topic(writer, TOPIC_TEXT)
            _produce(writer, TOPIC_BINARY, binary, count)
        with recorder.capture() as produce_calls:
            for _ in range(workload.recorded_requests):
                _produce(writer, TOPIC_BINARY, binary, count)
        with recorder.paused():
            produced = [
                _produce(writer, TOPIC_BINARY, binary, count)
                for _ in range(workload.timed_requests)
            ]
            typed: dict[str, list[Invocation]] = {}
            for name, body in (("STRING", string_body), ("JSON", json_body)):
                _produce(writer, TOPIC_TEXT, body, count)
                typed[name] = [
                    _produce(writer, TOPIC_TEXT, body, count)
                    for _ in range(workload.typed_requests)
                ]
            reader = deployment.handler()
            _fetch(reader, TOPIC_BINARY, 0, count)
        batches = 1 + workload.recorded_requests + workload.timed_requests
        offsets = iter(range(count, batches * count, count))
        with recorder.capture() as fetch_calls:
            for _ in range(workload.recorded_requests):
                _fetch(reader, TOPIC_BINARY, next(offsets), count)
        with recorder.paused():
            fetched = [
                _fetch(reader, TOPIC_BINARY, next(offsets), count)
                for _ in range(workload.timed_requests)
            ]
    recorded = workload.recorded_requests
    return ApiReport(
        produce=_route(produced, Usage(recorded, tuple(produce_calls)), payload),
        fetch=_route(fetched, Usage(recorded, tuple(fetch_calls)), payload),
        produce_string_cpu_ms_per_mib=_cpu_ms_per_mib(typed["STRING"], string_payload),
        produce_json_cpu_ms_per_mib=_cpu_ms_per_mib(typed["JSON"], json_payload),
    )


# Profiling --------------------------------------------------------------------------
_WAITING = "waiting for moto (socket reads and writes; not CPU)"
_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (_WAITING, ("_socket.socket", "select.", "selectors")),
    ("pydantic (validation, models, repr)", ("pydantic",)),
    ("JSON parse and serialise", ("/json/", "_json")),
    ("base64", ("base64", "binascii")),
    ("lakelog API (routes, models)", ("lakelog/api/",)),
    ("engine and codec (lakelog, pyarrow)", ("lakelog/", "pyarrow")),
    ("botocore, urllib3, http (AWS client)", ("botocore", "urllib3", "http/", "socket", "ssl")),
    ("Powertools (resolver, middlewares, logger)", ("aws_lambda_powertools",)),
    ("copy (deepcopy of mutable defaults)", ("copy.py",)),
)
_OTHER = "other"
_BUILTIN = "~"

StatsKey = tuple[str, int, str]
StatsEntry = tuple[int, int, float, float, dict[StatsKey, tuple[int, int, float, float]]]


def _category(key: StatsKey, table: dict[StatsKey, StatsEntry], depth: int = 0) -> str:
    """The category of a function; a builtin's is its main caller's (by time spent)."""
    filename, _, function = key
    where = f"{filename}:{function}"
    for name, needles in _CATEGORIES:
        if any(needle in where for needle in needles):
            return name
    callers = table[key][4]
    if filename == _BUILTIN and callers and depth < _PROFILE_DEPTH:
        caller = max(callers, key=lambda c: callers[c][2])
        return _category(caller, table, depth + 1)
    return _OTHER


def _summary(profile: cProfile.Profile, title: str) -> str:
    """Self time of the profiled call by category, then the costliest functions."""
    table: dict[StatsKey, StatsEntry] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in table.values())
    by_category: dict[str, float] = {}
    for key, entry in table.items():
        category = _category(key, table)
        by_category[category] = by_category.get(category, 0.0) + entry[2]
    waiting = by_category.get(_WAITING, 0.0)
    lines = [
        f"{title}: {total * 1000:.1f} ms under cProfile, {(total - waiting) * 1000:.1f} ms "
        "of it not waiting for moto; self time by category (a builtin counts for its caller):"
    ]
    for category, seconds in sorted(by_category.items(), key=lambda item: -item[1]):
        lines.append(f"  {seconds * 1000:7.1f} ms  {seconds / total:6.1%}  {category}")
    lines.append("  costliest functions (self ms / cumulative ms, calls, function):")
    ranked = sorted(table.items(), key=lambda item: -item[1][2])[:_PROFILE_LINES]
    for (filename, line, function), (_, calls, own, cumulative, _) in ranked:
        place = filename.split("site-packages/")[-1].split("/lib/python3.")[-1]
        lines.append(
            f"  {own * 1000:7.2f} / {cumulative * 1000:7.2f}  {calls:6d}  "
            f"{place}:{line}({function})"
        )
    return "\n".join(lines)


def profile_requests(workload: ApiWorkload | None = None) -> str:
    """Profile one warm produce and one warm fetch (BINARY values) with cProfile.

    The profiler's clock is wall time (a CPU clock would make cProfile several times
    slower); time blocked on moto's sockets is shown as its own category. cProfile's own
    overhead inflates functions that are called very often.

    Parameters
    ----------
    workload
        Sizes of the requests (the default `ApiWorkload`).

    Returns
    -------
    str
        For each request, self CPU time by category and the costliest functions.
    """
    workload = workload or ApiWorkload()
    count = workload.records_per_request
    body, _ = _produce_body("BINARY", make_values(count, workload.value_bytes, workload.seed))
    with _quiet_powertools(), moto_server() as endpoint:
        deployment = _Deployment(endpoint, ResourceNames.for_prefix("bench-profile"))
        with deployment.recorder.paused():
            deployment.create()
            writer = deployment.handler()
            _create_topic(writer, TOPIC_BINARY)
            for _ in range(3):
                _produce(writer, TOPIC_BINARY, body, count)
            reader = deployment.handler()
            _fetch(reader, TOPIC_BINARY, 0, count)
            produce = cProfile.Profile()
            produce.runcall(_produce, writer, TOPIC_BINARY, body, count)
            fetch = cProfile.Profile()
            fetch.runcall(_fetch, reader, TOPIC_BINARY, count, count)
    return "\n\n".join(
        (
            _summary(produce, f"produce of {count} BINARY records"),
            _summary(fetch, f"fetch of {count} records"),
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.api [--profile]``: print the API measurements or profiles."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.api", description=__doc__)
    parser.add_argument("--profile", action="store_true", help="profile one produce and fetch")
    arguments = parser.parse_args(argv)
    if arguments.profile:
        sys.stdout.write(profile_requests() + "\n")
        return 0
    report = run_api(ApiWorkload())
    for name, route in (("produce", report.produce), ("fetch", report.fetch)):
        sys.stdout.write(
            f"{name}: {route.cpu_ms_per_mib:.1f} CPU ms / MiB, {route.wall_seconds * 1000:.1f} "
            f"ms per request, bodies {route.request_bytes} / {route.response_bytes} bytes\n"
        )
    sys.stdout.write(
        f"produce STRING: {report.produce_string_cpu_ms_per_mib:.1f} CPU ms / MiB; "
        f"JSON: {report.produce_json_cpu_ms_per_mib:.1f} CPU ms / MiB\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

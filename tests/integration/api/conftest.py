"""Fixtures of the HTTP API tests: sample events by name, and API handlers on moto.

Every test feeds the Lambda handler that `make_handler` builds (Powertools logger, tracer
and metrics around the resolver) with an API Gateway HTTP API event (payload format 2.0)
from ``events/api/<name>.json``, optionally changed by `load_event`'s overrides, and reads
back the proxy reply as API Gateway would.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

import pytest
from aws_lambda_powertools import Metrics

from lakelog import Engine, ResourceNames
from lakelog.api import ApiSettings, make_handler
from lakelog.api.handler import NAMESPACE, SERVICE, Handler
from lakelog.contract.errors import ERRORS
from lakelog.local.events import LocalContext
from lakelog.storage.ports import AclEntry, ProducerIdRecord

EVENTS_DIR = Path(__file__).resolve().parents[3] / "events" / "api"

ACCOUNT = "123456789012"
ADMIN = f"arn:aws:sts::{ACCOUNT}:assumed-role/lakelog-admin/ops-session"
"""The caller of the sample events of admin routes (topics, ACLs and offset resets)."""
PRODUCER = f"arn:aws:sts::{ACCOUNT}:assumed-role/orders-producer/checkout-service"
"""The caller of the sample produce events."""
CONSUMER = f"arn:aws:sts::{ACCOUNT}:assumed-role/orders-consumer/billing-service"
"""The caller of the sample fetch, offsets, list, describe and consumer group events."""
SAMPLE_PRODUCER_ID = 4242
"""The producer id of the sample idempotent produce event (held by `PRODUCER` in `orders`)."""

DefaultAcl = Literal["allow", "deny"]

FIELDS_BY_CODE = {kind.code: kind.fields for kind in ERRORS}


class _Unset(Enum):
    UNSET = "unset"


UNSET = _Unset.UNSET
"""Marks an override that was not given (None is a meaningful value for some)."""


@cache
def _read_event(name: str) -> str:
    path = EVENTS_DIR / f"{name}.json"
    if not path.is_file():
        known = ", ".join(event_names())
        raise FileNotFoundError(f"no sample event {name!r} in {EVENTS_DIR}; known: {known}")
    return path.read_text(encoding="utf-8")


def event_names() -> list[str]:
    """Names of every sample event of the API, sorted."""
    return sorted(path.stem for path in EVENTS_DIR.glob("*.json"))


def route_template(event: Mapping[str, Any]) -> str:
    """The path template of an event's route key (``GET /v1/topics/{topic}`` -> its path)."""
    return str(event["routeKey"]).split(" ", 1)[1]


def load_event(
    name: str,
    *,
    principal: str | _Unset | None = UNSET,
    topic: str | None = None,
    partition: int | str | None = None,
    path: Mapping[str, str] | None = None,
    query: Mapping[str, str | int] | _Unset | None = UNSET,
    body: Any = UNSET,
    raw_body: str | None = None,
    base64_body: bool = False,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A fresh copy of the sample event ``events/api/<name>.json``, with overrides.

    Parameters
    ----------
    name
        File name without ``.json``.
    principal
        The IAM caller ARN (``requestContext.authorizer.iam.userArn``); None removes the
        authorizer context, as for a request that was not authenticated.
    topic, partition
        New path parameters; the raw path is rebuilt from the route key's template.
    path
        Other new path parameters by name (``{"group": ..., "member_id": ...}``).
    query
        New query string parameters (None or empty removes the query string).
    body
        A new JSON body (serialized compactly); ``raw_body`` gives the text verbatim.
    base64_body
        Send the body base64-encoded with ``isBase64Encoded`` true, as API Gateway does
        for binary media.
    headers
        Headers to add or replace (lower-cased, as API Gateway delivers them).
    """
    event: dict[str, Any] = json.loads(_read_event(name))
    context = event["requestContext"]
    if not isinstance(principal, _Unset):
        context.pop("authorizer", None)
        event["headers"].pop("authorization", None)
        if principal is not None:
            role_session = principal.rsplit("/", 1)[-1]
            context["authorizer"] = {
                "iam": {
                    "accessKey": "ASIAEXAMPLEKEY",
                    "accountId": ACCOUNT,
                    "callerId": f"AROAEXAMPLEROLEID:{role_session}",
                    "cognitoIdentity": None,
                    "principalOrgId": None,
                    "userArn": principal,
                    "userId": f"AROAEXAMPLEROLEID:{role_session}",
                }
            }
    if topic is not None or partition is not None or path:
        params = dict(event.get("pathParameters") or {})
        params.update(path or {})
        if topic is not None:
            params["topic"] = topic
        if partition is not None:
            params["partition"] = str(partition)
        raw_path = route_template(event).format(**params)
        event["pathParameters"] = params
        event["rawPath"] = raw_path
        context["http"]["path"] = raw_path
    if not isinstance(query, _Unset):
        event.pop("queryStringParameters", None)
        event["rawQueryString"] = urlencode(dict(query or {}))
        if query:
            event["queryStringParameters"] = {k: str(v) for k, v in query.items()}
    text = raw_body
    if text is None and not isinstance(body, _Unset):
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    if text is not None or base64_body:
        text = event.get("body", "") if text is None else text
        size = len(text.encode())
        event["headers"]["content-type"] = "application/json"
        event["headers"]["content-length"] = str(size)
        event["body"] = base64.b64encode(text.encode()).decode() if base64_body else text
        event["isBase64Encoded"] = base64_body
    event["headers"].update({k.lower(): v for k, v in (headers or {}).items()})
    return event


@dataclass(frozen=True)
class ApiReply:
    """The handler's proxy reply, as API Gateway turns it into an HTTP response."""

    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.text)


@dataclass
class Api:
    """One API function instance (one Lambda container) serving ``engine``."""

    handler: Handler
    engine: Engine

    def call(self, event: dict[str, Any]) -> ApiReply:
        """Invoke the handler with ``event`` and return its reply."""
        reply = self.handler(copy.deepcopy(event), LocalContext())
        body = reply.get("body") or ""
        if reply.get("isBase64Encoded"):
            body = base64.b64decode(body).decode()
        return ApiReply(int(reply["statusCode"]), dict(reply.get("headers") or {}), body)

    def send(self, name: str, **overrides: Any) -> ApiReply:
        """Invoke the handler with the sample event ``name`` (see `load_event`)."""
        return self.call(load_event(name, **overrides))


MakeApi = Callable[..., Api]


def assert_error(reply: ApiReply, status: int, code: str) -> dict[str, Any]:
    """Check an error reply: its status, and a body of ``{"error", "message"}`` plus
    exactly the fields the contract's error registry gives its code.
    """
    assert reply.status == status, reply.text
    assert reply.headers.get("Content-Type", "").startswith("application/json"), reply.headers
    body: dict[str, Any] = reply.json
    expected_keys = {"error", "message", *FIELDS_BY_CODE.get(code, ())}
    assert set(body) == expected_keys, body
    assert body["error"] == code, body
    assert isinstance(body["message"], str), body
    assert body["message"].strip(), body
    return body


def grant(
    engine: Engine,
    principal: str,
    topic: str,
    operations: Iterable[str],
    effect: Literal["allow", "deny"] = "allow",
) -> None:
    """Store an access rule directly in the catalog (as an operator bootstraps one).

    Handlers cache rules for 10 s once they have read them: store rules before the first
    request of a handler, or change them through ``PUT /v1/acls`` of that same handler.
    """
    engine.context.catalog.add_acl(AclEntry(principal, topic, effect, frozenset(operations)))


def hold_producer(
    engine: Engine, principal: str = PRODUCER, producer_id: int = SAMPLE_PRODUCER_ID
) -> None:
    """Register ``producer_id`` as issued to ``principal``, as ``POST /v1/producers`` does
    when it draws that id, so that the sample idempotent event may append under it."""
    issued = ProducerIdRecord(producer_id, principal, engine.context.clock_ms())
    engine.context.catalog.register_producer(issued)


@pytest.fixture(autouse=True)
def quiet_powertools(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No metrics flushed to stdout and no X-Ray segments in tests.

    Disabled metrics are not cleared by a flush, and Powertools keeps them in one set per
    process (shared by every `Metrics`); clear it around each test so they cannot pile up
    to the 100 values at which Powertools prints them anyway.
    """
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    shared = Metrics(namespace=NAMESPACE, service=SERVICE)
    shared.clear_metrics()
    yield
    shared.clear_metrics()


@pytest.fixture
def api_settings(resources: ResourceNames) -> Callable[[DefaultAcl], ApiSettings]:
    """The API function's settings for the moto resources, with a chosen default policy."""

    def settings(default_acl: DefaultAcl) -> ApiSettings:
        return ApiSettings(
            bucket=resources.bucket,
            ledger_table=resources.ledger_table,
            catalog_table=resources.catalog_table,
            default_acl=default_acl,
            env="test",
        )

    return settings


@pytest.fixture
def make_api(
    api_settings: Callable[[DefaultAcl], ApiSettings], make_engine: Callable[..., Engine]
) -> MakeApi:
    """API function instances: each its own handler (and ACL cache), on ``engine`` if given."""

    def make(default_acl: DefaultAcl = "allow", engine: Engine | None = None) -> Api:
        engine = engine or make_engine(sleep=lambda _seconds: None)
        return Api(make_handler(api_settings(default_acl), engine=engine), engine)

    return make


@pytest.fixture
def api(make_api: MakeApi) -> Api:
    """The API under the ``allow`` default policy (ACLs have their own tests)."""
    return make_api("allow")


@pytest.fixture
def orders(api: Api) -> Api:
    """The API with the topic ``orders`` (3 partitions) made by the sample create event, and
    the sample producer id held by `PRODUCER`."""
    reply = api.send("create_topic")
    assert reply.status == 201, reply.text
    hold_producer(api.engine)
    return api

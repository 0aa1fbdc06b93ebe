"""The HTTP API v1 as a Powertools resolver: routes, validation, auth and error mapping.

Each route checks access, runs one operation of the contract on the engine
(`Engine.call`) and shapes the reply; domain errors
are mapped to HTTP once, in `lakelog.api.errors`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import zlib
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Annotated, Any, Literal

import pydantic_core
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from lakelog.api.errors import (
    BODY_ERRORS,
    NO_CONTENT,
    UnsupportedMediaTypeError,
    error_body,
    error_responses,
    status_of,
    success,
)
from lakelog.contract.models import (
    MAX_API_FETCH_BYTES,
    MAX_INT64,
    AclRule,
    AclRules,
    CommitRequest,
    FetchManyReply,
    FetchManyRequest,
    FetchReply,
    GroupReply,
    JoinRequest,
    MembershipReply,
    OffsetReply,
    ProduceReply,
    ProduceRequest,
    ProducerIdReply,
    ResetPartition,
    ResetReply,
    ResetRequest,
    SubscriptionCreate,
    SubscriptionList,
    SubscriptionState,
    SubscriptionStatusReply,
    TopicAlter,
    TopicCreate,
    TopicList,
    TopicState,
)
from lakelog.contract.operations import (
    AlterTopic,
    Append,
    CommitOffsets,
    CreateSubscription,
    CreateTopic,
    DeleteSubscription,
    DeleteTopic,
    DescribeGroup,
    DescribeSubscription,
    DescribeTopic,
    Fetch,
    FetchMany,
    InitProducerId,
    JoinGroup,
    LeaveGroup,
    ListOffset,
    ListSubscriptions,
    ListTopics,
    OffsetForTime,
    ResetOffsets,
)
from lakelog.errors import (
    InvalidRequestError,
    LakelogError,
    PayloadTooLargeError,
    UnauthorizedError,
)
from lakelog.limits import DEFAULT_FETCH_BYTES, DEFAULT_FETCH_RECORDS, MAX_APPEND_BYTES
from lakelog.service.acl import AccessControl, AclEntry
from lakelog.service.engine import Engine
from lakelog.validation import summarize

__all__ = [
    "API_TITLE",
    "MAX_BODY_BYTES",
    "PUBLIC_PATHS",
    "create_app",
    "inflate",
    "parse_json",
    "precheck",
    "principal_of",
]

API_TITLE = "lakelog HTTP API"
API_VERSION = "1.0.0"
MAX_BODY_BYTES = MAX_APPEND_BYTES
"""Request bodies are at most 6 MiB (the Lambda synchronous payload limit)."""


_JSON = "application/json"


def principal_of(event: dict[str, Any]) -> str:
    """The caller: the IAM authorizer's caller ARN, or the JWT's ``sub`` claim.

    Raises
    ------
    UnauthorizedError
        The request carries neither.
    """
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    arn = (authorizer.get("iam") or {}).get("userArn")
    if arn:
        return str(arn)
    claims = (authorizer.get("jwt") or {}).get("claims") or {}
    subject = claims.get("sub")
    if subject:
        return str(subject)
    raise UnauthorizedError("the request carries no IAM caller or JWT subject")


PUBLIC_PATHS = frozenset({"/v1/openapi.json", "/v1/docs"})
"""Paths served without a principal: the API's own description."""


def inflate(event: dict[str, Any]) -> LakelogError | None:
    """Replace a ``Content-Encoding: gzip`` body by its decompressed text, in place.

    The decompressed body is held to the same 6 MiB as any other (413 beyond it, without
    inflating the rest); a body that is not gzip is refused with 400.
    """
    headers = event.get("headers") or {}
    encoding = next((k for k in headers if k.lower() == "content-encoding"), None)
    if encoding is None or headers[encoding].strip().lower() != "gzip" or not event.get("body"):
        return None
    body = event["body"]
    try:
        raw = (
            base64.b64decode(body, validate=True) if event.get("isBase64Encoded") else body.encode()
        )
        inflater = zlib.decompressobj(wbits=31)
        text = inflater.decompress(raw, MAX_BODY_BYTES + 1)
        if len(text) > MAX_BODY_BYTES or inflater.unconsumed_tail:
            return PayloadTooLargeError(
                f"decompressed request body exceeds the limit of {MAX_BODY_BYTES} bytes"
            )
        if not inflater.eof:
            raise zlib.error("truncated gzip stream")
    except (binascii.Error, ValueError, zlib.error) as error:
        return InvalidRequestError(f"request body is not valid gzip: {error}")
    try:
        event["body"] = text.decode("utf-8")
        event["isBase64Encoded"] = False
    except UnicodeDecodeError:
        event["body"] = base64.b64encode(text).decode()
        event["isBase64Encoded"] = True
    event["headers"] = {k: v for k, v in headers.items() if k != encoding}
    return None


def precheck(event: dict[str, Any]) -> LakelogError | None:
    """What must be refused before a request is parsed: an oversized body, no principal.

    A gzip body is decompressed first (`inflate`), so routes only ever see JSON text.

    Runs ahead of routing and validation, so a 6 MiB body is not decoded to be refused and
    an anonymous request learns nothing about the shape of a valid one.
    """
    refused = inflate(event)
    if refused is not None:
        return refused
    body = event.get("body") or ""
    size = len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode())
    if size > MAX_BODY_BYTES:
        return PayloadTooLargeError(
            f"request body is {size} bytes; the limit is {MAX_BODY_BYTES} bytes"
        )
    if body:
        headers = event.get("headers") or {}
        name = next((k for k in headers if k.lower() == "content-type"), None)
        content_type = headers[name].split(";")[0].strip() if name else _JSON
        if content_type.lower() != _JSON:
            return UnsupportedMediaTypeError(
                f"request bodies must be application/json, not {content_type or 'unspecified'}"
            )
        if name:  # media types are case-insensitive; the resolver compares lower case
            headers[name] = _JSON
        if event.get("isBase64Encoded"):
            try:
                base64.b64decode(body, validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                return UnsupportedMediaTypeError("request body is not UTF-8 encoded JSON")
    if event.get("rawPath") not in PUBLIC_PATHS:
        try:
            principal_of(event)
        except UnauthorizedError as error:
            return error
    return None


def _portable(value: Any) -> bool:
    """Whether every number in ``value`` is a finite double or a signed 64-bit integer."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int):
        return -MAX_INT64 - 1 <= value <= MAX_INT64
    if isinstance(value, dict):
        return all(_portable(item) for item in value.values())
    if isinstance(value, list):
        return all(_portable(item) for item in value)
    return True


def parse_json(text: str | bytes) -> Any:
    """A request body's JSON, refusing what JSON cannot hold or a parser should not try.

    ``NaN``, ``Infinity``, numbers beyond a double's range (``1e400``), integers outside
    the signed 64-bit range and nesting deeper than 200 levels are refused with
    `json.JSONDecodeError`, which the resolver answers with 422 ``invalid_request``
    (Python's ``json`` accepts the non-numbers and fails with a 500 on deep nesting or
    integers of more than 4,300 digits). Produce bodies are parsed by
    `ProduceRequest.parse_body` instead: the same parser and depth, integer fields bounded
    by the models, and a JSON record value refused at `JsonData.to_bytes` if it holds a
    number JSON text cannot (it may hold any other number, kept as its text).
    """
    try:
        value = pydantic_core.from_json(text, allow_inf_nan=False)
    except ValueError as error:
        raise json.JSONDecodeError(str(error), str(text), 0) from None
    if not _portable(value):
        raise json.JSONDecodeError(
            "numbers must be finite, and integers fit in 64 bits", str(text), 0
        )
    return value


def _validation_message(error: RequestValidationError) -> str:
    """What is wrong with a request, for the caller: the parser's reason for a body that is
    not JSON (Powertools reports it as "JSON decode error" at position 0, the reason kept
    aside), else each invalid field and why."""
    errors = error.errors()
    for item in errors:
        if item.get("type") == "json_invalid":
            reason = (item.get("ctx") or {}).get("error") or "malformed"
            return f"request body is not valid JSON: {reason}"
    return summarize(errors, skip=frozenset({"body"})) or "invalid request"


def _json(status: HTTPStatus, body: Any) -> Response[Any]:
    return Response(status_code=status, content_type=_JSON, body=body)


def _records_reply(
    metrics: Metrics, direction: Literal["In", "Out"], records: int, size: int, reply: str
) -> Response[str]:
    """A 200 JSON reply carrying records, counted as ``Records{In,Out}`` and ``Bytes{In,Out}``."""
    metrics.add_metric(name=f"Records{direction}", unit=MetricUnit.Count, value=records)
    metrics.add_metric(name=f"Bytes{direction}", unit=MetricUnit.Bytes, value=size)
    return Response(status_code=HTTPStatus.OK, content_type=_JSON, body=reply)


def create_app(
    engine: Engine, access: AccessControl, metrics: Metrics, logger: Logger | None = None
) -> APIGatewayHttpResolver:
    """The resolver serving every route of the HTTP API v1 on ``engine``.

    Parameters
    ----------
    engine
        The engine the routes call.
    access
        ACL decisions for each request's principal.
    metrics
        Where records and bytes in and out are counted.
    logger
        Where unexpected errors are logged.
    """
    logger = logger or Logger(service="lakelog-api")
    app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=parse_json)

    def caller() -> str:
        return principal_of(app.current_event.raw_event)

    @app.exception_handler(LakelogError)
    def _domain_error(error: LakelogError) -> Response[Any]:
        metrics.add_metric(name=f"Errors.{error.code}", unit=MetricUnit.Count, value=1)
        return _json(status_of(error), error_body(error))

    @app.exception_handler(RequestValidationError)
    def _validation_error(error: RequestValidationError) -> Response[Any]:
        metrics.add_metric(name="Errors.invalid_request", unit=MetricUnit.Count, value=1)
        return _json(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            {"error": "invalid_request", "message": _validation_message(error)},
        )

    @app.exception_handler(RequestUnsupportedContentType)
    def _unsupported_content_type(error: RequestUnsupportedContentType) -> Response[Any]:
        metrics.add_metric(name="Errors.invalid_request", unit=MetricUnit.Count, value=1)
        return _json(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            {"error": "invalid_request", "message": "request bodies must be application/json"},
        )

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response[Any]:
        logger.exception("unexpected error")
        metrics.add_metric(name="Errors.internal", unit=MetricUnit.Count, value=1)
        return _json(
            HTTPStatus.INTERNAL_SERVER_ERROR,
            {"error": "internal", "message": f"unexpected {type(error).__name__}; see the logs"},
        )

    @app.not_found
    def _not_found(_: Exception) -> Response[Any]:
        return _json(
            HTTPStatus.NOT_FOUND,
            {"error": "not_found", "message": f"no route {app.current_event.path}"},
        )

    _register_topic_routes(app, engine, access, caller)
    _register_record_routes(app, engine, access, caller, metrics)
    _register_group_routes(app, engine, access, caller)
    _register_subscription_routes(app, engine, access, caller)
    _register_acl_routes(app, access, caller)

    @app.get("/v1/openapi.json", include_in_schema=False)
    def openapi() -> Response[str]:
        schema = app.get_openapi_json_schema(title=API_TITLE, version=API_VERSION)
        return Response(status_code=HTTPStatus.OK, content_type=_JSON, body=schema)

    app.enable_swagger(path="/v1/docs", title=API_TITLE, version=API_VERSION)
    return app


def _register_topic_routes(
    app: APIGatewayHttpResolver,
    engine: Engine,
    access: AccessControl,
    caller: Callable[[], str],
) -> None:
    @app.post(
        "/v1/topics",
        tags=["topics"],
        summary="Create a topic",
        responses=success(TopicState, 201, "Created") | error_responses(403, 409, *BODY_ERRORS),
    )
    def create_topic(request: Annotated[TopicCreate, Body()]) -> Response[Any]:
        access.check(caller(), "admin", request.name)
        created = engine.call(CreateTopic(request.name, request.partitions, request.config))
        return _json(HTTPStatus.CREATED, TopicState.of(created).body())

    @app.get(
        "/v1/topics",
        tags=["topics"],
        summary="List topics",
        responses=success(TopicList) | error_responses(),
    )
    def list_topics() -> TopicList:
        return TopicList(topics=access.visible(caller(), engine.call(ListTopics())))

    @app.get(
        "/v1/topics/<topic>",
        tags=["topics"],
        summary="Describe a topic",
        responses=success(TopicState) | error_responses(403, 404),
    )
    def describe_topic(
        topic: str,
        levels: Annotated[
            bool,
            Query(
                description="Also count segments and bytes per storage level (L0, L1): "
                "one more ledger read, plus one per 1,000 L1 entries of each partition",
            ),
        ] = False,
    ) -> Response[Any]:
        principal = caller()
        if not access.visible(principal, [topic]):
            access.check(principal, "consume", topic)
        described = engine.call(DescribeTopic(topic, levels=levels or None))
        return _json(HTTPStatus.OK, TopicState.of(described).body())

    @app.patch(
        "/v1/topics/<topic>",
        tags=["topics"],
        summary="Alter config or add partitions",
        responses=success(TopicState) | error_responses(403, 404, *BODY_ERRORS),
    )
    def alter_topic(topic: str, request: Annotated[TopicAlter, Body()]) -> Response[Any]:
        access.check(caller(), "admin", topic)
        altered = engine.call(AlterTopic(topic, request.config, request.partitions))
        return _json(HTTPStatus.OK, TopicState.of(altered).body())

    @app.delete(
        "/v1/topics/<topic>",
        tags=["topics"],
        summary="Delete a topic",
        responses=NO_CONTENT | error_responses(403, 404),
    )
    def delete_topic(topic: str) -> Response[Any]:
        access.check(caller(), "admin", topic)
        engine.call(DeleteTopic(topic))
        return Response(status_code=HTTPStatus.NO_CONTENT, body="")


def _register_record_routes(
    app: APIGatewayHttpResolver,
    engine: Engine,
    access: AccessControl,
    caller: Callable[[], str],
    metrics: Metrics,
) -> None:
    @app.post(
        "/v1/topics/<topic>/records",
        tags=["records"],
        summary="Append records",
        responses=success(ProduceReply) | error_responses(403, 404, 409, 429, 503, *BODY_ERRORS),
        openapi_extensions={
            "requestBody": {
                "required": True,
                "content": {_JSON: {"schema": ProduceRequest.openapi_schema()}},
            }
        },
    )
    def produce(topic: str) -> Response[str]:
        principal = caller()
        access.check(principal, "produce", topic)
        try:
            body = app.current_event.decoded_body or ""
            request = ProduceRequest.parse_body(body)
        except ValidationError as error:
            raise RequestValidationError(list(error.errors())) from None
        records = request.to_records()
        acks = engine.call(Append(topic, records, request.to_producer()), principal)
        reply = ProduceReply.json_of(acks).decode()
        return _records_reply(metrics, "In", len(records), len(body), reply)

    @app.post(
        "/v1/producers",
        tags=["records"],
        summary="A fresh idempotent producer id, held by the caller alone",
        responses=success(ProducerIdReply) | error_responses(429, 503),
    )
    def init_producer() -> ProducerIdReply:
        return ProducerIdReply(id=engine.call(InitProducerId(), caller()), epoch=0)

    @app.get(
        "/v1/topics/<topic>/partitions/<partition>/records",
        tags=["records"],
        summary="Fetch records from an offset",
        responses=success(FetchReply) | error_responses(403, 404, 416, 429, 503),
    )
    def fetch(
        topic: str,
        partition: int,
        offset: Annotated[int, Query(ge=0, le=MAX_INT64)] = 0,
        max_records: Annotated[int, Query(ge=1, le=MAX_INT64)] = DEFAULT_FETCH_RECORDS,
        max_bytes: Annotated[int, Query(ge=1, le=MAX_API_FETCH_BYTES)] = DEFAULT_FETCH_BYTES,
    ) -> Response[str]:
        access.check(caller(), "consume", topic)
        result = engine.call(Fetch(topic, partition, offset, max_records, max_bytes))
        reply = FetchReply.json_of(result)
        return _records_reply(metrics, "Out", len(result.records), len(reply), reply)

    @app.post(
        "/v1/fetch",
        tags=["records"],
        summary="Fetch records of several partitions, and heartbeat, in one request",
        responses=success(FetchManyReply) | error_responses(403, 429, 503, *BODY_ERRORS),
    )
    def fetch_many(request: Annotated[FetchManyRequest, Body()]) -> Response[str]:
        principal = caller()
        for topic in request.topics():  # all before anything is read
            access.check(principal, "consume", topic)
        positions = request.to_positions()
        member = request.member.to_join() if request.member else None
        result = engine.call(
            FetchMany(positions, request.max_bytes, request.max_records, member), principal
        )
        reply = FetchManyReply.json_of(positions, result).decode()
        records = sum(len(r.records) for r in result.partitions if not isinstance(r, Exception))
        return _records_reply(metrics, "Out", records, len(reply), reply)

    @app.get(
        "/v1/topics/<topic>/partitions/<partition>/offsets",
        tags=["records"],
        summary="Earliest, latest or first offset at a time",
        responses=success(OffsetReply) | error_responses(403, 404, 503),
    )
    def offsets(
        topic: str,
        partition: int,
        spec: Annotated[Literal["earliest", "latest"] | None, Query()] = None,
        timestamp_ms: Annotated[int | None, Query(ge=0, le=MAX_INT64)] = None,
    ) -> Response[Any]:
        access.check(caller(), "consume", topic)
        if (spec is None) == (timestamp_ms is None):
            raise InvalidRequestError("give exactly one of spec=earliest|latest or timestamp_ms")
        if timestamp_ms is None:
            assert spec is not None
            reply = OffsetReply(offset=engine.call(ListOffset(topic, partition, spec)))
        elif (found := engine.call(OffsetForTime(topic, partition, timestamp_ms))) is not None:
            reply = OffsetReply(offset=found.offset, found=True, timestamp_ms=found.timestamp)
        else:
            latest = engine.call(ListOffset(topic, partition, "latest"))
            reply = OffsetReply(offset=latest, found=False)
        return _json(HTTPStatus.OK, reply.model_dump(mode="json", exclude_none=True))


def _register_group_routes(
    app: APIGatewayHttpResolver,
    engine: Engine,
    access: AccessControl,
    caller: Callable[[], str],
) -> None:
    """Consumer groups (ADR 0009): members need ``consume`` on the topics they touch."""

    def check_consume(topics: Iterable[str]) -> None:
        principal = caller()
        for topic in sorted(set(topics)):
            access.check(principal, "consume", topic)

    @app.post(
        "/v1/groups/<group>/members",
        tags=["groups"],
        summary="Join a group, or heartbeat in it",
        responses=success(MembershipReply) | error_responses(403, 404, 409, 429, 503, *BODY_ERRORS),
    )
    def join_group(group: str, request: Annotated[JoinRequest, Body()]) -> MembershipReply:
        check_consume(request.topics)
        membership = engine.call(
            JoinGroup(group, request.topics, request.member_id, request.session_timeout_ms)
        )
        return MembershipReply.of(membership)

    @app.delete(
        "/v1/groups/<group>/members/<member_id>",
        tags=["groups"],
        summary="Leave a group, releasing the member's leases at once",
        responses=NO_CONTENT | error_responses(403, 429, 503),
    )
    def leave_group(group: str, member_id: str) -> Response[Any]:
        check_consume(engine.groups.member_topics(group, member_id))
        engine.call(LeaveGroup(group, member_id))
        return Response(status_code=HTTPStatus.NO_CONTENT, body="")

    @app.post(
        "/v1/groups/<group>/offsets",
        tags=["groups"],
        summary="Commit offsets, fenced by lease epochs",
        responses=NO_CONTENT | error_responses(403, 404, 409, 429, 503, *BODY_ERRORS),
    )
    def commit_offsets(group: str, request: Annotated[CommitRequest, Body()]) -> Response[Any]:
        check_consume(commit.topic for commit in request.offsets)
        offsets = [commit.to_commit() for commit in request.offsets]
        engine.call(CommitOffsets(group, request.member_id, offsets))
        return Response(status_code=HTTPStatus.NO_CONTENT, body="")

    @app.get(
        "/v1/groups/<group>",
        tags=["groups"],
        summary="Members, leases, committed offsets and lag",
        responses=success(GroupReply) | error_responses(403, 404, 429, 503),
    )
    def describe_group(group: str) -> GroupReply:
        description = engine.call(DescribeGroup(group))
        check_consume(
            [p.topic for p in description.partitions]
            + [topic for member in description.members for topic in member.topics]
        )
        return GroupReply.of(description)

    @app.post(
        "/v1/groups/<group>/offsets/reset",
        tags=["groups"],
        summary="Move committed offsets of a topic; only with no live member",
        responses=success(ResetReply) | error_responses(403, 404, 409, 429, 503, *BODY_ERRORS),
    )
    def reset_offsets(group: str, request: Annotated[ResetRequest, Body()]) -> ResetReply:
        access.check(caller(), "admin", request.topic)
        offsets = engine.call(ResetOffsets(group, request.topic, request.target()))
        return ResetReply(
            topic=request.topic,
            partitions=[ResetPartition(partition=p, offset=o) for p, o in sorted(offsets.items())],
        )


def _register_subscription_routes(
    app: APIGatewayHttpResolver,
    engine: Engine,
    access: AccessControl,
    caller: Callable[[], str],
) -> None:
    """Subscriptions (ADR 0015 §1): creating and deleting one needs ``admin`` on the topic
    (and creating one ``produce`` on its on-failure topic); listing and describing need
    ``consume``."""

    @app.post(
        "/v1/topics/<topic>/subscriptions",
        tags=["subscriptions"],
        summary="Subscribe a function to a topic",
        responses=success(SubscriptionState, 201, "Created")
        | error_responses(403, 404, 409, 429, 503, *BODY_ERRORS),
    )
    def create_subscription(
        topic: str, request: Annotated[SubscriptionCreate, Body()]
    ) -> Response[Any]:
        principal = caller()
        access.check(principal, "admin", topic)
        if request.on_failure is not None and request.on_failure.topic is not None:
            access.check(principal, "produce", request.on_failure.topic)
        created = engine.call(CreateSubscription(request.to_subscription(topic)), principal)
        return _json(HTTPStatus.CREATED, SubscriptionState.of(created).model_dump(mode="json"))

    @app.get(
        "/v1/topics/<topic>/subscriptions",
        tags=["subscriptions"],
        summary="List a topic's subscriptions",
        responses=success(SubscriptionList) | error_responses(403, 429, 503),
    )
    def list_subscriptions(topic: str) -> SubscriptionList:
        access.check(caller(), "consume", topic)
        found = engine.call(ListSubscriptions(topic))
        return SubscriptionList(subscriptions=[SubscriptionState.of(s) for s in found])

    @app.get(
        "/v1/topics/<topic>/subscriptions/<name>",
        tags=["subscriptions"],
        summary="A subscription with its committed offsets and lag",
        responses=success(SubscriptionStatusReply) | error_responses(403, 404, 429, 503),
    )
    def describe_subscription(topic: str, name: str) -> SubscriptionStatusReply:
        access.check(caller(), "consume", topic)
        return SubscriptionStatusReply.of(engine.call(DescribeSubscription(topic, name)))

    @app.delete(
        "/v1/topics/<topic>/subscriptions/<name>",
        tags=["subscriptions"],
        summary="Delete a subscription and its progress",
        responses=NO_CONTENT | error_responses(403, 404, 429, 503),
    )
    def delete_subscription(topic: str, name: str) -> Response[Any]:
        access.check(caller(), "admin", topic)
        engine.call(DeleteSubscription(topic, name))
        return Response(status_code=HTTPStatus.NO_CONTENT, body="")


def _register_acl_routes(
    app: APIGatewayHttpResolver, access: AccessControl, caller: Callable[[], str]
) -> None:
    def entry(rule: AclRule) -> AclEntry:
        return AclEntry(rule.principal, rule.topic, rule.effect, frozenset(rule.operations))

    @app.put(
        "/v1/acls",
        tags=["acls"],
        summary="Add an access rule",
        responses=success(AclRule) | error_responses(403, *BODY_ERRORS),
    )
    def put_acl(rule: Annotated[AclRule, Body()]) -> AclRule:
        access.check_cluster_admin(caller())
        access.add(entry(rule))
        return rule

    @app.get(
        "/v1/acls",
        tags=["acls"],
        summary="List access rules",
        responses=success(AclRules) | error_responses(403),
    )
    def list_acls() -> AclRules:
        access.check_cluster_admin(caller())
        return AclRules(
            acls=[
                AclRule(
                    principal=r.principal,
                    topic=r.topic,
                    operations=sorted(r.operations),  # type: ignore[arg-type]
                    effect=r.effect,  # type: ignore[arg-type]
                )
                for r in access.rules()
            ]
        )

    @app.delete(
        "/v1/acls",
        tags=["acls"],
        summary="Remove operations from an access rule",
        responses=NO_CONTENT | error_responses(403, 404, *BODY_ERRORS),
    )
    def delete_acl(rule: Annotated[AclRule, Body()]) -> Response[Any]:
        access.check_cluster_admin(caller())
        if not access.remove(entry(rule)):
            return _json(HTTPStatus.NOT_FOUND, {"error": "not_found", "message": "no such rule"})
        return Response(status_code=HTTPStatus.NO_CONTENT, body="")

"""Topic configs: DescribeConfigs (32), AlterConfigs (33) and IncrementalAlterConfigs (44)
under Kafka's names (`lakelog.kafka.configs`; ADR 0016 §6).

Describing needs any right on the topic, altering ``admin`` (else
TOPIC_AUTHORIZATION_FAILED, and nothing changes). AlterConfigs replaces a topic's whole
config (settings it does not name return to lakelog's defaults, as in Kafka);
IncrementalAlterConfigs SETs settings or DELETEs them (back to the default); APPEND and
SUBTRACT, which Kafka has for list settings, are INVALID_CONFIG: every lakelog setting has
one value. A resource named twice, a setting named twice in one resource, and a null value
but for a DELETE are INVALID_REQUEST, as in Kafka. Each resource succeeds or fails alone;
``validate_only`` changes nothing. The
broker resource is described (a small read-only set) but not altered.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from kio.schema.errors import ErrorCode
from kio.static.protocol import ResponsePayload

from lakelog.contract.operations import AlterTopic
from lakelog.errors import LakelogError
from lakelog.kafka.admin import (
    DEFAULT_PARTITIONS,
    RefusedError,
    authorize,
    check_name,
    describe,
    failure,
    refused,
)
from lakelog.kafka.apis import Api, Session, response_type
from lakelog.kafka.configs import (
    CONFIGS,
    DEFAULT_CONFIG,
    DYNAMIC_TOPIC_CONFIG,
    STATIC_BROKER_CONFIG,
    ConfigError,
    default_config,
    kafka_configs,
    lakelog_config,
)
from lakelog.kafka.protocol import build, item_type

__all__ = ["ALTER_CONFIGS", "DESCRIBE_CONFIGS", "INCREMENTAL_ALTER_CONFIGS", "broker_configs"]

TOPIC: Final = 2
BROKER: Final = 4
"""Config resource types."""
SET: Final = 0
DELETE: Final = 1
"""IncrementalAlterConfigs operations lakelog applies (APPEND 2 and SUBTRACT 3 are not)."""

Changes = Callable[[Mapping[str, Any]], dict[str, Any]]
"""The lakelog config keys to change, given the topic's current config (`ConfigError`
when the request cannot apply)."""


def broker_configs(session: Session) -> list[tuple[str, str, int, str]]:
    """The broker settings DescribeConfigs reports (read-only): ``(name, value,
    config_type, documentation)``. Clients read a few of them; lakelog has no brokers."""
    return [
        ("auto.create.topics.enable", "false", 1, "Metadata never creates topics."),
        ("default.replication.factor", "1", 4, "S3 is the replication."),
        ("delete.topic.enable", "true", 1, "Topics can be deleted."),
        ("num.partitions", str(DEFAULT_PARTITIONS), 3, "Partitions of a topic by default."),
        ("socket.request.max.bytes", str(session.services.max_frame_bytes), 3, "Largest frame."),
    ]


async def _per_resource(
    body: Any, run: Callable[[Any], Awaitable[Any]], build_result: Callable[..., Any]
) -> tuple[Any, ...]:
    """``build_result(resource, outcome fields)`` for each resource of ``body``, in order."""
    results = []
    for resource in body.resources:
        try:
            fields = {"error_code": ErrorCode.none, "error_message": None, **await run(resource)}
        except RefusedError as refusal:
            fields = failure(refusal)
        results.append(
            build_result(
                resource_type=resource.resource_type,
                resource_name=resource.resource_name,
                **fields,
            )
        )
    return tuple(results)


# DescribeConfigs ------------------------------------------------------------------------
def _entries(
    result_type: type[Any], body: Any, configs: list[tuple[str, str, int, str, int]]
) -> tuple[Any, ...]:
    entry_type = item_type(result_type, "configs")
    synonym_type = item_type(entry_type, "synonyms")
    synonyms = getattr(body, "include_synonyms", False)
    documented = getattr(body, "include_documentation", False)
    return tuple(
        build(
            entry_type,
            name=name,
            value=value,
            read_only=source == STATIC_BROKER_CONFIG,
            config_source=source,
            is_sensitive=False,
            config_type=config_type,
            documentation=documentation if documented else None,
            synonyms=(build(synonym_type, name=name, value=value, source=source),)
            if synonyms
            else (),
        )
        for name, value, config_type, documentation, source in configs
    )


async def _described(session: Session, resource: Any) -> list[tuple[str, str, int, str, int]]:
    keys = resource.configuration_keys  # None: all (an empty list: none, as in Kafka)
    if resource.resource_type == BROKER:
        if resource.resource_name not in ("", str(session.services.node_id)):
            raise RefusedError(
                ErrorCode.invalid_request, f"the broker here is {session.services.node_id}"
            )
        return [
            (name, value, config_type, doc, STATIC_BROKER_CONFIG)
            for name, value, config_type, doc in broker_configs(session)
            if keys is None or name in keys
        ]
    if resource.resource_type != TOPIC:
        raise RefusedError(
            ErrorCode.invalid_request, "lakelog describes the configs of topics and brokers"
        )
    name = resource.resource_name
    services = session.services
    if not await services.run(services.access.visible, session.principal, [name]):
        raise RefusedError(
            ErrorCode.topic_authorization_failed, f"{session.principal} may not see {name!r}"
        )
    check_name(name)
    description = await describe(session, name)
    return [
        (
            known.name,
            value,
            known.config_type,
            known.documentation,
            DEFAULT_CONFIG if is_default else DYNAMIC_TOPIC_CONFIG,
        )
        for known, value, is_default in kafka_configs(description.config, keys)
    ]


async def _describe_configs(body: Any, session: Session) -> ResponsePayload:
    schema = response_type(body)
    result_type = item_type(schema, "results")

    async def run(resource: Any) -> dict[str, Any]:
        configs = await _described(session, resource)
        return {"configs": _entries(result_type, body, configs)}

    results = await _per_resource(
        body, run, lambda **fields: build(result_type, **{"configs": (), **fields})
    )
    return build(schema, results=results)


# AlterConfigs and IncrementalAlterConfigs -----------------------------------------------
def _check_shape(resource: Any, twice: set[tuple[int, str]]) -> None:
    """Refuse, as Kafka does before anything else (INVALID_REQUEST), a resource named twice
    in the request, a setting named twice in the resource, and a null value for anything
    but a DELETE (AlterConfigs has no operations: a null value there is refused too)."""
    names = [config.name for config in resource.configs]
    null = [
        config.name
        for config in resource.configs
        if config.value is None and getattr(config, "config_operation", SET) != DELETE
    ]
    if (resource.resource_type, resource.resource_name) in twice:
        message = "Each resource must appear at most once."
    elif len(set(names)) < len(names):
        message = "Error due to duplicate config keys"
    elif null:
        message = f"Null value not supported for : {', '.join(null)}"
    else:
        return
    raise RefusedError(ErrorCode.invalid_request, message)


async def _alter(session: Session, resource: Any, changes: Changes, validate_only: bool) -> None:
    if resource.resource_type != TOPIC:
        raise RefusedError(ErrorCode.invalid_request, "lakelog alters the configs of topics only")
    name = resource.resource_name
    await authorize(session, "admin", name)
    check_name(name)
    current = (await describe(session, name)).config
    try:
        updates = changes(current)
    except ConfigError as error:
        raise RefusedError(ErrorCode.invalid_config, str(error)) from None
    if not validate_only:
        try:
            await session.call(AlterTopic(name, config=updates))
        except LakelogError as error:
            raise refused(error) from None


def _replaced(resource: Any) -> Changes:
    """AlterConfigs: the named settings, every other one back to its default."""

    def changes(current: Mapping[str, Any]) -> dict[str, Any]:
        named = lakelog_config((config.name, config.value) for config in resource.configs)
        return {**default_config(known.name for known in CONFIGS), **named}

    return changes


def _incremental(resource: Any) -> Changes:
    """IncrementalAlterConfigs: SET and DELETE (back to the default) over the current."""

    def changes(current: Mapping[str, Any]) -> dict[str, Any]:
        refused_ops = [c.name for c in resource.configs if c.config_operation not in (SET, DELETE)]
        if refused_ops:
            raise ConfigError(
                f"{', '.join(refused_ops)}: lakelog's settings have one value; use SET or DELETE"
            )
        reset = default_config(c.name for c in resource.configs if c.config_operation == DELETE)
        updates = lakelog_config(
            ((c.name, c.value) for c in resource.configs if c.config_operation == SET),
            base={**current, **reset},
        )
        return {**reset, **updates}

    return changes


def _alter_handler(changes_of: Callable[[Any], Changes]) -> Callable[..., Any]:
    async def handle(body: Any, session: Session) -> ResponsePayload:
        schema = response_type(body)
        result_type = item_type(schema, "responses")

        named = Counter((r.resource_type, r.resource_name) for r in body.resources)
        twice = {key for key, count in named.items() if count > 1}

        async def run(resource: Any) -> dict[str, Any]:
            _check_shape(resource, twice)
            await _alter(session, resource, changes_of(resource), body.validate_only)
            return {}

        results = await _per_resource(body, run, lambda **fields: build(result_type, **fields))
        return build(schema, responses=results)

    return handle


DESCRIBE_CONFIGS = Api(32, 1, 4, _describe_configs)
ALTER_CONFIGS = Api(33, 0, 2, _alter_handler(_replaced))
INCREMENTAL_ALTER_CONFIGS = Api(44, 0, 1, _alter_handler(_incremental))

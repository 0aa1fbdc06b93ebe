"""Metadata (key 3): the gateway leads every partition of every topic (ADR 0016 §2).

Every gateway answers with itself (its advertised address, node id 0 by default) as the
only broker, the controller, and the leader and only replica of every partition: any
gateway serves any partition, since the data is in S3 and the ledger. A topic the caller
may not see is TOPIC_AUTHORIZATION_FAILED when named and left out when listing all;
topics are never created by Metadata (``allow_auto_topic_creation`` is ignored, as with
``auto.create.topics.enable=false``): an unknown topic is UNKNOWN_TOPIC_OR_PARTITION and a
name Kafka's rules refuse INVALID_TOPIC_EXCEPTION.
"""

from __future__ import annotations

from typing import Any, Final

from kio.schema.errors import ErrorCode
from kio.static.protocol import ResponsePayload

from lakelog.contract.operations import DescribeTopic, ListTopics
from lakelog.errors import InvalidRequestError, LakelogError
from lakelog.kafka.apis import Api, Session, response_type
from lakelog.kafka.errors import error_code
from lakelog.kafka.protocol import build, item_type
from lakelog.limits import validate_topic_name

__all__ = ["API", "CLUSTER_ID"]

CLUSTER_ID: Final = "lakelog"
"""The cluster id every gateway reports."""


async def _topic(session: Session, schema: type[Any], name: str) -> Any:
    topic_type = item_type(schema, "topics")
    partition_type = item_type(topic_type, "partitions")
    node = session.services.node_id
    if not await session.allowed("consume", name) and not await session.allowed("produce", name):
        return build(
            topic_type, error_code=ErrorCode.topic_authorization_failed, name=name, partitions=()
        )
    try:
        validate_topic_name(name)
    except InvalidRequestError:
        # Kafka's answer for a name it would never create, which clients fail at once
        return build(
            topic_type, error_code=ErrorCode.invalid_topic_exception, name=name, partitions=()
        )
    try:
        description = await session.call(DescribeTopic(name))
    except LakelogError as error:
        return build(topic_type, error_code=error_code(error), name=name, partitions=())
    partitions = tuple(
        build(
            partition_type,
            partition_index=index,
            leader_id=node,
            leader_epoch=0,
            replica_nodes=(node,),
            isr_nodes=(node,),
            offline_replicas=(),
        )
        for index in range(len(description.partitions))
    )
    return build(topic_type, name=name, partitions=partitions)


async def _handle(body: Any, session: Session) -> ResponsePayload:
    schema = response_type(body)
    services = session.services
    if body.topics is None or (body.__version__ == 0 and not body.topics):
        names = await session.call(ListTopics())
        names = await services.run(services.access.visible, session.principal, names)
    else:
        names = [topic.name for topic in body.topics if topic.name is not None]
    topics = tuple([await _topic(session, schema, name) for name in names])
    broker_type = item_type(schema, "brokers")
    broker = build(
        broker_type,
        node_id=services.node_id,
        host=services.advertised_host,
        port=services.advertised_port,
    )
    return build(
        schema,
        brokers=(broker,),
        cluster_id=CLUSTER_ID,
        controller_id=services.node_id,
        topics=topics,
    )


API = Api(3, 0, 12, _handle)

"""InitProducerId (key 22): idempotent producers on lakelog's producer ids (ADR 0016 §3).

Each call issues a fresh lakelog producer id (`InitProducerId`: a random positive int64
held by the session's principal, ADR 0004) at epoch 0. A client that re-initializes with
its current id and epoch (KIP-360, after an error that leaves its sequences unknown) gets a
fresh id too: its sequences then restart at 0 in every partition, which is what the bump
of an epoch would give it, without the gateway having to prove that the caller holds the
old id. Transactions are not served: a transactional id is answered
TRANSACTIONAL_ID_AUTHORIZATION_FAILED, which clients report at once instead of retrying.
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode
from kio.static.protocol import ResponsePayload

from lakelog.contract.operations import InitProducerId
from lakelog.errors import LakelogError
from lakelog.kafka.apis import Api, Session, response_type
from lakelog.kafka.errors import error_code
from lakelog.kafka.protocol import build

__all__ = ["API"]


async def _handle(body: Any, session: Session) -> ResponsePayload:
    schema = response_type(body)
    if body.transactional_id is not None:
        return build(
            schema,
            error_code=ErrorCode.transactional_id_authorization_failed,
            producer_id=-1,
            producer_epoch=-1,
        )
    try:
        producer_id = await session.call(InitProducerId())
    except LakelogError as error:
        return build(schema, error_code=error_code(error), producer_id=-1, producer_epoch=-1)
    return build(schema, producer_id=producer_id, producer_epoch=0)


API = Api(22, 0, 5, _handle)

"""Each operation of the contract is served: by the engine in-process and by a route."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, cast

import pytest

from lakelog import Engine
from lakelog.contract.operations import Http, Operation
from lakelog.errors import InvalidRequestError
from tests.integration.api.conftest import Api

OPERATIONS: list[type[Operation[Any]]] = sorted(
    Operation.__subclasses__(), key=lambda kind: kind.__name__
)


def test_the_engine_runs_every_operation_of_the_contract(engine: Engine) -> None:
    assert engine.operations == frozenset(OPERATIONS)


@dataclass(frozen=True)
class Unknown:
    """Shaped like an operation, declared by no contract (not an `Operation` subclass, so
    the list of the contract's operations stays what the contract declares)."""

    http: ClassVar = Http("GET", "/v1/unknown")


def test_the_engine_refuses_an_operation_it_does_not_run(engine: Engine) -> None:
    with pytest.raises(InvalidRequestError, match="no operation Unknown"):
        engine.call(cast("Operation[None]", Unknown()))


@pytest.mark.parametrize("kind", OPERATIONS, ids=lambda kind: kind.__name__)
def test_each_operation_binding_is_a_route_of_the_api(api: Api, kind: type[Operation[Any]]) -> None:
    reply = api.send("openapi")
    assert reply.status == 200, reply.text
    paths = reply.json["paths"]

    assert kind.http.method.lower() in paths.get(kind.http.path, {})

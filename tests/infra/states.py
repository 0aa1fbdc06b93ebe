"""A small, strict interpreter of the Amazon States Language the compactor's machine uses.

It walks the definition CDK synthesizes: Task (the Lambda handler called in-process, found
by the function's logical id), Map (inline, over ``ItemsPath`` with ``ItemSelector``),
Choice (``BooleanEquals``), Pass (``Parameters``), Succeed and Fail, with Retry (backoff
through an injected sleep) and Catch. Any state type, field, path or comparison it does not
know raises `UnsupportedError`, so a definition that grows beyond what this walker checks fails
its test instead of being half-run.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = ["ExecutionFailedError", "Interpreter", "UnsupportedError", "resolve_definition"]

_ARN_PREFIX: Final = "arn:test:lambda:"
_FIELDS: Final = {
    "Task": {"Type", "Resource", "Next", "End", "Retry", "Catch", "ResultPath"},
    "Map": {
        "Type",
        "Next",
        "End",
        "Catch",
        "ItemsPath",
        "ItemSelector",
        "ItemProcessor",
        "MaxConcurrency",
        "ResultPath",
    },
    "Choice": {"Type", "Choices", "Default"},
    "Pass": {"Type", "Parameters", "Next", "End"},
    "Succeed": {"Type"},
    "Fail": {"Type", "Error", "Cause", "CausePath"},
}
_RETRY_FIELDS: Final = {"ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate"}
_CATCH_FIELDS: Final = {"ErrorEquals", "ResultPath", "Next"}
_MAX_TRANSITIONS: Final = 10_000

Invoke = Callable[[str, Any], Any]
"""Runs the task function of a logical id on an input, returns its output."""


class UnsupportedError(AssertionError):
    """The definition uses something this interpreter does not implement."""


class ExecutionFailedError(Exception):
    """An execution (or a Map iteration) ended in a failure: ASL's error name and cause."""

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause


def resolve_definition(template: Mapping[str, Any], state_machine_id: str) -> dict[str, Any]:
    """The definition of a synthesized state machine, task ARNs as ``arn:test:lambda:<id>``."""
    properties = template["Resources"][state_machine_id]["Properties"]
    body = properties["DefinitionString"]
    if isinstance(body, str):
        text = body
    else:
        (separator, parts) = body["Fn::Join"]
        pieces = []
        for part in parts:
            if isinstance(part, str):
                pieces.append(part)
            elif set(part) == {"Fn::GetAtt"} and part["Fn::GetAtt"][1] == "Arn":
                pieces.append(_ARN_PREFIX + part["Fn::GetAtt"][0])
            else:
                raise UnsupportedError(f"intrinsic in the definition: {part}")
        text = separator.join(pieces)
    definition: dict[str, Any] = json.loads(text)
    return definition


def _read(data: Any, path: str, context: Mapping[str, Any]) -> Any:
    if path == "$":
        return data
    if path.startswith("$$."):
        root, names = context, path[3:].split(".")
    elif path.startswith("$."):
        root, names = data, path[2:].split(".")
    else:
        raise UnsupportedError(f"path {path!r}")
    value = root
    for name in names:
        if not name.isidentifier():
            raise UnsupportedError(f"path {path!r}")
        if not isinstance(value, Mapping) or name not in value:
            raise ExecutionFailedError("States.Runtime", f"{path} is not in the input")
        value = value[name]
    return value


def _with_result(data: Any, path: str | None, result: Any) -> Any:
    if path is None:
        return data
    if path == "$":
        return result
    if not path.startswith("$.") or not all(n.isidentifier() for n in path[2:].split(".")):
        raise UnsupportedError(f"ResultPath {path!r}")
    output = copy.deepcopy(data)
    target = output
    *parents, last = path[2:].split(".")
    for name in parents:
        target = target.setdefault(name, {})
    target[last] = result
    return output


def _template(template: Mapping[str, Any], data: Any, context: Mapping[str, Any]) -> Any:
    result: dict[str, Any] = {}
    for key, value in template.items():
        if key.endswith(".$"):
            result[key[:-2]] = _read(data, value, context)
        elif isinstance(value, Mapping):
            result[key] = _template(value, data, context)
        else:
            result[key] = value
    return result


def _matches(names: list[str], error: str) -> bool:
    if "States.ALL" in names:
        return True
    if error in names:
        return True
    return "States.TaskFailed" in names and error not in ("States.Timeout", "States.Runtime")


def _check(state: Mapping[str, Any], name: str) -> None:
    kind = state.get("Type")
    if kind not in _FIELDS:
        raise UnsupportedError(f"state {name}: type {kind!r}")
    unknown = set(state) - _FIELDS[kind]
    if unknown:
        raise UnsupportedError(f"state {name} ({kind}): fields {sorted(unknown)}")
    for retrier in state.get("Retry", []):
        if set(retrier) - _RETRY_FIELDS:
            raise UnsupportedError(
                f"state {name}: retry fields {sorted(set(retrier) - _RETRY_FIELDS)}"
            )
    for catcher in state.get("Catch", []):
        if set(catcher) - _CATCH_FIELDS:
            raise UnsupportedError(
                f"state {name}: catch fields {sorted(set(catcher) - _CATCH_FIELDS)}"
            )


class Interpreter:
    """Runs executions of one definition.

    Parameters
    ----------
    definition
        The parsed definition (`resolve_definition`).
    invoke
        Runs a task function by its logical id: ``invoke(logical_id, input) -> output``;
        an exception is the task's failure, named by its class as Lambda names it.
    sleep
        Receives each retry's wait in seconds (tests record it rather than wait).
    """

    def __init__(
        self, definition: Mapping[str, Any], invoke: Invoke, sleep: Callable[[float], None]
    ) -> None:
        unknown = set(definition) - {"StartAt", "States", "TimeoutSeconds", "Comment"}
        if unknown:
            raise UnsupportedError(f"top-level fields {sorted(unknown)}")
        self._definition = definition
        self._invoke = invoke
        self._sleep = sleep
        self.visited: list[str] = []
        """Every state entered, in order (Map iterations included)."""

    def run(self, data: Any) -> Any:
        """Run an execution on ``data``; its output, or `ExecutionFailedError`."""
        return self._run_machine(self._definition, data, {})

    def _run_machine(
        self, machine: Mapping[str, Any], data: Any, context: Mapping[str, Any]
    ) -> Any:
        states = machine["States"]
        name = machine["StartAt"]
        for _ in range(_MAX_TRANSITIONS):
            state = states[name]
            _check(state, name)
            self.visited.append(name)
            kind = state["Type"]
            if kind == "Succeed":
                return data
            if kind == "Fail":
                cause = _read(data, state["CausePath"], context) if "CausePath" in state else ""
                raise ExecutionFailedError(state["Error"], str(state.get("Cause", cause)))
            if kind == "Choice":
                name = self._choose(state, data, context)
                continue
            try:
                if kind == "Pass":
                    data = (
                        _template(state.get("Parameters", {}), data, context)
                        if ("Parameters" in state)
                        else data
                    )
                else:
                    result = self._with_retries(state, data, context)
                    data = _with_result(data, state.get("ResultPath", "$"), result)
            except ExecutionFailedError as failure:
                catcher = next(
                    (
                        c
                        for c in state.get("Catch", [])
                        if _matches(c["ErrorEquals"], failure.error)
                    ),
                    None,
                )
                if catcher is None:
                    raise
                error = {"Error": failure.error, "Cause": failure.cause}
                data = _with_result(data, catcher.get("ResultPath", "$"), error)
                name = catcher["Next"]
                continue
            if state.get("End"):
                return data
            name = state["Next"]
        raise UnsupportedError(f"more than {_MAX_TRANSITIONS} transitions: a loop that never ends")

    def _choose(self, state: Mapping[str, Any], data: Any, context: Mapping[str, Any]) -> str:
        for rule in state["Choices"]:
            if set(rule) != {"Variable", "BooleanEquals", "Next"}:
                raise UnsupportedError(f"choice rule {rule}")
            value = _read(data, rule["Variable"], context)
            if isinstance(value, bool) and value is rule["BooleanEquals"]:
                return str(rule["Next"])
        if "Default" not in state:
            raise ExecutionFailedError("States.NoChoiceMatched", "no choice rule matched")
        return str(state["Default"])

    def _with_retries(self, state: Mapping[str, Any], data: Any, context: Mapping[str, Any]) -> Any:
        attempts: dict[int, int] = {}
        while True:
            try:
                return self._execute(state, data, context)
            except ExecutionFailedError as failure:
                found = [
                    (i, r)
                    for i, r in enumerate(state.get("Retry", []))
                    if _matches(r["ErrorEquals"], failure.error)
                ]
                if not found:
                    raise
                index, retrier = found[0]
                done = attempts.get(index, 0)
                if done >= retrier.get("MaxAttempts", 3):
                    raise
                attempts[index] = done + 1
                interval = retrier.get("IntervalSeconds", 1)
                self._sleep(interval * retrier.get("BackoffRate", 2.0) ** done)

    def _execute(self, state: Mapping[str, Any], data: Any, context: Mapping[str, Any]) -> Any:
        if state["Type"] == "Task":
            resource = state["Resource"]
            if not resource.startswith(_ARN_PREFIX):
                raise UnsupportedError(f"task resource {resource!r}")
            try:
                return self._invoke(resource.removeprefix(_ARN_PREFIX), copy.deepcopy(data))
            except Exception as exc:  # a Lambda function error, named by its class
                cause = json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)})
                raise ExecutionFailedError(type(exc).__name__, cause) from exc
        return self._map(state, data)

    def _map(self, state: Mapping[str, Any], data: Any) -> list[Any]:
        processor = state["ItemProcessor"]
        if processor.get("ProcessorConfig") != {"Mode": "INLINE"} or set(processor) != {
            "ProcessorConfig",
            "StartAt",
            "States",
        }:
            raise UnsupportedError(f"item processor {sorted(processor)}")
        if not isinstance(state.get("MaxConcurrency"), int) or state["MaxConcurrency"] < 1:
            raise UnsupportedError("a Map without a bounded MaxConcurrency")
        items = _read(data, state.get("ItemsPath", "$"), {})
        if not isinstance(items, list):
            raise ExecutionFailedError("States.Runtime", "ItemsPath does not select an array")
        results = []
        for index, value in enumerate(items):
            context = {"Map": {"Item": {"Index": index, "Value": value}}}
            selector = state.get("ItemSelector")
            item = value if selector is None else _template(selector, data, context)
            results.append(self._run_machine(processor, item, context))
        return results

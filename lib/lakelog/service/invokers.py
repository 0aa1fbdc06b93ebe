"""The dispatcher's invokers and queue sender (the ports of `lakelog.service.invoke`).

- `LambdaInvoker`: Lambda ``Invoke`` (``RequestResponse``) of a function ARN. A function
  error (the ``X-Amz-Function-Error`` header, boto3's ``FunctionError``), a status other
  than 2xx, a throttle, a 5xx or a timeout of the call is an `InvokeOutcome` with
  ``error`` set, so the delivery retries the batch; the reply is parsed as JSON.
- `LocalInvoker`: ``local:package.module:function`` called in this process (``lakelog
  dev``) with the event and a context object like Lambda's. An exception is an outcome
  with ``error`` naming its type and message; the return value goes through a JSON round
  trip, as Lambda's would (a value JSON cannot hold is an error, ``Runtime.MarshalError``).
- `RoutingInvoker`: picks one of the two by the ARN's scheme (``arn:`` or ``local:``).
- `SqsQueueSender`: SQS ``SendMessage`` to a queue given by ARN (its URL is looked up once
  per queue with ``GetQueueUrl``).
"""

from __future__ import annotations

import importlib
import json
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TextIO

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from lakelog.service.invoke import InvokeOutcome, Invoker

if TYPE_CHECKING:
    import boto3

__all__ = [
    "DEFAULT_CONNECTIONS",
    "LOCAL_SCHEME",
    "THROTTLED_CODE",
    "FunctionContext",
    "LambdaInvoker",
    "LocalInvoker",
    "RoutingInvoker",
    "SqsQueueSender",
    "parse_local_arn",
]

LOCAL_SCHEME: Final = "local:"
"""Prefix of an in-process function: ``local:package.module:function``."""
LAMBDA_SCHEME: Final = "arn:"
DEFAULT_INVOKE_TIMEOUT_SECONDS: Final = 300
"""How long `LambdaInvoker` waits for a reply: a function running longer is a timeout."""
THROTTLED_CODE: Final = "TooManyRequestsException"
"""The error code of an ``Invoke`` Lambda refused for want of concurrency (429): the
function did not run (`InvokeOutcome.throttled`)."""
DEFAULT_CONNECTIONS: Final = 16
"""HTTP connections of `LambdaInvoker`'s client: one per concurrent delivery of the
dispatcher (`lakelog.service.dispatch.MAX_CONCURRENT_DELIVERIES`), so none waits for one."""
LOCAL_TIMEOUT_MS: Final = 900_000
"""What `FunctionContext.get_remaining_time_in_millis` counts down from (Lambda's maximum)."""


def _reply_error(payload: Any, kind: str) -> str:
    """``{errorType}: {errorMessage}`` of Lambda's error reply, or what there is of it."""
    if isinstance(payload, Mapping):
        error_type = payload.get("errorType") or kind
        message = payload.get("errorMessage")
        return f"{error_type}: {message}" if message else str(error_type)
    return kind


class LambdaInvoker:
    """Invokes Lambda functions synchronously (``InvocationType=RequestResponse``).

    Parameters
    ----------
    client
        A boto3 Lambda client (typed Any: the Lambda stubs are not a dependency). Make
        it with `LambdaInvoker.client_config`: no retries of its own (a retried ``Invoke``
        would run the function again; the dispatcher retries with backoff) and a read
        timeout as long as the longest function may run.
    """

    def __init__(self, client: Any) -> None:
        self._client = client

    @staticmethod
    def client_config(
        timeout_seconds: int = DEFAULT_INVOKE_TIMEOUT_SECONDS,
        connections: int = DEFAULT_CONNECTIONS,
    ) -> Config:
        """The botocore config a Lambda client of the invoker should have: ``connections``
        invokes may wait at once (the dispatcher's concurrent deliveries)."""
        return Config(
            read_timeout=timeout_seconds,
            connect_timeout=5,
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=connections,
        )

    @classmethod
    def from_session(
        cls,
        session: boto3.Session,
        timeout_seconds: int = DEFAULT_INVOKE_TIMEOUT_SECONDS,
        connections: int = DEFAULT_CONNECTIONS,
    ) -> LambdaInvoker:
        """An invoker on a Lambda client of ``session`` (`client_config`)."""
        config = cls.client_config(timeout_seconds, connections)
        return cls(session.client("lambda", config=config))

    def invoke(self, function_arn: str, event: Mapping[str, Any]) -> InvokeOutcome:
        """Invoke ``function_arn`` with ``event`` and wait for its reply."""
        try:
            response = self._client.invoke(
                FunctionName=function_arn,
                InvocationType="RequestResponse",
                Payload=json.dumps(event).encode(),
            )
            raw = response["Payload"].read() if "Payload" in response else b""
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "ClientError")
            message = f"{code}: {error.get('Message', str(exc))}"
            return InvokeOutcome(error=message, throttled=code == THROTTLED_CODE)
        except BotoCoreError as exc:  # connection refused, read timeout, ...
            return InvokeOutcome(error=f"{type(exc).__name__}: {exc}")
        status = response.get("StatusCode", 0)
        try:
            payload = json.loads(raw) if raw.strip() else None
        except ValueError:
            return InvokeOutcome(error=f"the reply of {function_arn} is not JSON")
        if "FunctionError" in response:
            return InvokeOutcome(payload, _reply_error(payload, response["FunctionError"]))
        if not 200 <= status < 300:
            return InvokeOutcome(payload, f"Invoke answered with status {status}")
        return InvokeOutcome(payload)


@dataclass
class FunctionContext:
    """The context object a ``local:`` function receives: the attributes of Lambda's
    that handlers and Powertools read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 128
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = ""
    deadline: float = field(default_factory=lambda: time.monotonic() + LOCAL_TIMEOUT_MS / 1000)

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds until the (nominal, never enforced) deadline."""
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def parse_local_arn(function_arn: str) -> tuple[str, str]:
    """``(module, function)`` of ``local:package.module:function``.

    Raises
    ------
    ValueError
        ``function_arn`` is not of that form.
    """
    if not function_arn.startswith(LOCAL_SCHEME):
        raise ValueError(f"{function_arn!r} is not local:package.module:function")
    module, _, name = function_arn.removeprefix(LOCAL_SCHEME).rpartition(":")
    parts = module.split(".") if module else []
    if not name.isidentifier() or not parts or not all(p.isidentifier() for p in parts):
        raise ValueError(f"{function_arn!r} is not local:package.module:function")
    return module, name


LocalFunction = Callable[[Any, FunctionContext], Any]


class LocalInvoker:
    """Calls ``local:package.module:function`` functions in this process.

    The module is imported on the first call and kept (an import that fails is tried again
    on the next call, so fixing the module is enough). The function receives a copy of the
    event made through JSON, exactly what Lambda would pass, and a `FunctionContext`.

    Parameters
    ----------
    log
        Where a function that raises (or cannot be loaded) has its traceback printed, as
        Lambda would log it; None prints nothing (the outcome's error still says what).
    """

    def __init__(self, log: TextIO | None = None) -> None:
        self._functions: dict[str, LocalFunction] = {}
        self._lock = threading.Lock()
        self._log = log

    def invoke(self, function_arn: str, event: Mapping[str, Any]) -> InvokeOutcome:
        """Call the function; raise ValueError only for a malformed ``function_arn``."""
        module_name, name = parse_local_arn(function_arn)
        try:
            function = self._function(function_arn, module_name, name)
        except Exception as exc:  # what Lambda reports for a handler it cannot load
            self._report(function_arn, "cannot be loaded")
            return InvokeOutcome(error=f"Runtime.ImportModuleError: {type(exc).__name__}: {exc}")
        context = FunctionContext(function_name=name, invoked_function_arn=function_arn)
        try:
            result = function(json.loads(json.dumps(event)), context)
        except Exception as exc:
            self._report(function_arn, "raised")
            return InvokeOutcome(error=f"{type(exc).__name__}: {exc}")
        try:
            return InvokeOutcome(json.loads(json.dumps(result)))
        except (TypeError, ValueError) as exc:
            return InvokeOutcome(error=f"Runtime.MarshalError: Unable to marshal response: {exc}")

    def _report(self, function_arn: str, what: str) -> None:
        """Print the exception being handled, under a line naming the function."""
        if self._log is not None:
            print(f"lakelog dev: {function_arn} {what}:", file=self._log)
            traceback.print_exc(file=self._log)
            self._log.flush()

    def _function(self, function_arn: str, module_name: str, name: str) -> LocalFunction:
        with self._lock:
            function = self._functions.get(function_arn)
            if function is None:
                found = getattr(importlib.import_module(module_name), name, None)
                if not callable(found):
                    raise AttributeError(f"{module_name} has no function {name!r}")
                function = self._functions[function_arn] = found
            return function


class RoutingInvoker:
    """Invokes each function with the invoker of its ARN's scheme.

    Parameters
    ----------
    lambda_invoker
        For ``arn:`` functions; None where Lambda is not available (``lakelog dev``).
    local_invoker
        For ``local:`` functions; None in a deployment (which refuses them).

    A scheme whose invoker is None is an outcome with an error (the batch is retried and
    finally goes to the on-failure destination); any other ARN is a ValueError.
    """

    def __init__(
        self, lambda_invoker: Invoker | None = None, local_invoker: Invoker | None = None
    ) -> None:
        self._by_scheme = {LAMBDA_SCHEME: lambda_invoker, LOCAL_SCHEME: local_invoker}

    def invoke(self, function_arn: str, event: Mapping[str, Any]) -> InvokeOutcome:
        """Invoke ``function_arn`` through the invoker of its scheme."""
        for scheme, invoker in self._by_scheme.items():
            if function_arn.startswith(scheme):
                if invoker is None:
                    return InvokeOutcome(error=f"{scheme} functions cannot be invoked here")
                return invoker.invoke(function_arn, event)
        raise ValueError(f"{function_arn!r} is neither a Lambda ARN nor local:module:function")


class SqsQueueSender:
    """Sends messages to SQS queues named by ARN (``arn:aws:sqs:region:account:name``).

    Parameters
    ----------
    client
        A boto3 SQS client of the queues' region.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._urls: dict[str, str] = {}

    def send(self, queue_arn: str, body: str) -> None:
        """Send ``body`` to ``queue_arn``; botocore's errors propagate (the dispatcher
        retries the batch).

        Raises
        ------
        ValueError
            ``queue_arn`` is not an SQS queue ARN.
        """
        self._client.send_message(QueueUrl=self._url(queue_arn), MessageBody=body)

    def _url(self, queue_arn: str) -> str:
        url = self._urls.get(queue_arn)
        if url is None:
            parts = queue_arn.split(":")
            if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs" or not parts[5]:
                raise ValueError(f"{queue_arn!r} is not an SQS queue ARN")
            url = self._client.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])[
                "QueueUrl"
            ]
            self._urls[queue_arn] = url
        return url

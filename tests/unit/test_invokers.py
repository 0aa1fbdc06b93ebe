"""The dispatcher's invokers and queue sender: Lambda Invoke (on botocore's Stubber, with
the reply shapes Lambda sends), local: functions in process, SQS on moto."""

from __future__ import annotations

import io
import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import Stubber

from lakelog.api.settings import SettingsError
from lakelog.dispatcher_handler import concurrency_from_env
from lakelog.environment import ENV_DISPATCH_CONCURRENCY
from lakelog.service.dispatch import MAX_CONCURRENT_DELIVERIES, deliveries_for_memory
from lakelog.service.invoke import InvokeOutcome
from lakelog.service.invokers import (
    DEFAULT_CONNECTIONS,
    FunctionContext,
    LambdaInvoker,
    LocalInvoker,
    RoutingInvoker,
    SqsQueueSender,
    parse_local_arn,
)
from tests.unit import local_functions

ARN = "arn:aws:lambda:eu-west-1:123456789012:function:lakelog-dev-orders"
EVENT = {"eventSource": "SelfManagedKafka", "records": {"t-0": [{"offset": 3}]}}


def _body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def _lambda(responses: list[dict[str, Any]]) -> tuple[LambdaInvoker, Stubber]:
    client = boto3.client("lambda", region_name="eu-west-1", config=LambdaInvoker.client_config(60))
    stubber = Stubber(client)
    expected = {
        "FunctionName": ARN,
        "InvocationType": "RequestResponse",
        "Payload": json.dumps(EVENT).encode(),
    }
    for response in responses:
        if "error" in response:
            stubber.add_client_error("invoke", expected_params=expected, **response["error"])
        else:
            stubber.add_response("invoke", response, expected)
    stubber.activate()
    return LambdaInvoker(client), stubber


def test_lambda_reply_is_parsed_json() -> None:
    reply = {"batchItemFailures": [{"itemIdentifier": {"partition": "t-0", "offset": 3}}]}
    invoker, stubber = _lambda(
        [
            {
                "StatusCode": 200,
                "ExecutedVersion": "$LATEST",
                "Payload": _body(json.dumps(reply).encode()),
            }
        ]
    )
    assert invoker.invoke(ARN, EVENT) == InvokeOutcome(payload=reply)
    stubber.assert_no_pending_responses()


def test_lambda_null_or_empty_reply_is_no_payload() -> None:
    invoker, _ = _lambda(
        [
            {"StatusCode": 200, "Payload": _body(b"null")},
            {"StatusCode": 200, "Payload": _body(b"")},
        ]
    )
    assert invoker.invoke(ARN, EVENT) == InvokeOutcome()
    assert invoker.invoke(ARN, EVENT) == InvokeOutcome()


def test_lambda_function_error_is_an_error_with_its_type_and_message() -> None:
    # Given Lambda's reply to a handler that raised: 200, X-Amz-Function-Error: Unhandled
    error = {"errorMessage": "'value'", "errorType": "KeyError", "requestId": "r", "stackTrace": []}
    invoker, _ = _lambda(
        [
            {
                "StatusCode": 200,
                "FunctionError": "Unhandled",
                "Payload": _body(json.dumps(error).encode()),
            }
        ]
    )
    outcome = invoker.invoke(ARN, EVENT)
    assert not outcome.ok
    assert outcome.error == "KeyError: 'value'"
    assert outcome.payload == error


def test_lambda_function_error_without_a_json_body_names_the_header() -> None:
    invoker, _ = _lambda(
        [{"StatusCode": 200, "FunctionError": "Unhandled", "Payload": _body(b"[]")}]
    )
    assert invoker.invoke(ARN, EVENT).error == "Unhandled"


def test_lambda_non_2xx_status_is_an_error() -> None:
    invoker, _ = _lambda([{"StatusCode": 500, "Payload": _body(b"{}")}])
    assert invoker.invoke(ARN, EVENT).error == "Invoke answered with status 500"


def test_lambda_reply_that_is_not_json_is_an_error() -> None:
    invoker, _ = _lambda([{"StatusCode": 200, "Payload": _body(b"<html>")}])
    assert invoker.invoke(ARN, EVENT).error == f"the reply of {ARN} is not JSON"


@pytest.mark.parametrize(
    ("code", "status", "throttled"),
    [
        ("TooManyRequestsException", 429, True),
        ("ServiceException", 500, False),
        ("ResourceNotFoundException", 404, False),
        ("AccessDeniedException", 403, False),
    ],
)
def test_lambda_throttles_and_service_errors_are_errors_so_the_batch_is_retried(
    code: str, status: int, throttled: bool
) -> None:
    invoker, _ = _lambda(
        [
            {
                "error": {
                    "service_error_code": code,
                    "service_message": "no",
                    "http_status_code": status,
                }
            }
        ]
    )
    # A throttle is told apart: the function never ran, so it spends no retry attempt
    assert invoker.invoke(ARN, EVENT) == InvokeOutcome(error=f"{code}: no", throttled=throttled)


def test_lambda_timeout_of_the_call_is_an_error() -> None:
    client = boto3.client("lambda", region_name="eu-west-1")

    def time_out(**kwargs: Any) -> None:
        raise ReadTimeoutError(endpoint_url="https://lambda")

    client.invoke = time_out  # type: ignore[method-assign]
    outcome = LambdaInvoker(client).invoke(ARN, EVENT)
    assert outcome.error is not None
    assert outcome.error.startswith("ReadTimeoutError: ")


def test_lambda_client_config_never_retries_an_invoke() -> None:
    config = LambdaInvoker.client_config(120)
    assert config.retries == {"total_max_attempts": 1, "mode": "standard"}
    assert config.read_timeout == 120


def test_lambda_client_has_a_connection_per_concurrent_delivery() -> None:
    assert DEFAULT_CONNECTIONS == MAX_CONCURRENT_DELIVERIES
    assert LambdaInvoker.client_config().max_pool_connections == DEFAULT_CONNECTIONS
    assert LambdaInvoker.client_config(60, 4).max_pool_connections == 4


@pytest.mark.parametrize(
    ("memory_mb", "deliveries"), [(128, 1), (224, 1), (512, 10), (1024, 16), (1769, 16)]
)
def test_concurrent_deliveries_follow_the_functions_memory(memory_mb: int, deliveries: int) -> None:
    assert deliveries_for_memory(memory_mb) == deliveries <= MAX_CONCURRENT_DELIVERIES


def test_the_dispatch_concurrency_setting_is_a_positive_integer() -> None:
    assert concurrency_from_env({}) is None
    assert concurrency_from_env({ENV_DISPATCH_CONCURRENCY: " "}) is None
    assert concurrency_from_env({ENV_DISPATCH_CONCURRENCY: "10"}) == 10
    for bad in ("0", "-1", "x", "1.5"):
        with pytest.raises(SettingsError, match=ENV_DISPATCH_CONCURRENCY):
            concurrency_from_env({ENV_DISPATCH_CONCURRENCY: bad})


def test_local_function_gets_a_json_copy_of_the_event_and_a_lambda_like_context() -> None:
    local_functions.CALLS.clear()
    event = {"records": {"t-0": [{"offset": 3, "key": None}]}, "n": (1, 2)}
    outcome = LocalInvoker().invoke("local:tests.unit.local_functions:record", event)
    assert outcome == InvokeOutcome(
        payload={"batchItemFailures": [{"itemIdentifier": {"partition": "t-0", "offset": 3}}]}
    )
    [(received, context)] = local_functions.CALLS
    assert received == {"records": {"t-0": [{"offset": 3, "key": None}]}, "n": [1, 2]}
    assert received is not event
    assert isinstance(context, FunctionContext)
    assert context.function_name == "record"
    assert context.invoked_function_arn == "local:tests.unit.local_functions:record"
    assert 0 < context.get_remaining_time_in_millis() <= 900_000
    assert context.aws_request_id


def test_local_function_exception_is_an_error_with_type_and_message() -> None:
    outcome = LocalInvoker().invoke("local:tests.unit.local_functions:explode", EVENT)
    assert outcome == InvokeOutcome(error="KeyError: 'value'")


def test_local_function_exception_is_printed_with_its_traceback_to_the_log() -> None:
    log = io.StringIO()
    invoker = LocalInvoker(log=log)
    invoker.invoke("local:tests.unit.local_functions:explode", EVENT)
    invoker.invoke("local:tests.unit.no_such_module:record", EVENT)
    lines = log.getvalue().splitlines()
    assert lines[0] == "lakelog dev: local:tests.unit.local_functions:explode raised:"
    assert lines[1] == "Traceback (most recent call last):"
    assert "KeyError: 'value'" in lines
    assert "lakelog dev: local:tests.unit.no_such_module:record cannot be loaded:" in lines
    assert lines[-1] == "ModuleNotFoundError: No module named 'tests.unit.no_such_module'"


def test_local_reply_json_cannot_hold_is_a_marshal_error() -> None:
    outcome = LocalInvoker().invoke("local:tests.unit.local_functions:unmarshalable", EVENT)
    assert outcome.error is not None
    assert outcome.error.startswith("Runtime.MarshalError: ")


@pytest.mark.parametrize(
    "arn",
    [
        "local:tests.unit.no_such_module:record",
        "local:tests.unit.local_functions:missing",
        "local:tests.unit.local_functions:NOT_A_FUNCTION",
    ],
)
def test_local_function_that_cannot_be_loaded_is_an_import_error(arn: str) -> None:
    outcome = LocalInvoker().invoke(arn, EVENT)
    assert outcome.error is not None
    assert outcome.error.startswith("Runtime.ImportModuleError: ")


@pytest.mark.parametrize(
    "arn", ["local:", "local:module", "local::f", "local:a..b:f", "local:a.b:", "local:a b:f", ARN]
)
def test_malformed_local_arn_is_the_callers_error(arn: str) -> None:
    with pytest.raises(ValueError, match=r"local:package\.module:function"):
        parse_local_arn(arn)
    if arn.startswith("local:"):
        with pytest.raises(ValueError):
            LocalInvoker().invoke(arn, EVENT)


class _Recording:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def invoke(self, function_arn: str, event: Any) -> InvokeOutcome:
        self.calls.append(function_arn)
        return InvokeOutcome(payload=function_arn)


def test_routing_invoker_picks_by_scheme() -> None:
    remote, local = _Recording(), _Recording()
    invoker = RoutingInvoker(remote, local)
    assert invoker.invoke(ARN, EVENT).payload == ARN
    assert invoker.invoke("local:m:f", EVENT).payload == "local:m:f"
    assert (remote.calls, local.calls) == ([ARN], ["local:m:f"])
    with pytest.raises(ValueError, match="neither"):
        invoker.invoke("https://example.com", EVENT)


def test_routing_invoker_without_an_invoker_for_a_scheme_reports_an_error() -> None:
    deployed = RoutingInvoker(lambda_invoker=_Recording())
    assert deployed.invoke("local:m:f", EVENT) == InvokeOutcome(
        error="local: functions cannot be invoked here"
    )
    dev = RoutingInvoker(local_invoker=_Recording())
    assert dev.invoke(ARN, EVENT) == InvokeOutcome(error="arn: functions cannot be invoked here")


def test_sqs_sender_sends_to_the_queue_the_arn_names(aws: None) -> None:
    client = boto3.client("sqs", region_name="us-east-1")
    url = client.create_queue(QueueName="orders-failures")["QueueUrl"]
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sender = SqsQueueSender(client)
    sender.send(arn, '{"batch": 1}')
    sender.send(arn, '{"batch": 2}')
    received = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in received) == ['{"batch": 1}', '{"batch": 2}']


def test_sqs_sender_refuses_what_is_not_a_queue_arn(aws: None) -> None:
    sender = SqsQueueSender(boto3.client("sqs", region_name="us-east-1"))
    for arn in ("orders", "arn:aws:sns:us-east-1:123456789012:orders", "arn:aws:sqs:us-east-1:1:"):
        with pytest.raises(ValueError, match="not an SQS queue ARN"):
            sender.send(arn, "{}")


def test_sqs_sender_unknown_queue_raises_so_the_batch_is_retried(aws: None) -> None:
    sender = SqsQueueSender(boto3.client("sqs", region_name="us-east-1"))
    with pytest.raises(ClientError):
        sender.send("arn:aws:sqs:us-east-1:123456789012:missing", "{}")

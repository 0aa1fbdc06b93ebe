"""Names, sizes and pinned artefacts shared by every environment of the CDK app.

Everything an operator might tune per deployment lives in the environment modules
(`config.dev`, `config.staging`, `config.prod`); everything here is the same for all of
them: how stacks and functions are named, the Lambda runtime, the managed layers pinned per
region, the environment variables a function receives, and the alarm thresholds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

__all__ = [
    "ALARM_EVALUATION_PERIODS",
    "ALARM_PERIOD_MINUTES",
    "DEFAULT_FUNCTION_TIMEOUT_SECONDS",
    "LAMBDA_ARCHITECTURE",
    "LAMBDA_RUNTIME",
    "MAX_FUNCTION_NAME_LENGTH",
    "POWERTOOLS_LAYER",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_SERVICE_NAME",
    "PROJECT",
    "SDK_FOR_PANDAS_LAYER",
    "SEGMENTS_PREFIX",
    "ManagedLayer",
    "UnsupportedRegionError",
    "resource_prefix",
    "stack_name",
]

PROJECT: Final = "lakelog"
"""First word of every stack, resource and function name."""

SEGMENTS_PREFIX: Final = "segments/"
"""Key prefix of every object lakelog writes (see `lakelog.storage.keys`); grants stop here."""

LAMBDA_RUNTIME: Final = "python3.12"
"""Runtime of every function; both managed layers below are built for it."""

LAMBDA_ARCHITECTURE: Final = "arm64"
"""Graviton: about 20 % cheaper per GB-second than x86_64, and both layers ship arm64 builds."""

MAX_FUNCTION_NAME_LENGTH: Final = 64
"""Lambda's limit on a function name."""

DEFAULT_FUNCTION_TIMEOUT_SECONDS: Final = 30
"""API Gateway gives up on an integration after 30 s, so that is the default; asynchronous
components (the compactor's tasks) may ask for more."""

POWERTOOLS_SERVICE_NAME: Final = PROJECT
POWERTOOLS_METRICS_NAMESPACE: Final = PROJECT


ALARM_PERIOD_MINUTES: Final = 5
"""Length of one alarm evaluation period."""

ALARM_EVALUATION_PERIODS: Final = 1
"""Periods that must breach before an alarm fires (errors are rare; one is news)."""


class UnsupportedRegionError(ValueError):
    """A managed layer has no pinned version in the region an environment deploys to."""


@dataclass(frozen=True, slots=True)
class ManagedLayer:
    """A Lambda layer AWS publishes, pinned to one version per region.

    Parameters
    ----------
    title
        What the layer is, for error messages and docs.
    name
        The layer name inside the publisher's account (arch and runtime are part of it).
    default_account
        The publishing account in most regions.
    versions
        Pinned layer version per region.
    accounts
        Publishing account for the regions where it differs from ``default_account``.
    """

    title: str
    name: str
    default_account: str
    versions: Mapping[str, int]
    accounts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def arn(self, region: str, partition: str = "aws") -> str:
        """The pinned layer version ARN in ``region``.

        Raises
        ------
        UnsupportedRegionError
            If no version is pinned for ``region``.
        """
        try:
            version = self.versions[region]
        except KeyError:
            pinned = ", ".join(sorted(self.versions))
            raise UnsupportedRegionError(
                f"{self.title} ({self.name}) has no pinned version for region {region!r}; "
                f"pinned regions: {pinned}. Look the current version up with "
                f"`aws lambda list-layer-versions --region {region} --layer-name "
                f"arn:{partition}:lambda:{region}:{self.accounts.get(region, self.default_account)}"
                f":layer:{self.name}` and add it to cdk/config/settings.py."
            ) from None
        account = self.accounts.get(region, self.default_account)
        return f"arn:{partition}:lambda:{region}:{account}:layer:{self.name}:{version}"


_COMMERCIAL_REGIONS: Final = (
    "af-south-1",
    "ap-east-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ca-central-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
)

POWERTOOLS_LAYER: Final = ManagedLayer(
    title="Powertools for AWS Lambda (Python) V3",
    name="AWSLambdaPowertoolsPythonV3-python312-arm64",
    default_account="017000801446",
    # Powertools publishes the same version number in every commercial region; 27 is the
    # version the Powertools docs and examples pin (layer built with `[all]` extras, so it
    # carries pydantic v2, pydantic-settings and aws-xray-sdk; boto3 comes from the runtime).
    versions=MappingProxyType(dict.fromkeys(_COMMERCIAL_REGIONS, 27)),
)
"""Powertools (logger, tracer, metrics, event handler, parser) and pydantic v2."""

SDK_FOR_PANDAS_LAYER: Final = ManagedLayer(
    title="AWS SDK for pandas",
    name="AWSSDKPandas-Python312-Arm64",
    default_account="336392948345",
    # Versions differ per region. af-south-1: 26 is AWS SDK for pandas 3.16.1 in the
    # official layer table. The others are versions known to be published (referenced by
    # deployed stacks); confirm the newest before a first deploy to a region, see
    # docs/operations.md ("Before the first deploy").
    versions=MappingProxyType(
        {
            "af-south-1": 26,
            "eu-west-1": 16,
            "us-east-1": 20,
            "us-east-2": 19,
        }
    ),
)
"""pyarrow (with numpy and pandas, which lakelog does not import)."""


def resource_prefix(environment: str) -> str:
    """Prefix of every resource name of ``environment`` (``lakelog-<env>``)."""
    return f"{PROJECT}-{environment}"


def stack_name(environment: str) -> str:
    """CloudFormation stack name of ``environment`` (``lakelog-<env>``)."""
    return f"{PROJECT}-{environment}"

"""What a long-running part of a deployment reads from its environment, parsed once.

`DeploymentSettings` holds what every part needs to build an engine and access control:
the bucket and table names, the default ACL effect and the bootstrap administrators. Each
part (the API function, the Kafka gateway) extends it with its own variables and parses
its environment once at start-up with `DeploymentSettings.from_env`, which fails with one
`SettingsError` naming every variable that is missing or malformed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lakelog.environment import (
    ENV_ADMIN_PRINCIPALS,
    ENV_BUCKET,
    ENV_CATALOG_TABLE,
    ENV_DEFAULT_ACL_EFFECT,
    ENV_ENVIRONMENT,
    ENV_LEDGER_TABLE,
)
from lakelog.storage.keys import ResourceNames
from lakelog.validation import summarize

__all__ = ["DeploymentSettings", "SettingsError"]


class SettingsError(RuntimeError):
    """The environment is missing or malformed (fails the start)."""


class DeploymentSettings(BaseModel):
    """Where a deployment's data lives and who may do what by default.

    Read from the variables `lakelog.environment` names: the bucket and table names, the
    default ACL effect (``allow``|``deny``), the bootstrap administrators (comma-separated
    principal patterns) and the environment's name.
    """

    model_config = ConfigDict(frozen=True)

    VARIABLES: ClassVar[Mapping[str, str]] = {
        "bucket": ENV_BUCKET,
        "ledger_table": ENV_LEDGER_TABLE,
        "catalog_table": ENV_CATALOG_TABLE,
        "default_acl": ENV_DEFAULT_ACL_EFFECT,
        "env": ENV_ENVIRONMENT,
        "admin_principals": ENV_ADMIN_PRINCIPALS,
    }
    """The environment variable of each field."""
    LISTS: ClassVar[frozenset[str]] = frozenset({"admin_principals"})
    """Fields read as comma-separated lists."""
    PART: ClassVar[str] = "deployment"
    """What is configured, for error messages (``invalid API function environment``)."""

    bucket: str = Field(min_length=3)
    ledger_table: str = Field(min_length=3)
    catalog_table: str = Field(min_length=3)
    default_acl: Literal["allow", "deny"] = "deny"
    admin_principals: tuple[str, ...] = ()
    env: str = "dev"

    @property
    def names(self) -> ResourceNames:
        """The bucket and table names."""
        return ResourceNames(self.bucket, self.ledger_table, self.catalog_table)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Self:
        """Parse the environment; raise `SettingsError` naming what is wrong."""
        raw: dict[str, object] = {
            field: environ[name] for field, name in cls.VARIABLES.items() if name in environ
        }
        for listed in cls.LISTS & raw.keys():
            raw[listed] = tuple(p.strip() for p in str(raw[listed]).split(",") if p.strip())
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = summarize(
                [{**err, "loc": (cls.VARIABLES[str(err["loc"][0])],)} for err in exc.errors()]
            )
            raise SettingsError(f"invalid {cls.PART} environment: {problems}") from None

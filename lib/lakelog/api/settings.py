"""Configuration of the API function, parsed once from its environment."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lakelog.environment import (
    ENV_ADMIN_PRINCIPALS,
    ENV_BUCKET,
    ENV_CATALOG_TABLE,
    ENV_DEFAULT_ACL_EFFECT,
    ENV_ENVIRONMENT,
    ENV_LEDGER_TABLE,
    ENV_TRIGGER_FUNCTION_PREFIXES,
)
from lakelog.storage.keys import ResourceNames
from lakelog.validation import summarize

__all__ = ["ApiSettings", "SettingsError"]


class SettingsError(RuntimeError):
    """The function's environment is missing or malformed (fails the cold start)."""


class ApiSettings(BaseModel):
    """What the API function needs to know about its deployment.

    Read from the variables `lakelog.environment` names: the bucket and table names, the
    default ACL effect (``allow``|``deny``), the bootstrap administrators (comma-separated
    principal patterns), the environment's name and the function ARN prefixes topics may
    subscribe (comma-separated; none: any Lambda function, ADR 0015 §1).
    """

    model_config = ConfigDict(frozen=True)

    bucket: str = Field(min_length=3)
    ledger_table: str = Field(min_length=3)
    catalog_table: str = Field(min_length=3)
    default_acl: Literal["allow", "deny"] = "deny"
    admin_principals: tuple[str, ...] = ()
    env: str = "dev"
    function_prefixes: tuple[str, ...] = ()

    @property
    def names(self) -> ResourceNames:
        """The bucket and table names."""
        return ResourceNames(self.bucket, self.ledger_table, self.catalog_table)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ApiSettings:
        """Parse the environment; raise `SettingsError` naming what is wrong."""
        variables = {
            "bucket": ENV_BUCKET,
            "ledger_table": ENV_LEDGER_TABLE,
            "catalog_table": ENV_CATALOG_TABLE,
            "default_acl": ENV_DEFAULT_ACL_EFFECT,
            "env": ENV_ENVIRONMENT,
            "admin_principals": ENV_ADMIN_PRINCIPALS,
            "function_prefixes": ENV_TRIGGER_FUNCTION_PREFIXES,
        }
        raw: dict[str, object] = {
            field: environ[name] for field, name in variables.items() if name in environ
        }
        for listed in ("admin_principals", "function_prefixes"):
            if listed in raw:
                text = str(raw[listed])
                raw[listed] = tuple(p.strip() for p in text.split(",") if p.strip())
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = summarize(
                [{**err, "loc": (variables[str(err["loc"][0])],)} for err in exc.errors()]
            )
            raise SettingsError(f"invalid API function environment: {problems}") from None

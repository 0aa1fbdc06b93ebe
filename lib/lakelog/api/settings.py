"""Configuration of the API function, parsed once from its environment."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lakelog.storage.keys import ResourceNames
from lakelog.validation import summarize

__all__ = ["ApiSettings", "SettingsError"]


class SettingsError(RuntimeError):
    """The function's environment is missing or malformed (fails the cold start)."""


class ApiSettings(BaseModel):
    """What the API function needs to know about its deployment.

    Read from ``LAKELOG_BUCKET``, ``LAKELOG_LEDGER_TABLE``, ``LAKELOG_CATALOG_TABLE``,
    ``LAKELOG_DEFAULT_ACL`` (``allow``|``deny``) and ``LAKELOG_ENV``.
    """

    model_config = ConfigDict(frozen=True)

    bucket: str = Field(min_length=3)
    ledger_table: str = Field(min_length=3)
    catalog_table: str = Field(min_length=3)
    default_acl: Literal["allow", "deny"] = "deny"
    env: str = "dev"

    @property
    def names(self) -> ResourceNames:
        """The bucket and table names."""
        return ResourceNames(self.bucket, self.ledger_table, self.catalog_table)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ApiSettings:
        """Parse the environment; raise `SettingsError` naming what is wrong."""
        raw = {
            "bucket": environ.get("LAKELOG_BUCKET"),
            "ledger_table": environ.get("LAKELOG_LEDGER_TABLE"),
            "catalog_table": environ.get("LAKELOG_CATALOG_TABLE"),
            "default_acl": environ.get("LAKELOG_DEFAULT_ACL", "deny"),
            "env": environ.get("LAKELOG_ENV", "dev"),
        }
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = summarize(
                [{**err, "loc": (str(err["loc"][0]).upper(),)} for err in exc.errors()],
                prefix="LAKELOG_",
            )
            raise SettingsError(f"invalid API function environment: {problems}") from None

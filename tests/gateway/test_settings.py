"""The gateway's deployment settings: parsed once from the environment, failing fast."""

from __future__ import annotations

import pytest

from lakelog.kafka.settings import GatewaySettings, SettingsError
from lakelog.storage.keys import ResourceNames

ENVIRON = {
    "LAKELOG_BUCKET": "lakelog-prod-segments",
    "LAKELOG_LEDGER_TABLE": "lakelog-prod-ledger",
    "LAKELOG_CATALOG_TABLE": "lakelog-prod-catalog",
}


def test_the_environment_names_the_resources_the_default_acl_and_the_admins() -> None:
    settings = GatewaySettings.from_env(
        {
            **ENVIRON,
            "LAKELOG_DEFAULT_ACL_EFFECT": "allow",
            "LAKELOG_ADMIN_PRINCIPALS": " arn:aws:iam::1:role/a , arn:aws:sts::1:assumed-role/b/*,",
            "LAKELOG_ENVIRONMENT": "prod",
            "LAKELOG_TRIGGER_FUNCTION_PREFIXES": "ignored by the gateway",
        }
    )

    assert settings.names == ResourceNames(
        "lakelog-prod-segments", "lakelog-prod-ledger", "lakelog-prod-catalog"
    )
    assert settings.default_acl == "allow"
    assert settings.admin_principals == ("arn:aws:iam::1:role/a", "arn:aws:sts::1:assumed-role/b/*")
    assert settings.env == "prod"


def test_the_default_acl_is_deny() -> None:
    assert GatewaySettings.from_env(ENVIRON).default_acl == "deny"


def test_every_missing_or_malformed_variable_is_named_in_one_error() -> None:
    with pytest.raises(SettingsError) as raised:
        GatewaySettings.from_env(
            {"LAKELOG_BUCKET": "lakelog-prod-segments", "LAKELOG_DEFAULT_ACL_EFFECT": "open"}
        )

    message = str(raised.value)
    assert message.startswith("invalid Kafka gateway environment: ")
    for variable in ("LAKELOG_LEDGER_TABLE", "LAKELOG_CATALOG_TABLE", "LAKELOG_DEFAULT_ACL_EFFECT"):
        assert variable in message
    assert "LAKELOG_BUCKET" not in message

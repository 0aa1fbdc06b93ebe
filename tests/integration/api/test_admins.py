"""Bootstrap administrators: who may write the first rules under a deny default."""

from __future__ import annotations

from collections.abc import Callable

from lakelog import Engine
from lakelog.api import ApiSettings, make_handler
from lakelog.service.acl import AccessControl
from lakelog.storage.ports import AclEntry
from tests.integration.api.conftest import Api

ADMIN = "arn:aws:sts::123456789012:assumed-role/platform-admin/alice"
OTHER = "arn:aws:sts::123456789012:assumed-role/billing/bob"


def test_settings_read_admin_patterns_from_the_environment() -> None:
    settings = ApiSettings.from_env(
        {
            "LAKELOG_BUCKET": "bucket",
            "LAKELOG_LEDGER_TABLE": "ledger",
            "LAKELOG_CATALOG_TABLE": "catalog",
            "LAKELOG_ADMIN_PRINCIPALS": " arn:aws:sts::1:assumed-role/admin/* , root ,",
        }
    )
    assert settings.admin_principals == ("arn:aws:sts::1:assumed-role/admin/*", "root")


def test_bootstrap_admin_holds_admin_even_against_a_deny_rule(engine: Engine) -> None:
    # Given a deny default and a rule that denies everyone admin
    engine.context.catalog.add_acl(AclEntry("*", "*", "deny", frozenset({"admin"})))
    access = AccessControl(
        engine.context.catalog,
        "deny",
        admins=["arn:aws:sts::123456789012:assumed-role/platform-admin/*"],
    )

    # Then the bootstrap admin still administers; others do not; consume is not implied
    assert access.allowed(ADMIN, "admin", "orders")
    assert access.allowed(ADMIN, "admin", "*")
    assert not access.allowed(OTHER, "admin", "orders")
    assert not access.allowed(ADMIN, "consume", "orders")


def test_under_deny_the_bootstrap_admin_creates_topics_and_grants_access(
    api_settings: Callable[[str], ApiSettings], make_engine: Callable[..., Engine]
) -> None:
    # Given the API under a deny default with one bootstrap administrator pattern
    settings = api_settings("deny").model_copy(
        update={"admin_principals": ("arn:aws:sts::123456789012:assumed-role/platform-admin/*",)}
    )
    engine = make_engine(sleep=lambda _seconds: None)
    api = Api(make_handler(settings, engine=engine), engine)

    # When the admin creates a topic and grants another principal produce on it
    created = api.send("create_topic", principal=ADMIN)
    rule = {"principal": OTHER, "topic": "orders", "operations": ["produce"], "effect": "allow"}
    granted = api.send("put_acl", principal=ADMIN, body=rule)

    # Then both succeed, and the other principal can produce but not administer
    assert created.status == 201, created.text
    assert granted.status == 200, granted.text
    assert api.send("produce", principal=OTHER).status == 200
    assert api.send("delete_topic", principal=OTHER).status == 403

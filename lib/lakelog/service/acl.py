"""Access control: per-topic rules for principals, deny wins, a default per environment."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Literal

from lakelog.errors import ForbiddenError, InvalidRequestError
from lakelog.limits import (
    MAX_ACL_RULE_KEY_BYTES,
    MAX_TOPIC_NAME_LENGTH,
    TOPIC_NAME_CHARACTERS,
)
from lakelog.storage.keys import acl_sort_key
from lakelog.storage.ports import AclEntry, CatalogStore

__all__ = ["ACL_CACHE_SECONDS", "OPERATIONS", "AccessControl", "AclEntry", "Effect", "matches"]

OPERATIONS = frozenset({"produce", "consume", "admin"})
ACL_CACHE_SECONDS = 10.0
"""How long a process trusts the rules it read; a changed rule applies everywhere after."""
CLUSTER = "*"
"""The resource name of cluster-wide operations (managing ACLs): admin on ``*``."""


Effect = Literal["allow", "deny"]


def matches(pattern: str, name: str) -> bool:
    """An exact pattern matches itself; ``prefix*`` matches every name starting with prefix."""
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return pattern == name


_TOPIC_PATTERN = re.compile(f"[{TOPIC_NAME_CHARACTERS}]{{0,{MAX_TOPIC_NAME_LENGTH}}}\\*?")
"""A topic name, or a prefix of one followed by ``*``."""


def _check_topic_pattern(pattern: str) -> None:
    """Refuse a topic pattern that no topic can match (``orders,payments``, ``orders ``):
    such a rule would be stored, listed and never apply."""
    if not _TOPIC_PATTERN.fullmatch(pattern) or pattern in (".", ".."):
        raise InvalidRequestError(
            f"topic pattern {pattern!r} can match no topic: topic names are at most "
            f"{MAX_TOPIC_NAME_LENGTH} ASCII letters, digits, '.', '_' and '-'; a pattern is a "
            "name, or a prefix of one ending in '*'"
        )


def _validate(entry: AclEntry) -> AclEntry:
    if entry.effect not in ("allow", "deny"):
        raise InvalidRequestError("effect must be 'allow' or 'deny'")
    if not entry.operations or not entry.operations <= OPERATIONS:
        raise InvalidRequestError(f"operations must be some of {sorted(OPERATIONS)}")
    for name, pattern in (("principal", entry.principal), ("topic", entry.topic)):
        if not pattern or "*" in pattern[:-1]:
            raise InvalidRequestError(
                f"{name} pattern {pattern!r} must be a name or a prefix ending in '*'"
            )
    if "|" in entry.topic:
        raise InvalidRequestError("topic pattern cannot contain '|'")
    if (
        len(acl_sort_key(entry.topic, entry.effect, entry.principal).encode())
        > MAX_ACL_RULE_KEY_BYTES
    ):
        raise InvalidRequestError(
            f"principal and topic patterns together exceed {MAX_ACL_RULE_KEY_BYTES - 8} bytes"
        )
    return entry


class AccessControl:
    """Decides whether a principal may do an operation on a topic.

    A rule matches when its principal and topic patterns match and it lists the operation.
    Any matching deny rule forbids; otherwise any matching allow rule permits; otherwise
    ``default`` decides. Principals matching ``admins`` (bootstrap administrators, set by
    the deployment) always hold ``admin``, whatever the rules say: under a deny default
    someone must be able to write the first rule, and to repair a wrong one.
    """

    def __init__(
        self,
        catalog: CatalogStore,
        default: Effect,
        cache_seconds: float = ACL_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        admins: Iterable[str] = (),
    ) -> None:
        self._catalog = catalog
        self._default = default
        self._admins = tuple(admins)
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._rules: tuple[float, list[AclEntry]] | None = None
        self._lock = threading.Lock()

    def _current_rules(self) -> list[AclEntry]:
        with self._lock:
            cached = self._rules
        if cached and self._clock() - cached[0] < self._cache_seconds:
            return cached[1]
        rules = self._catalog.list_acls()
        with self._lock:
            self._rules = (self._clock(), rules)
        return rules

    def allowed(self, principal: str, operation: str, topic: str) -> bool:
        """Whether ``principal`` may ``operation`` on ``topic``."""
        if operation == "admin" and any(matches(p, principal) for p in self._admins):
            return True
        verdicts = {
            rule.effect
            for rule in self._current_rules()
            if operation in rule.operations
            and matches(rule.principal, principal)
            and matches(rule.topic, topic)
        }
        if "deny" in verdicts:
            return False
        return "allow" in verdicts or self._default == "allow"

    def check(self, principal: str, operation: str, topic: str) -> None:
        """Raise `ForbiddenError` unless ``principal`` may ``operation`` on ``topic``."""
        if not self.allowed(principal, operation, topic):
            raise ForbiddenError(principal, operation, topic)

    def check_cluster_admin(self, principal: str) -> None:
        """Raise `ForbiddenError` unless ``principal`` may manage access rules."""
        self.check(principal, "admin", CLUSTER)

    def visible(self, principal: str, topics: Iterable[str]) -> list[str]:
        """The topics on which ``principal`` may do anything."""
        return [t for t in topics if any(self.allowed(principal, op, t) for op in OPERATIONS)]

    def rules(self) -> list[AclEntry]:
        """Every rule, fresh from the catalog."""
        return self._catalog.list_acls()

    def add(self, entry: AclEntry) -> None:
        """Add a rule (or operations to an existing rule).

        Its topic pattern must be able to match a topic (`remove` takes any pattern, so
        that rules stored before this check can still be removed)."""
        _check_topic_pattern(_validate(entry).topic)
        self._catalog.add_acl(entry)
        self._forget()

    def remove(self, entry: AclEntry) -> bool:
        """Remove operations from a rule; False if there was no such rule."""
        removed = self._catalog.remove_acl(_validate(entry))
        self._forget()
        return removed

    def _forget(self) -> None:
        with self._lock:
            self._rules = None

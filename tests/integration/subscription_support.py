"""What the subscription tests share: a catalog store that runs code at the points of a
subscription's creation where a racing creation or a delivery can come in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lakelog.storage.ports import CatalogStore
from lakelog.types import Subscription

__all__ = ["CatalogHooks"]


class CatalogHooks:
    """A catalog store that runs ``after_check`` once, right after the first read of a
    subscription (creation's check that the name is free), and ``after_put`` once, right
    after a subscription's item is put (before creation writes the group's offsets)."""

    def __init__(
        self,
        inner: CatalogStore,
        after_check: Callable[[], None] | None = None,
        after_put: Callable[[Subscription], None] | None = None,
    ) -> None:
        self._inner = inner
        self._after_check = after_check
        self._after_put = after_put

    def get_subscription(self, topic: str, name: str) -> Subscription | None:
        found = self._inner.get_subscription(topic, name)
        hook, self._after_check = self._after_check, None
        if hook is not None:
            hook()
        return found

    def create_subscription(self, subscription: Subscription) -> bool:
        created = self._inner.create_subscription(subscription)
        hook, self._after_put = self._after_put, None
        if created and hook is not None:
            hook(subscription)
        return created

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

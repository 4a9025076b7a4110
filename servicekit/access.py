"""Who may call a route, declared on the view itself.

Every view carries exactly one of these markers; ``create_service_app`` refuses to start when a
route has none, so a new route cannot ship unprotected by accident.

* ``@public``          anyone (health, public verification, registration)
* ``@roles("a", "b")`` a signed-in caller holding one of the roles; ``@roles()`` any signed-in
* ``@internal``        other services only, with the service secret (never routed by the gateway)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import g

F = TypeVar("F", bound=Callable[..., Any])
MARKER = "_ecourt_access"


@dataclass(frozen=True)
class Access:
    kind: str  # "public" | "roles" | "internal"
    roles: frozenset[str] = frozenset()


def _mark(access: Access) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        setattr(func, MARKER, access)
        return func
    return decorate


public = _mark(Access("public"))
internal = _mark(Access("internal"))


def roles(*names: str) -> Callable[[F], F]:
    return _mark(Access("roles", frozenset(names)))


def access_of(view: Callable[..., Any], method: str) -> Access | None:
    """The marker of a plain view function or of a MethodView's method."""
    return view_attribute(view, method, MARKER)


def view_attribute(view: Callable[..., Any], method: str, name: str) -> Any:
    """An attribute a decorator set on a plain view function or on a MethodView's method."""
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        handler = getattr(view_class, method.lower(), None)
        return getattr(handler, name, None) if handler else None
    return getattr(view, name, None)


def current_claims() -> dict[str, Any]:
    """The verified token claims of the caller (empty on public routes without a token)."""
    return getattr(g, "claims", None) or {}

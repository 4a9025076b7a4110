"""Walking every route of one service's app for RELIABILITY S1/S2, shared by the services'
``tests/test_route_access.py``.

The routes come from ``app.url_map`` (so a route added later is walked the day it is added),
each with the access marker its view declares (``servicekit.access``); the kit's own routes
(health, metrics, the OpenAPI document, static files) are left out, as every service has them
and ``tests/test_api_docs.py`` checks them once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from flask import Flask
from sqlalchemy import func, select

from gateway.routing import DEFAULT_PUBLIC_ROUTES, PublicRoutes
from servicekit.access import Access, access_of
from servicekit.db import Database
from servicekit.tables import audit_trail

#: endpoints of the kit's own blueprints, on every service alike
FRAMEWORK_ENDPOINTS = ("static", "api-docs.", "health.")
_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^:<>]+)>")
_GATEWAY_PUBLIC = PublicRoutes(DEFAULT_PUBLIC_ROUTES)


@dataclass(frozen=True)
class Route:
    """One method of one route: ``rule`` without its converters (``/ledger/<seq>``, not
    ``/ledger/<int(max=…):seq>``), so a test names it as a reader would."""

    method: str
    rule: str
    access: Access

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.rule

    def fits(self, roles: list[str]) -> bool:
        """Whether a caller holding ``roles`` passes the route's role check (a ``@roles()``
        route lets in any signed-in caller; whether they may touch the object is the view's)."""
        return not self.access.roles or bool(self.access.roles.intersection(roles))


def routes(app: Flask) -> list[Route]:
    """Every method of every route of ``app`` but the kit's own, with its access marker. A
    view without one fails here (``create_service_app`` would not have started either)."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(FRAMEWORK_ENDPOINTS):
            continue
        view = app.view_functions[rule.endpoint]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            access = access_of(view, method)
            assert access is not None, f"{method} {rule.rule} declares no access"
            found.append(Route(method, _CONVERTER.sub(r"<\1>", rule.rule), access))
    return found


def url_of(rule: str, ids: Mapping[str, str]) -> str:
    """``rule`` with each ``<name>`` replaced by ``ids[name]``: a real object's id. A name
    without an object fails, so a new route is never called with a made-up id."""
    url = rule
    for name, value in ids.items():
        url = url.replace(f"<{name}>", value)
    assert "<" not in url, f"no test object for {rule}"
    return url


def tampered(token: str) -> str:
    """``token`` (a JWT) with one character of its payload changed: the signature no longer
    matches, everything else is as issued."""
    head, payload, sig = token.split(".")
    return f"{head}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{sig}"


def public_at_gateway(service: str, method: str, url: str) -> bool:
    """Whether the gateway lets ``method url`` of ``service`` through without a token (its
    default allow-list): a route public in the service but not there is not public at all,
    and one public there but not in the service is refused by the service."""
    return _GATEWAY_PUBLIC.is_public(method, f"/api/{service}{url}")


def denials(db: Database, subject: str) -> int:
    """How many refusals about ``subject`` (``document:<id>``) the audit trail holds: a 404
    that hides an object is still a decision on the record (``servicekit.audit.note_denied``)."""
    with db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(audit_trail).where(
            audit_trail.c.subject == subject, audit_trail.c.outcome == "denied")) or 0)

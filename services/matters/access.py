"""Who may see or act on a case in matters: its court's staff, and its own parties.

Anyone else gets 404, never 403: the existence of someone else's case is not revealed.
"""

from __future__ import annotations

from typing import Any

from servicekit.problems import Problem
from servicekit.roles import STAFF_ROLES
from services.matters.models import Application, Case


def is_staff_of(claims: dict[str, Any], court: str) -> bool:
    return bool(STAFF_ROLES.intersection(claims.get("roles") or [])) and \
        claims.get("court") == court


def is_party_of(claims: dict[str, Any], case: Case) -> bool:
    sub = claims.get("sub")
    return bool(sub) and any(p.account_id == sub for p in case.parties)


def not_found(what: str = "case") -> Problem:
    return Problem(404, "not-found", f"no such {what}")


def ensure_sees_case(claims: dict[str, Any], case: Case | None) -> Case:
    if case is None or not (is_staff_of(claims, case.court) or is_party_of(claims, case)):
        raise not_found()
    return case


def ensure_sees_application(claims: dict[str, Any], app: Application | None) -> Application:
    if app is None:
        raise not_found("application")
    if is_staff_of(claims, app.court) or app.applicant_account_id == claims.get("sub"):
        return app
    raise not_found("application")


def ensure_staff_of(claims: dict[str, Any], court: str, roles: set[str] | None = None) -> None:
    """Staff of ``court`` (holding one of ``roles`` if given); other staff get 403."""
    if not is_staff_of(claims, court):
        raise not_found("application")
    if roles and not roles.intersection(claims.get("roles") or []):
        raise Problem(403, "forbidden", "your role may not do this")

"""Who may see or act on a case in matters — the one place for the rule:

* the staff of the case's court see the case and all of its applications;
* a party (their account is on the case) sees the case and the applications of their own party;
* a lawyer sees the case and the applications of the parties they are bound to — only through
  an **approved** binding (``bindings``, status approved) and only while their token carries the
  ``lawyer`` role. A pending or rejected request gives nothing.

Anyone else gets 404, never 403: the existence of someone else's case is not revealed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, or_, true

from servicekit import audit
from servicekit.problems import Problem
from servicekit.roles import LAWYER, STAFF_ROLES
from services.matters.models import Application, Case, CaseParty


def is_staff_of(claims: dict[str, Any], court: str) -> bool:
    return bool(STAFF_ROLES.intersection(claims.get("roles") or [])) and \
        claims.get("court") == court


def is_lawyer(claims: dict[str, Any]) -> bool:
    return LAWYER in (claims.get("roles") or [])


def own_parties(claims: dict[str, Any], case: Case) -> list[CaseParty]:
    """The parties of ``case`` that are the caller themself."""
    sub = claims.get("sub")
    return [p for p in case.parties if sub and p.account_id == sub]


def represented_parties(claims: dict[str, Any], case: Case) -> list[CaseParty]:
    """The parties of ``case`` the caller represents through an approved binding."""
    sub = claims.get("sub")
    if not sub or not is_lawyer(claims):
        return []
    bound = {b.party_id for b in case.approved_bindings if b.lawyer_account_id == sub}
    return [p for p in case.parties if p.id in bound]


def acting_parties(claims: dict[str, Any], case: Case) -> list[CaseParty]:
    """The parties the caller may see and act for: themself, then those they represent."""
    parties = own_parties(claims, case)
    return parties + [p for p in represented_parties(claims, case) if p not in parties]


def is_party_of(claims: dict[str, Any], case: Case) -> bool:
    return bool(own_parties(claims, case))


def sees_case(claims: dict[str, Any], case: Case) -> bool:
    return is_staff_of(claims, case.court) or bool(acting_parties(claims, case))


def party_of_application(app: Application, case: Case) -> str | None:
    """The id of the party an application belongs to (rows from before 0003 carry no
    ``party_id``: then the party whose account applied)."""
    if app.party_id:
        return app.party_id
    return next((p.id for p in case.parties if p.account_id
                 and p.account_id == app.applicant_account_id), None)


def sees_application(claims: dict[str, Any], app: Application, case: Case) -> bool:
    if is_staff_of(claims, app.court):
        return True
    party = party_of_application(app, case)
    return party is not None and party in {p.id for p in acting_parties(claims, case)}


def applications_seen(claims: dict[str, Any], case: Case) -> ColumnElement[bool]:
    """``sees_application`` as a WHERE clause over ``case``'s applications, so a list is paged
    and counted in SQL under the same rule (a row without ``party_id`` belongs to the first
    party whose account applied, as ``party_of_application`` says)."""
    if is_staff_of(claims, case.court):
        return true()
    acting = {p.id for p in acting_parties(claims, case)}
    first_party: dict[str, str] = {}
    for p in case.parties:
        if p.account_id:
            first_party.setdefault(p.account_id, p.id)
    accounts = [account for account, party in first_party.items() if party in acting]
    return or_(Application.party_id.in_(acting),
               and_(Application.party_id.is_(None),
                    Application.applicant_account_id.in_(accounts)))


def not_found(what: str = "case") -> Problem:
    return Problem(404, "not-found", f"no such {what}")


def ensure_sees_case(claims: dict[str, Any], case: Case | None) -> Case:
    if case is None:
        raise not_found()
    if not sees_case(claims, case):
        audit.note_denied(f"case:{case.id}")
        raise not_found()
    return case


def ensure_sees_application(claims: dict[str, Any], app: Application | None,
                            case: Case | None) -> Application:
    if app is None or case is None:
        raise not_found("application")
    if not sees_application(claims, app, case):
        audit.note_denied(f"application:{app.id}")
        raise not_found("application")
    return app


def ensure_staff_of(claims: dict[str, Any], court: str, roles: set[str] | None = None,
                    what: str = "application", subject: str | None = None) -> None:
    """Staff of ``court`` (holding one of ``roles`` if given); other staff get 403. The audit
    trail names ``subject`` (the object acted on), else the court."""
    if not is_staff_of(claims, court):
        audit.note_denied(subject or f"court:{court}")
        raise not_found(what)
    if roles and not roles.intersection(claims.get("roles") or []):
        audit.note_denied(subject or f"court:{court}")
        raise Problem(403, "forbidden", "your role may not do this")


def ensure_judge_or_clerk_of(claims: dict[str, Any], case: Case, subject: str,
                             detail: str = "only the presiding judge or the clerk of the case "
                                           "may do this", clerk: bool = True) -> None:
    """The caller is the case's own presiding judge or clerk (after ``ensure_staff_of``: other
    staff of the court get 403, the case being no secret to them). The audit trail names
    ``subject``. ``clerk=False``: the presiding judge alone (the judge's decision)."""
    sub = claims.get("sub")
    own = (case.judge_account_id, case.clerk_account_id) if clerk else (case.judge_account_id,)
    if not sub or sub not in own:
        audit.note_denied(subject)
        raise Problem(403, "forbidden", detail)

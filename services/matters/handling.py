"""The court handling an application: the specialist's review, the transfer to the presiding
judge, the judge's decision, regeneration of a failed certificate, and publishing (引入).

Who publishes and regenerates [000]: the litigation-service specialist works the court's
middle-office list (中台待办服务, every case of the court) and publishes and regenerates there
[000 一.4, 一.6]; the presiding judge does so from the back-office list of their own cases
(网上待办服务, 承办法官) [000 二.2, 二.3], the clerk assisting the panel of that case. So a
specialist of the court may act on any of its applications, a judge or a clerk only on their
own case's; another judge or clerk of the court gets 403 (the application is no secret to the
court's staff), staff of another court 404.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session

from servicekit.db import Database, legal_now
from servicekit.problems import Problem
from servicekit.roles import CLERK, JUDGE, SPECIALIST
from servicekit.versions import Precondition
from services.matters import events
from services.matters.access import ensure_judge_or_clerk_of, ensure_staff_of
from services.matters.cases import load_case
from services.matters.domain import (
    ACCEPTED,
    AUTO_NOTE,
    BACK,
    BACK_OFFICE,
    COMPLETED,
    DOC_FAILED,
    DOC_GENERATING,
    DOC_ISSUED,
    SUBMITTED,
    require_status,
)
from services.matters.models import Application, Case

MIDDLE_OFFICE_ROLES = {SPECIALIST}
BACK_OFFICE_ROLES = {JUDGE}
PUBLISHERS = {SPECIALIST, JUDGE, CLERK}

#: a check of the caller's relation to the case, beyond their role (raises a Problem)
Relation = Callable[[dict[str, Any], Case, str], None]


def _publisher_of(claims: dict[str, Any], case: Case, subject: str) -> None:
    """A specialist of the court, court-wide; a judge or a clerk only for their own case."""
    if SPECIALIST in (claims.get("roles") or []):
        return
    ensure_judge_or_clerk_of(claims, case, subject, detail=(
        "only a litigation-service specialist, or the presiding judge or the clerk of the "
        "case, may publish or regenerate its certificate"))


def _presiding_judge_of(claims: dict[str, Any], case: Case, subject: str) -> None:
    """The case's own presiding judge decides in the back office [000 二]; the clerk assists
    the panel and does not decide, another judge of the court gets 403."""
    ensure_judge_or_clerk_of(claims, case, subject, clerk=False,
                             detail="only the presiding judge of the case decides")


@contextmanager
def _acting(db: Database, claims: dict[str, Any], application_id: str, roles: set[str],
            if_match: Precondition, relation: Relation | None = None,
            ) -> Iterator[tuple[Session, Application, Case]]:
    """Load the application for an update by its court's staff (holding one of ``roles``, in
    the ``relation`` to its case if given), checking its version: only once the caller may
    act on it, so a stranger's 403/404 comes first (428 without If-Match, 412 if stale)."""
    with db.transaction() as session:
        app = session.get(Application, application_id, with_for_update=True)
        if app is None:
            raise Problem(404, "not-found", "no such application")
        subject = f"application:{app.id}"
        ensure_staff_of(claims, app.court, roles, subject=subject)
        case = load_case(session, app.case_id)
        if relation is not None:
            relation(claims, case, subject)
        if_match.decide(str(app.version), "application")
        yield session, app, case
        app.version += 1


def _generate(session: Session, app: Application, case: Case) -> None:
    if case.effective_date is None:
        raise Problem(409, "effective-date-unknown",
                      "the effective date is unknown: transfer to the presiding judge")
    app.document_state = DOC_GENERATING
    app.document_failure = None
    app.document_request_id = events.certificate_requested(session, app, case)


def review(db: Database, claims: dict[str, Any], application_id: str, body: dict[str, Any],
           if_match: Precondition) -> Application:
    """The specialist's 自行办理: issue ("是") or transfer to the back-office judge."""
    with _acting(db, claims, application_id, MIDDLE_OFFICE_ROLES, if_match) as (s, app, case):
        require_status(app.status, (SUBMITTED,), "review")
        app.handler_name = body.get("handler_name") or claims.get("name") or claims["sub"]
        app.handled_at = legal_now()
        if body.get("needs_judge"):
            app.status, app.stage = BACK_OFFICE, BACK
            app.handling_note = body.get("note") or "转后台法官办理"
            events.transferred(s, app, case)
            return app
        if not body.get("issuable"):
            raise Problem(422, "validation-error", "choose issuable or needs_judge",
                          errors={"json": {"issuable": ["must be true unless transferred"]}})
        app.handling_note = body.get("note") or AUTO_NOTE
        app.status = ACCEPTED
        _generate(s, app, case)
    return app


def judge_decides(db: Database, claims: dict[str, Any], application_id: str,
                  body: dict[str, Any], if_match: Precondition) -> Application:
    """The presiding judge records opinion, result, handler, date and the effective date;
    saving requests the certificate (and updates the case's effective date)."""
    with _acting(db, claims, application_id, BACK_OFFICE_ROLES, if_match,
                 _presiding_judge_of) as (s, app, case):
        require_status(app.status, (BACK_OFFICE,), "decide")
        app.judge_opinion = body["opinion"]
        app.judge_result_note = body["result_note"]
        app.judge_handler = body["handler_name"]
        app.judge_decided_on = body["decided_on"]
        case.effective_date = body["effective_date"]
        app.status = ACCEPTED
        _generate(s, app, case)
    return app


def regenerate(db: Database, claims: dict[str, Any], application_id: str,
               if_match: Precondition) -> Application:
    """重新生成文书: only after a failed generation, so two valid certificates never exist."""
    with _acting(db, claims, application_id, PUBLISHERS, if_match,
                 _publisher_of) as (s, app, case):
        if app.document_state != DOC_FAILED:
            raise Problem(409, "invalid-state", "only a failed generation can be regenerated",
                          document_state=app.document_state)
        _generate(s, app, case)
    return app


def publish(db: Database, claims: dict[str, Any], application_id: str,
            if_match: Precondition) -> Application:
    """引入: make the issued certificate visible in the party's case space."""
    with _acting(db, claims, application_id, PUBLISHERS, if_match,
                 _publisher_of) as (s, app, case):
        require_status(app.status, (ACCEPTED,), "publish")
        if app.document_state != DOC_ISSUED:
            raise Problem(409, "invalid-state", "the certificate has not been issued yet",
                          document_state=app.document_state)
        app.status = COMPLETED
        app.published_at = legal_now()
        events.completed(s, app, case)
    return app

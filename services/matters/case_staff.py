"""The staff a registered case names must exist: its presiding judge an active judge of the
case's court, its clerk (when named) an active clerk of that court.

Everything a case owes its parties reaches them through these two people: the to-dos, the
SMS when a party applies, the urging and the escalation ladder that starts at them. A case
whose judge is a typo or a disabled account would silently reach nobody (DESIGN: a bounce
becomes a task for staff, never silence), so registration asks identity first
(``GET /internal/staff``, names and roles only) and refuses what identity does not know.

The department is not compared: identity's department is an administrative attribute of the
account (optional, and it changes when a judge moves division, while their cases stay), the
case's department comes from the trial system; neither makes a reminder reach nobody.

Asked before the transaction that writes the case, so no database lock is held across the
call; the client's timeout bounds it (distributed tier), and an identity that cannot answer
makes the registration a retryable 503 — never accepted unchecked.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol
from urllib.parse import urlencode

from servicekit.clients import InternalClient, ServiceUnavailable
from servicekit.problems import Problem
from servicekit.roles import CLERK, JUDGE
from servicekit.service import Runtime

log = logging.getLogger(__name__)

#: ``Runtime.extras`` key of the directory registration asks (identity's, unless a test sets one)
EXTRAS_KEY = "matters.staff_directory"
#: what a case names, and the role each must hold in the case's court
NAMED_STAFF = (("judge_account_id", JUDGE), ("clerk_account_id", CLERK))
RETRY_AFTER_SECONDS = 5


class StaffDirectory(Protocol):
    """identity as registration asks it (``IdentityDirectory``; a stand-in in tests)."""

    def active_staff(self, court: str, role: str) -> set[str]:
        """The account ids of the court's active staff holding ``role``; raises
        ``ServiceUnavailable`` when the answer cannot be had."""

    def accounts(self, ids: list[str]) -> dict[str, dict[str, str]]:
        """Each existing account of ``ids`` by id: its ``kind``, ``name`` and ``status``
        (``case_parties``); raises ``ServiceUnavailable`` when the answer cannot be had."""


class IdentityDirectory:
    """identity's ``/internal/staff``, through the service's internal client (in-process when
    embedded, over HTTP with the client's timeout when distributed)."""

    def __init__(self, client: InternalClient) -> None:
        self.client = client

    def active_staff(self, court: str, role: str) -> set[str]:
        query = urlencode({"court": court, "role": role})
        found = self.client.get_json("identity", f"/internal/staff?{query}")
        try:
            return {str(s["account_id"]) for s in found["items"]}
        except (KeyError, TypeError) as exc:
            raise ServiceUnavailable("identity answered /internal/staff unreadably") from exc

    def accounts(self, ids: list[str]) -> dict[str, dict[str, str]]:
        found = self.client.get_json("identity",
                                     f"/internal/accounts?{urlencode({'id': ids}, doseq=True)}")
        try:
            return {str(a["account_id"]): {k: str(a[k]) for k in ("kind", "name", "status")}
                    for a in found["items"]}
        except (KeyError, TypeError) as exc:
            raise ServiceUnavailable("identity answered /internal/accounts unreadably") from exc


def directory(rt: Runtime) -> StaffDirectory:
    """The runtime's directory: a test's (``EXTRAS_KEY``) or identity through ``rt.clients``."""
    found = rt.extras.get(EXTRAS_KEY)
    if found is not None:
        return found  # type: ignore[return-value]
    return IdentityDirectory(rt.clients)  # type: ignore[arg-type]


def check_named_staff(staff: StaffDirectory, body: dict[str, Any]) -> None:
    """Refuse (422 ``unknown-staff``, naming each wrong field) a case whose judge or clerk is
    not an active member of its court with that role; 503 when identity cannot tell."""
    court = body["court"]
    errors: dict[str, list[str]] = {}
    try:
        for field, role in NAMED_STAFF:
            account_id = body.get(field)
            if account_id and account_id not in staff.active_staff(court, role):
                errors[field] = [f"not an active {role} of court {court}"]
    except ServiceUnavailable as exc:
        raise unavailable(court, "the judge and clerk", exc) from exc
    if errors:
        raise Problem(422, "unknown-staff",
                      "the case names a judge or clerk who is not active staff of its court "
                      "with that role", errors={"json": errors})


def unavailable(court: str, checking: str, exc: ServiceUnavailable) -> Problem:
    """The 503 of a registration that identity could not check (nothing written; the
    Idempotency-Key is released by the kit, so the same request may be sent again)."""
    log.warning("case registration refused: identity unavailable",
                extra={"court": court, "reason": str(exc)})
    return Problem(503, "service-unavailable",
                   f"the directory cannot be reached to check {checking}; nothing was "
                   "registered: retry later", headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

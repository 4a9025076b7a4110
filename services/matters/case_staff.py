"""The staff a registered case names must exist: its presiding judge an active judge of the
case's court, its clerk (when named) an active clerk of that court.

Everything a case owes its parties reaches them through these two people: the to-dos, the
SMS when a party applies, the urging and the escalation ladder that starts at them. A case
whose judge is a typo or a disabled account would silently reach nobody (DESIGN: a bounce
becomes a task for staff, never silence), so registration asks identity first (below) and
refuses what identity does not know.

The department is not compared: identity's department is an administrative attribute of the
account (optional, and it changes when a judge moves division, while their cases stay), the
case's department comes from the trial system; neither makes a reminder reach nobody.

The judge, the clerk and the parties' accounts (``case_parties``) are asked about in one call
(``GET /internal/accounts``: each account's kind, name, status, court and roles), not by
listing the court's staff: a court has hundreds of staff and the trial system registers its
cases one by one. Asked before the transaction that writes the case, so no database lock is
held across the call; the client's timeout bounds it (distributed tier), and an identity that
cannot answer makes the registration a retryable 503 — never accepted unchecked.
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
#: identity's account kind and status of staff a case may name
STAFF_KIND, ACTIVE = "staff", "active"
#: the most ids identity answers in one ask (its ``MAX_ACCOUNTS_ASKED``); more go in pieces
IDS_PER_ASK = 50

#: an account as identity tells it: ``kind``, ``name``, ``status`` (str), ``court`` (str or
#: None) and ``roles`` (list of str)
Account = dict[str, Any]


class StaffDirectory(Protocol):
    """identity as registration asks it (``IdentityDirectory``; a stand-in in tests)."""

    def accounts(self, ids: list[str]) -> dict[str, Account]:
        """Each existing account of ``ids`` by id; raises ``ServiceUnavailable`` when the
        answer cannot be had."""


class IdentityDirectory:
    """identity's ``/internal/accounts``, through the service's internal client (in-process
    when embedded, over HTTP with the client's timeout when distributed)."""

    def __init__(self, client: InternalClient) -> None:
        self.client = client

    def accounts(self, ids: list[str]) -> dict[str, Account]:
        out: dict[str, Account] = {}
        for start in range(0, len(ids), IDS_PER_ASK):
            query = urlencode({"id": ids[start:start + IDS_PER_ASK]}, doseq=True)
            found = self.client.get_json("identity", f"/internal/accounts?{query}")
            try:
                out.update({str(a["account_id"]): {
                    "kind": str(a["kind"]), "name": str(a["name"]), "status": str(a["status"]),
                    "court": a.get("court"), "roles": [str(r) for r in a.get("roles") or []],
                } for a in found["items"]})
            except (KeyError, TypeError, AttributeError) as exc:
                raise ServiceUnavailable(
                    "identity answered /internal/accounts unreadably") from exc
        return out


def directory(rt: Runtime) -> StaffDirectory:
    """The runtime's directory: a test's (``EXTRAS_KEY``) or identity through ``rt.clients``."""
    found = rt.extras.get(EXTRAS_KEY)
    if found is not None:
        return found  # type: ignore[return-value]
    return IdentityDirectory(rt.clients)  # type: ignore[arg-type]


def named_accounts(directory: StaffDirectory, body: dict[str, Any]) -> dict[str, Account]:
    """identity's word on every account the case names — its judge, its clerk, its parties'
    — asked once; 503 when identity cannot tell."""
    ids = {body.get(field) for field, _ in NAMED_STAFF}
    ids.update(p.get("account_id") for p in body["parties"])
    ids.discard(None)
    ids.discard("")
    if not ids:
        return {}
    try:
        return directory.accounts(sorted(ids))  # type: ignore[arg-type]
    except ServiceUnavailable as exc:
        raise unavailable(body["court"], "the accounts the case names", exc) from exc


def check_named_staff(found: dict[str, Account], body: dict[str, Any]) -> None:
    """Refuse (422 ``unknown-staff``, naming each wrong field) a case whose judge or clerk is
    not an active member of its court with that role (``found``: ``named_accounts``)."""
    court = body["court"]
    errors: dict[str, list[str]] = {}
    for field, role in NAMED_STAFF:
        account_id = body.get(field)
        if account_id and not _is_active_staff(found.get(account_id), court, role):
            errors[field] = [f"not an active {role} of court {court}"]
    if errors:
        raise Problem(422, "unknown-staff",
                      "the case names a judge or clerk who is not active staff of its court "
                      "with that role", errors={"json": errors})


def _is_active_staff(account: Account | None, court: str, role: str) -> bool:
    return (account is not None and account["kind"] == STAFF_KIND
            and account["status"] == ACTIVE and account["court"] == court
            and role in account["roles"])


def unavailable(court: str, checking: str, exc: ServiceUnavailable) -> Problem:
    """The 503 of a registration that identity could not check (nothing written; the
    Idempotency-Key is released by the kit, so the same request may be sent again)."""
    log.warning("case registration refused: identity unavailable",
                extra={"court": court, "reason": str(exc)})
    return Problem(503, "service-unavailable",
                   f"the directory cannot be reached to check {checking}; nothing was "
                   "registered: retry later", headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

"""The accounts a registered case gives its parties must be those parties.

A party's ``account_id`` is who will see the case, apply in it, be served in it and be told of
it by SMS; a wrong id — a typo that happens to exist, the account of someone else — shows the
case to a stranger (DESIGN: a party sees only their own cases) and leaves the party blind. So
registration asks identity (``GET /internal/accounts``, in the one call that checks the
judge and clerk too: ``case_staff.named_accounts``) before its transaction, and refuses an id
that names no account, an account that cannot be a party (court staff), one disabled or
rejected, or one whose real name is not the party's name as the trial system recorded it. A
party with no ``account_id`` (one who has not registered) is not checked.

Names are compared as identity and the trial system write them, after trimming spaces at the
ends and making full-width brackets plain (``（``/``）``), which both write either way in the
names of companies; nothing fuzzier: a near miss is refused and a person looks at it.
"""

from __future__ import annotations

from typing import Any

from servicekit.problems import Problem
from services.matters.case_staff import Account
from services.matters.domain import PLAIN_BRACKETS

#: identity's account kinds that can be a party: a person, a company (court staff cannot)
PARTY_KINDS = frozenset({"individual", "organization"})
#: statuses of an account that may be given a case: in use, or a company awaiting its court's
#: review (it signs in once approved, and finds its cases there)
USABLE = frozenset({"active", "pending_review"})


def same_name(a: str, b: str) -> bool:
    return a.strip().translate(PLAIN_BRACKETS) == b.strip().translate(PLAIN_BRACKETS)


def check_party_accounts(found: dict[str, Account], body: dict[str, Any]) -> None:
    """Refuse (422 ``unknown-party-account``, naming each wrong party's ``account_id``) a case
    giving a party an account that is not theirs (``found``: ``case_staff.named_accounts``)."""
    named = {i: p["account_id"] for i, p in enumerate(body["parties"]) if p.get("account_id")}
    errors: dict[str, dict[str, list[str]]] = {}
    for i, account_id in named.items():
        account = found.get(account_id)
        if (account is None or account["kind"] not in PARTY_KINDS
                or account["status"] not in USABLE
                or not same_name(account["name"], body["parties"][i]["name"])):
            errors[str(i)] = {"account_id": ["not an account of a party of this name"]}
    if errors:
        raise Problem(422, "unknown-party-account",
                      "a party is given an account that is not that party's: no account, "
                      "not a person or company in use, or another name",
                      errors={"json": {"parties": errors}})

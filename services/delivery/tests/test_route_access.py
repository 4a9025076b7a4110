"""RELIABILITY S1/S2 on every route of delivery, walked from ``app.url_map`` (a route added
later is walked the day it is added).

Nothing of delivery is public: an inbox is its addressee's alone. Every route is listed in
``PROTECTED`` with the caller who rightly gets in (a route not listed fails), and is called on
a real notice in a party's inbox: no token, an expired and a tampered token get 401; a party
of another case, a lawyer with no binding, staff of another court and court staff of the
addressee's own court (no role reads someone else's inbox) never get 2xx on the notice nor
5xx anywhere: 404 on the notice, exactly as for one that does not exist, and their own inbox,
without it. Nobody but the addressee signs for it: after them all it is still unread. The
addressee does get in, so the walk cannot pass by refusing everyone.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from services.delivery.tests.conftest import Inbox
from tests.route_walk import Route, denials, public_at_gateway, routes, tampered, url_of

COURT, OTHER_COURT = "粤01", "粤02"
PUBLIC: set[tuple[str, str]] = set()
#: every route, and who rightly gets in: the notice's addressee
PROTECTED = {("GET", "/inbox"): "addressee",
             ("POST", "/inbox/<notification_id>/read"): "addressee"}
#: a notice's routes: anyone but its addressee gets 404, as for no notice at all
HIDDEN = {("POST", "/inbox/<notification_id>/read")}
#: the caller's own inbox: 200 to anyone signed in, with nothing of the addressee's
LISTS = {("GET", "/inbox")}
BAD_TOKENS = ("no token", "expired", "tampered")
REFUSED = (*BAD_TOKENS, "party of another case", "lawyer without binding",
           "staff of another court", "court staff")


def _notice(inbox: Inbox) -> tuple[str, str]:
    """A notice in a party's inbox, and one in another party's (so the stranger's own inbox
    is not empty by chance): (addressee, the notice's id)."""
    addressee = str(uuid.uuid4())
    notice = inbox.notify(addressee, title="您的生效证明申请已办结")
    inbox.notify(str(uuid.uuid4()), title="另一当事人的通知")
    return addressee, notice


def _headers(inbox: Inbox, caller: str, addressee: str) -> dict[str, str]:
    if caller == "no token":
        return {}
    if caller == "expired":
        return inbox.token(addressee, ttl=-120)
    if caller == "tampered":
        token = inbox.token(addressee)["Authorization"].removeprefix("Bearer ")
        return {"Authorization": f"Bearer {tampered(token)}"}
    stranger = str(uuid.uuid4())
    return {"addressee": inbox.token(addressee),
            "party of another case": inbox.token(stranger),
            "lawyer without binding": inbox.token(stranger, "lawyer"),
            "staff of another court": inbox.token(
                stranger, "judge", "clerk", "specialist", "court_admin", court=OTHER_COURT),
            "court staff": inbox.token(stranger, "judge", "clerk", "specialist",
                                       "court_admin", court=COURT)}[caller]


def _call(inbox: Inbox, route: Route, notice: str, headers: dict[str, str]) -> Any:
    url = url_of(route.rule, {"notification_id": notice})
    return inbox.client.open(url, method=route.method, headers=headers)


def test_every_route_is_listed_and_none_is_public(inbox: Inbox) -> None:
    """A new route fails here until it is listed with who rightly gets in, and so walked by
    the tests below (or, if it is meant for anyone, until a public list says so). The gateway
    lets none of them through without a token either."""
    walked = routes(inbox.client.application)
    assert {r.key for r in walked} == PUBLIC | PROTECTED.keys()
    assert {r.key for r in walked if r.access.kind == "public"} == PUBLIC
    at_gateway = {r.key for r in walked if public_at_gateway(
        "delivery", r.method, url_of(r.rule, {"notification_id": str(uuid.uuid4())}))}
    assert at_gateway == PUBLIC


def test_the_addressee_gets_in(inbox: Inbox) -> None:
    addressee, notice = _notice(inbox)
    headers = _headers(inbox, "addressee", addressee)
    answers = {r.key: _call(inbox, r, notice, headers)
               for r in routes(inbox.client.application)}
    assert answers.keys() == PROTECTED.keys()
    assert all(resp.status_code == 200 for resp in answers.values()), answers
    assert [n["id"] for n in answers[("GET", "/inbox")].get_json()["items"]] == [notice]
    signed = answers[("POST", "/inbox/<notification_id>/read")].get_json()
    assert signed["id"] == notice and signed["read_at"] is not None


@pytest.mark.parametrize("caller", REFUSED)
def test_every_route_refuses_who_must_not_get_in(inbox: Inbox, caller: str) -> None:
    addressee, notice = _notice(inbox)
    headers = _headers(inbox, caller, addressee)
    leaks, hidden = [], 0
    for route in routes(inbox.client.application):
        resp = _call(inbox, route, notice, headers)
        status = resp.status_code
        if caller in BAD_TOKENS:
            ok = status == 401
        elif route.key in HIDDEN:
            ok = status == 404 and resp.content_type == "application/problem+json"
            hidden += 1
        elif route.key in LISTS:
            ok = status == 200 and notice not in resp.get_data(as_text=True)
        else:
            ok = status in (403, 404)
        if not ok:
            leaks.append((route.method, route.rule, status))
    assert leaks == [], leaks
    assert denials(inbox.rt.db, f"delivery:{notice}") == hidden  # each 404 on record
    mine, _ = inbox.get(addressee)
    assert mine["unread"] == 1 and mine["items"][0]["read_at"] is None  # no one signed for it

"""RELIABILITY S1/S2 on every route of documents, walked from ``app.url_map`` (a route added
later is walked the day it is added).

Every route is either public by design (``PUBLIC``: verifying a document by its code or by
the PDF itself, the issuance log's head and entries for witnesses) or signed-in
(``PROTECTED``, each with who rightly gets in); a route in neither list fails. On every
signed-in route, no token, an expired and a tampered token get 401; a party of another case,
a lawyer with no binding (not among the document's viewers), the applicant of a document not
yet published and staff of another court never get 2xx nor 5xx: 403 where their role does not
fit the route, 404 on a document (exactly as for one that does not exist, and on the audit
trail all the same), and a list of their own court's with nothing of this one; the court's
seal is as it was. The rightful callers do get in, so the walk cannot pass by refusing
everyone; the public routes answer without a token (at the gateway too) and name no one.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from services.documents.tests.conftest import COURT, SEAL, Harness, certificate_request, completed
from tests.route_walk import Route, denials, public_at_gateway, routes, tampered, url_of

OTHER_COURT = "粤02"
PUBLIC = {("GET", "/verify/<code>"), ("POST", "/verify"), ("GET", "/ledger"),
          ("GET", "/ledger/<seq>")}
#: every signed-in route and the callers who rightly get in (``_Objects.callers``)
PROTECTED = {
    ("POST", "/seals"): ("court admin",),
    ("GET", "/seals/<court>"): ("staff of the court",),
    ("GET", "/documents"): ("staff of the court",),
    ("GET", "/documents/<document_id>"): ("staff of the court", "applicant", "bound lawyer"),
    ("GET", "/documents/<document_id>/pdf"): ("staff of the court", "applicant",
                                              "bound lawyer"),
}
#: routes of a document: anyone who may not read it gets 404, as for no document at all
HIDDEN = {("GET", "/documents/<document_id>"), ("GET", "/documents/<document_id>/pdf")}
#: lists of the caller's own court: 200 to staff of another court, with nothing of this one
LISTS = {("GET", "/documents")}
BAD_TOKENS = ("no token", "expired", "tampered")
REFUSED = (*BAD_TOKENS, "party of another case", "lawyer without binding",
           "applicant before publication", "staff of another court",
           "staff of the court, not its admin")


@dataclass
class Caller:
    """A token's headers and roles, and the objects its calls name (``document_id`` of a
    document it must not read, unless it rightly may)."""

    headers: dict[str, str]
    roles: list[str]
    ids: dict[str, str] = field(default_factory=dict)


@dataclass
class _Objects:
    """Real objects of court 粤01: a certificate issued and published to its applicant and a
    bound lawyer, and one issued but not yet published."""

    h: Harness
    ids: dict[str, str]
    application_id: str
    applicant: str
    lawyer: str
    unpublished: tuple[str, str]  # (document id, its applicant)
    sha256: str

    def token(self, *roles: str, court: str | None = COURT, sub: str | None = None,
              ttl: int = 900) -> dict[str, str]:
        claims: dict[str, Any] = {"sub": sub or str(uuid.uuid4()), "roles": list(roles)}
        if court is not None:
            claims["court"] = court
        return {"Authorization": f"Bearer {self.h.key.sign(claims, ttl=ttl)}"}

    def callers(self) -> dict[str, Caller]:
        staff_here = self.token("clerk")["Authorization"].removeprefix("Bearer ")
        unpublished, applicant = self.unpublished
        people: dict[str, tuple[tuple[str, ...], str | None, str | None]] = {
            "party of another case": (("party",), None, None),
            "lawyer without binding": (("lawyer",), None, None),
            "applicant before publication": (("party",), None, applicant),
            "staff of another court": (("judge", "clerk", "specialist", "court_admin"),
                                       OTHER_COURT, None),
            "staff of the court, not its admin": (("judge",), COURT, None),
            "court admin": (("court_admin",), COURT, None),
            "staff of the court": (("clerk",), COURT, None),
            "applicant": (("party",), None, self.applicant),
            "bound lawyer": (("lawyer",), None, self.lawyer),
        }
        callers = {name: Caller(self.token(*roles, court=court, sub=sub), list(roles))
                   for name, (roles, court, sub) in people.items()}
        callers["applicant before publication"].ids = {"document_id": unpublished}
        callers.update({
            "no token": Caller({}, []),
            "expired": Caller(self.token("clerk", ttl=-120), ["clerk"]),
            "tampered": Caller({"Authorization": f"Bearer {tampered(staff_here)}"}, ["clerk"]),
        })
        return callers

    def shows_its_object(self, route: Route, resp: Any) -> bool:
        """Whether ``resp`` (a 200) is this test's object: the seal of 粤01, the document
        (or in the list), its PDF byte for byte."""
        if route.key == ("GET", "/documents/<document_id>/pdf"):
            return hashlib.sha256(resp.data).hexdigest() == self.sha256
        body = resp.get_json()
        if route.rule.startswith("/seals"):
            return bool(body["court"] == COURT)
        return self.ids["document_id"] in resp.get_data(as_text=True)

    def call(self, route: Route, caller: Caller) -> Any:
        """``route`` on the objects, with a valid body: the access check answers, not
        validation (and the seal's current ETag, so the precondition does not either)."""
        url = url_of(route.rule, {**self.ids, **caller.ids})
        headers = dict(caller.headers)
        if route.key == ("POST", "/seals"):
            current = self.h.client.get(f"/seals/{COURT}", headers=self.token("clerk"))
            headers["If-Match"] = current.headers["ETag"]
            return self.h.client.post(url, headers=headers, json=SEAL)
        if route.key == ("GET", "/documents"):
            return self.h.client.get(url, headers=headers,
                                     query_string={"application_id": self.application_id})
        return self.h.client.open(url, method=route.method, headers=headers)


@pytest.fixture
def objects(harness: Harness) -> _Objects:
    request, issued = harness.issue_certificate()
    lawyer = str(uuid.uuid4())
    harness.deliver("matters.application.completed", completed(issued, request, [lawyer]))
    other = certificate_request()
    harness.deliver("matters.certificate.requested", other)
    [unpublished] = [e["data"]["document_id"] for e in harness.emitted(
        "documents.document.issued") if e["data"]["application_id"] == other["application_id"]]
    data = issued["data"]
    return _Objects(harness, {"document_id": data["document_id"], "court": COURT,
                              "code": data["code"], "seq": "1"},
                    request["application_id"], request["applicant_account_id"], lawyer,
                    (unpublished, other["applicant_account_id"]), data["sha256"])


def test_every_route_is_public_by_design_or_signed_in(objects: _Objects) -> None:
    """A new route fails here until it is listed: public (and meant to be), or signed-in
    with the callers who rightly get in, and so walked by the tests below. The gateway agrees
    on which is which."""
    walked = routes(objects.h.client.application)
    assert {r.key for r in walked} == PUBLIC | PROTECTED.keys()
    assert {r.key for r in walked if r.access.kind == "public"} == PUBLIC
    at_gateway = {r.key for r in walked if public_at_gateway(
        "documents", r.method, url_of(r.rule, objects.ids))}
    assert at_gateway == PUBLIC


def test_the_public_routes_answer_anyone_and_name_no_one(objects: _Objects) -> None:
    h, ids = objects.h, objects.ids
    pdf = h.docs.blobs.get(objects.sha256)  # the issued file, as its holder has it
    answers = {
        ("GET", "/verify/<code>"): h.client.get(url_of("/verify/<code>", ids),
                                                headers={"Accept": "application/json"}),
        ("POST", "/verify"): h.client.post("/verify", content_type="multipart/form-data",
                                           data={"file": (io.BytesIO(pdf), "c.pdf")}),
        ("GET", "/ledger"): h.client.get("/ledger"),
        ("GET", "/ledger/<seq>"): h.client.get(url_of("/ledger/<seq>", ids)),
    }
    assert answers.keys() == PUBLIC
    private = (ids["document_id"], objects.application_id, objects.applicant, objects.lawyer)
    for key, resp in answers.items():
        assert resp.status_code == 200, (key, resp.get_json())
        assert not any(value in resp.get_data(as_text=True) for value in private), key
    assert answers[("POST", "/verify")].get_json()["result"] == "authentic"
    assert answers[("GET", "/ledger")].get_json()["entries"] == 2


def test_the_rightful_callers_get_in(objects: _Objects) -> None:
    """Each signed-in route lets in who it is for, so the refusals below are the access
    check's and not a route that answers no one."""
    callers = objects.callers()
    walked = [r for r in routes(objects.h.client.application) if r.key in PROTECTED]
    assert {r.key for r in walked} == PROTECTED.keys()
    refused = []
    for route in walked:
        for name in PROTECTED[route.key]:
            resp = objects.call(route, callers[name])
            if resp.status_code != 200 or not objects.shows_its_object(route, resp):
                refused.append((route.method, route.rule, name, resp.status_code))
    assert refused == []


@pytest.mark.parametrize("caller", REFUSED)
def test_every_signed_in_route_refuses_who_must_not_get_in(objects: _Objects,
                                                           caller: str) -> None:
    """``caller`` on every signed-in route: refused, each hidden object's refusal on the
    record, and nothing changed (the seal they tried to replace is the one registered)."""
    who = objects.callers()[caller]
    seal = objects.h.client.get(f"/seals/{COURT}", headers=objects.token("clerk"))
    walked = [r for r in routes(objects.h.client.application) if r.key not in PUBLIC]
    if caller == "staff of the court, not its admin":  # elsewhere they rightly get in
        walked = [r for r in walked if not r.fits(who.roles)]
        assert walked, "no route their role does not fit"
    leaks, hidden = [], 0
    for route in walked:
        resp = objects.call(route, who)
        status = resp.status_code
        if caller in BAD_TOKENS:
            ok = status == 401
        elif not route.fits(who.roles):
            ok = status == 403
        elif route.key in HIDDEN:
            ok = status == 404 and resp.content_type == "application/problem+json"
            hidden += 1
        elif route.key in LISTS:
            ok = status == 200 and objects.ids["document_id"] not in resp.get_data(as_text=True)
        else:
            ok = status in (403, 404)
        if not ok:
            leaks.append((route.method, route.rule, status))
    assert leaks == [], leaks
    document = who.ids.get("document_id", objects.ids["document_id"])
    assert denials(objects.h.rt.db, f"document:{document}") == hidden  # each 404 on record
    after = objects.h.client.get(f"/seals/{COURT}", headers=objects.token("clerk"))
    assert after.headers["ETag"] == seal.headers["ETag"]

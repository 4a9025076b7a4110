"""Lawyer–case binding: request → approve → the lawyer sees the case and applies for the
party; rejection; the clerk's direct binding; who may decide; the letter upload; escalation;
and every event against its contract."""

from __future__ import annotations

import io
import json
import re
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from servicekit.db import utcnow
from services.matters.escalation import escalate_overdue
from services.matters.models import Application, Binding, CaseParty
from services.matters.tests.conftest import COURT, OTHER_COURT, PDF, Harness, case_number

APPLY = {"kind": "effectiveness_certificate", "reason": "办理强制执行", "use": "向执行法院提交"}


def _requested(h: Harness, case: dict[str, Any]) -> dict[str, Any]:
    resp = h.ask(case["case_number"])
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def test_requested_then_approved_the_lawyer_sees_the_case_and_applies_for_the_party(
        harness: Harness) -> None:
    h = harness
    case = h.case()
    # before any binding: nothing
    assert h.client.get(f"/cases/{case['id']}", headers=h.lawyer()).status_code == 404
    binding = _requested(h, case)
    assert re.fullmatch(r"\(\d{4}\)粤01绑定第\d+号", binding["service_number"])
    assert binding["status"] == "pending" and binding["remaining"].startswith("剩余")
    assert binding["letter"]["content_type"] == "application/pdf"
    [event] = h.emitted("matters.binding.requested")
    assert event["data"]["notify_account_ids"] == [h.ids["judge"], h.ids["clerk"]]
    assert event["data"]["party_name"] == "黄添强" and event["data"]["lawyer_name"] == "李律师"

    todo = h.client.get("/bindings?status=pending", headers=h.staff("clerk")).get_json()
    assert [r["id"] for r in todo["items"]] == [binding["id"]]
    assert todo["items"][0]["remaining"].startswith("剩余")
    letter = h.client.get(binding["letter"]["download_url"].removeprefix("/api/matters"),
                          headers=h.staff("judge"))
    assert letter.status_code == 200 and letter.data == PDF

    # pending is not enough
    assert h.client.get(f"/cases/{case['id']}", headers=h.lawyer()).status_code == 404
    assert h.client.post(f"/cases/{case['id']}/applications", headers=h.lawyer(),
                         json=APPLY).status_code == 404

    approved = h.client.post(f"/bindings/{binding['id']}/approve", headers={
        **h.staff("judge"), **h.if_match(f"/bindings/{binding['id']}")})
    assert approved.status_code == 200 and approved.get_json()["status"] == "approved"
    [event] = h.emitted("matters.binding.approved")
    assert event["data"]["party_account_id"] is None and event["data"]["method"] == "request"
    assert h.client.post(f"/bindings/{binding['id']}/approve", headers={
        **h.staff("judge"), **h.if_match(f"/bindings/{binding['id']}")}).status_code == 409

    assert h.client.get(f"/cases/{case['id']}", headers=h.lawyer()).status_code == 200
    assert case["id"] in [c["id"] for c in h.client.get("/cases", headers=h.lawyer()).get_json()]
    resp = h.client.post(f"/cases/{case['id']}/applications", headers=h.lawyer(), json=APPLY)
    assert resp.status_code == 201, resp.get_json()
    app = resp.get_json()
    assert app["applicant_name"] == "黄添强"  # the party applies, the lawyer submitted it
    # a party the lawyer does not represent
    refused = h.client.post(f"/cases/{case['id']}/applications", headers=h.lawyer(),
                            json={**APPLY, "party_name": "周俊雄"})
    assert refused.status_code == 422
    # the plaintiff's own application is not the defendant's lawyer's business
    own = h.client.post(f"/cases/{case['id']}/applications", headers=h.party(), json=APPLY)
    assert own.status_code == 201
    seen = h.client.get(f"/cases/{case['id']}/applications", headers=h.lawyer()).get_json()
    assert [a["id"] for a in seen] == [app["id"]]
    assert h.client.get(f"/applications/{own.get_json()['id']}",
                        headers=h.lawyer()).status_code == 404
    assert h.client.get(f"/applications/{app['id']}", headers=h.lawyer()).status_code == 200
    # and the plaintiff does not see the defendant's application
    assert h.client.get(f"/applications/{app['id']}", headers=h.party()).status_code == 404

    # published certificate: the bound lawyer may download it
    from services.matters.models import Application

    with h.rt.db.transaction() as s:
        row = s.get(Application, app["id"])
        assert row is not None and row.submitted_by_account_id == h.ids["lawyer"]
        row.status, row.document_state, row.document_id = "accepted", "issued", "doc-1"
    done = h.client.post(f"/applications/{app['id']}/publish", headers={
        **h.staff("clerk"), **h.if_match(f"/applications/{app['id']}")})
    assert done.status_code == 200, done.get_json()
    [completed] = h.emitted("matters.application.completed")
    assert h.ids["lawyer"] in completed["data"]["viewer_account_ids"]
    mine = h.client.get(f"/applications/{app['id']}", headers=h.lawyer()).get_json()
    assert mine["document"]["download_url"]


def test_rejected_with_a_reason_the_lawyer_still_gets_404(harness: Harness) -> None:
    h = harness
    case = h.case()
    binding = _requested(h, case)
    clerk = {**h.staff("clerk"), **h.if_match(f"/bindings/{binding['id']}")}
    assert h.client.post(f"/bindings/{binding['id']}/reject", headers=clerk,
                         json={}).status_code == 422  # the reason is required
    resp = h.client.post(f"/bindings/{binding['id']}/reject", headers=clerk,
                         json={"reason": "授权委托书未加盖律所公章"})
    assert resp.status_code == 200 and resp.get_json()["status_label"] == "已驳回"
    [event] = h.emitted("matters.binding.rejected")
    assert event["data"]["reason"] == "授权委托书未加盖律所公章"
    for url in (f"/cases/{case['id']}", f"/cases/{case['id']}/applications"):
        assert h.client.get(url, headers=h.lawyer()).status_code == 404
    assert case["id"] not in [c["id"] for c in h.client.get("/cases",
                                                           headers=h.lawyer()).get_json()]
    # the lawyer sees their own request and why it was refused
    mine = h.client.get(f"/bindings/{binding['id']}", headers=h.lawyer()).get_json()
    assert mine["reason"] == "授权委托书未加盖律所公章"


def test_the_clerk_binds_a_verified_lawyer_directly(harness: Harness) -> None:
    h = harness
    case = h.case()
    other = h.verify_lawyer(name="王大状", law_firm="广州天河律师事务所")
    found = h.client.get("/lawyers?q=天河", headers=h.staff("clerk")).get_json()
    assert [lw["account_id"] for lw in found["items"]] == [other]
    assert h.client.get("/lawyers?q=天河", headers=h.lawyer()).status_code == 403
    body = {"lawyer_account_id": other, "party_name": "周俊雄"}
    assert h.client.post(f"/cases/{case['id']}/lawyers", headers=h.staff("judge"),
                         json=body).status_code == 403  # clerk only
    assert h.client.post(f"/cases/{case['id']}/lawyers",
                         headers=h.token("clerk", court=OTHER_COURT),
                         json=body).status_code == 404
    assert h.client.post(f"/cases/{case['id']}/lawyers", headers=h.staff("clerk"),
                         json={**body, "party_name": "无此人"}).status_code == 422
    resp = h.client.post(f"/cases/{case['id']}/lawyers", headers=h.staff("clerk"), json=body)
    assert resp.status_code == 201 and resp.get_json()["status"] == "approved"
    [event] = h.emitted("matters.binding.approved")
    assert event["data"]["method"] == "clerk"
    assert event["data"]["party_account_id"] == h.ids["plaintiff"]
    assert h.client.post(f"/cases/{case['id']}/lawyers", headers=h.staff("clerk"),
                         json=body).status_code == 409
    assert h.client.get(f"/cases/{case['id']}", headers=h.lawyer(other)).status_code == 200


def test_only_the_cases_own_clerk_binds_directly(harness: Harness) -> None:
    """Direct binding asks for the same relation to the case as deciding a request: another
    clerk of the same court gets the 403 an unrelated judge gets on approve (failed before:
    any clerk of the court could bind any lawyer to any of its cases)."""
    h = harness
    case = h.case()
    body = {"lawyer_account_id": h.ids["lawyer"], "party_name": "黄添强"}
    stranger = h.token("clerk", sub="clerk-of-another-case")
    refused = h.client.post(f"/cases/{case['id']}/lawyers", headers=stranger, json=body)
    assert refused.status_code == 403, refused.get_json()
    [denied] = h.denials(f"case:{case['id']}")
    assert (denied.action, denied.actor) == ("access.denied", "clerk-of-another-case")
    assert h.emitted("matters.binding.approved") == []
    assert h.client.get(f"/cases/{case['id']}", headers=h.lawyer()).status_code == 404
    # the same answer as deciding a request of that case
    binding = _requested(h, case)
    assert h.client.post(f"/bindings/{binding['id']}/approve",
                         headers=stranger).status_code == 403
    assert len(h.denials(f"binding:{binding['id']}")) == 1
    # the case's own clerk may: the pending request is approved by it
    resp = h.client.post(f"/cases/{case['id']}/lawyers", headers=h.staff("clerk"), json=body)
    assert resp.status_code == 201 and resp.get_json()["id"] == binding["id"]
    assert h.client.get(f"/cases/{case['id']}", headers=h.lawyer()).status_code == 200


def _case_in(reply: dict[str, Any]) -> tuple[Any, Any]:
    return reply["case_id"], reply["parties_label"]


def test_a_pending_or_rejected_request_tells_the_lawyer_nothing_of_the_case(
        harness: Harness) -> None:
    """The reply to a request holds what the lawyer supplied, not the case's id or its
    parties, until approved; staff see all (failed before: every reply named every party)."""
    h = harness
    case, other = h.case(), h.case()
    pending = _requested(h, case)
    assert _case_in(pending) == (None, None)
    assert (pending["case_number"], pending["party_name"]) == (case["case_number"], "黄添强")
    assert _case_in(h.client.get(f"/bindings/{pending['id']}",
                                 headers=h.lawyer()).get_json()) == (None, None)
    rejected = _requested(h, other)
    assert h.client.post(f"/bindings/{rejected['id']}/reject", headers={
        **h.staff("clerk"), **h.if_match(f"/bindings/{rejected['id']}")},
        json={"reason": "授权委托书未加盖律所公章"}).status_code == 200
    assert _case_in(h.client.get(f"/bindings/{rejected['id']}",
                                 headers=h.lawyer()).get_json()) == (None, None)
    mine = h.client.get("/bindings", headers=h.lawyer()).get_json()["items"]
    assert {_case_in(b) for b in mine} == {(None, None)}
    assert "周俊雄" not in str(mine)
    # the court's staff see the case and its parties, whatever the status
    for url in (f"/bindings/{pending['id']}", f"/bindings/{rejected['id']}"):
        seen = h.client.get(url, headers=h.staff("clerk")).get_json()
        assert seen["case_id"] in (case["id"], other["id"])
        assert seen["parties_label"] == "原告:周俊雄;被告:黄添强"
    # approved: the lawyer sees the case, so the reply names it
    approved = h.client.post(f"/bindings/{pending['id']}/approve", headers={
        **h.staff("judge"), **h.if_match(f"/bindings/{pending['id']}")})
    assert approved.status_code == 200
    assert _case_in(h.client.get(f"/bindings/{pending['id']}", headers=h.lawyer()).get_json()) \
        == (case["id"], "原告:周俊雄;被告:黄添强")


def test_someone_elses_binding_is_a_404_and_a_recorded_denial(harness: Harness) -> None:
    """Another lawyer reading a request or its letter gets the 404 of a missing one, and each
    refusal names the binding on the audit trail (failed before: nothing was recorded)."""
    h = harness
    binding = _requested(h, h.case())
    other = h.lawyer(h.verify_lawyer(name="王大状"))
    for url in (f"/bindings/{binding['id']}", f"/bindings/{binding['id']}/letter"):
        assert h.client.get(url, headers=other).status_code == 404
    assert h.client.get("/bindings/no-such-binding", headers=other).status_code == 404
    denied = h.denials(f"binding:{binding['id']}")
    assert [(d.action, json.loads(d.detail)["status"]) for d in denied] == [
        ("access.denied", 404), ("access.denied", 404)]
    assert len(h.denials("binding:no-such-binding")) == 0


def test_who_may_decide(harness: Harness) -> None:
    h = harness
    case = h.case()
    binding = _requested(h, case)
    url = f"/bindings/{binding['id']}/approve"
    assert h.client.post(url, headers=h.party()).status_code == 403  # a party
    assert h.client.post(url, headers=h.lawyer()).status_code == 403  # the lawyer themself
    assert h.client.post(url, headers=h.token("judge", court=OTHER_COURT)).status_code == 404
    assert h.client.get(f"/bindings/{binding['id']}",
                        headers=h.token("judge", court=OTHER_COURT)).status_code == 404
    assert h.client.post(url, headers=h.token("judge")).status_code == 403  # not this case's
    assert h.client.post(url, headers={**h.staff("judge"),
                                       **h.if_match(f"/bindings/{binding['id']}")},
                         json={}).status_code == 200


def test_unknown_case_unknown_party_and_unverified_lawyer(harness: Harness) -> None:
    h = harness
    case = h.case()
    unknown_case = h.ask("(2021)粤01民初999999号")
    unknown_party = h.ask(case["case_number"], party_name="无此人")
    assert unknown_case.status_code == unknown_party.status_code == 404
    assert unknown_case.get_json()["detail"] == unknown_party.get_json()["detail"]
    assert h.ask("not a number").status_code == 422
    assert h.ask(case["case_number"], headers=h.lawyer("unverified")).status_code == 403
    assert h.ask(case["case_number"], headers=h.party()).status_code == 403
    assert h.ask(case["case_number"]).status_code == 201
    assert h.ask(case["case_number"]).status_code == 409  # asked already


def test_the_letter_upload_is_checked(harness: Harness, monkeypatch: Any) -> None:
    h = harness
    case = h.case()
    wrong = h.ask(case["case_number"], data=b"MZ\x90\x00 not a letter", filename="a.pdf")
    assert wrong.status_code == 415
    mismatch = h.ask(case["case_number"], data=b"\x89PNG\r\n\x1a\n" + b"0" * 20,
                     mimetype="application/pdf")
    assert mismatch.status_code == 415
    trick = h.ask(case["case_number"], filename="../../etc/passwd.pdf")
    assert trick.status_code == 422
    assert h.ask(case["case_number"], filename="C:\\letter.pdf").status_code == 422
    from servicekit import uploads

    monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", 1024)
    monkeypatch.setattr(uploads.read_upload, "__kwdefaults__",
                        {**uploads.read_upload.__kwdefaults__, "max_bytes": 1024})
    big = h.ask(case["case_number"], data=PDF + b"0" * 2048)
    assert big.status_code == 413
    assert h.emitted("matters.binding.requested") == []
    assert h.client.get("/bindings", headers=h.staff("clerk")).get_json()["total"] == 0


def test_an_overdue_binding_climbs_the_ladder_one_level_at_a_time(harness: Harness) -> None:
    h = harness
    case = h.case()
    binding = _requested(h, case)
    from datetime import datetime

    due = datetime.fromisoformat(binding["deadline"])
    assert escalate_overdue(h.rt.db, due - timedelta(hours=1)) == 0
    for moment in (due + timedelta(hours=1), due + timedelta(days=3, hours=1),
                   due + timedelta(days=7, hours=1)):
        assert escalate_overdue(h.rt.db, moment) == 1
        assert escalate_overdue(h.rt.db, moment) == 0  # each level once
    assert escalate_overdue(h.rt.db, due + timedelta(days=30)) == 0
    urged = h.emitted("matters.application.overdue")
    assert [e["data"]["level"] for e in urged] == ["handler", "division_head", "president"]
    assert {e["data"]["kind"] for e in urged} == {"lawyer_binding"}
    assert urged[0]["data"]["binding_id"] == binding["id"]
    assert urged[0]["data"]["handler_account_ids"] == [h.ids["judge"], h.ids["clerk"]]
    # a decided request is no longer urged
    other = h.case()
    late = _requested(h, other)
    assert h.client.post(f"/bindings/{late['id']}/approve", headers={
        **h.staff("clerk"), **h.if_match(f"/bindings/{late['id']}")}).status_code == 200
    assert escalate_overdue(h.rt.db, utcnow() + timedelta(days=40)) == 0


def test_staff_see_only_their_courts_requests(harness: Harness) -> None:
    h = harness
    _requested(h, h.case())
    assert h.client.get("/bindings?status=pending",
                        headers=h.token("clerk", court=OTHER_COURT)).get_json()["total"] == 0
    assert h.client.get("/bindings", headers=h.party()).status_code == 403
    assert h.client.get("/bindings", headers=h.lawyer()).get_json()["total"] == 1
    assert h.client.get("/bindings", headers=h.lawyer("someone")).get_json()["total"] == 0
    assert COURT == "粤01"


def _case_with_two_named(h: Harness, name: str,
                         roles: tuple[str, str] = ("plaintiff", "defendant")) -> dict[str, Any]:
    """A case whose two parties (of ``roles``: a plaintiff and a defendant unless said) share
    ``name``, neither with an account."""
    resp = h.client.post("/cases", headers=h.token("specialist"), json={
        "case_number": case_number(COURT), "court": COURT, "court_name": "广州市中级人民法院",
        "cause": "民间借贷纠纷", "department": "民一庭",
        "judge_account_id": h.staff_id("judge"), "clerk_account_id": h.staff_id("clerk"),
        "parties": [{"name": name, "role": role, "account_id": None} for role in roles]})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def _bound_role(h: Harness, binding_id: str) -> str:
    with h.rt.db.transaction() as session:
        binding = session.get(Binding, binding_id)
        assert binding is not None
        party = session.get(CaseParty, binding.party_id)
        assert party is not None
        return party.role


def test_two_parties_of_one_name_the_lawyer_says_which(harness: Harness) -> None:
    """A plaintiff and a defendant both named 张三: the request used to bind the lawyer to the
    first of them, whichever side the lawyer acts for. Without a role it is now a 422 asking
    for one, and nothing is kept; with one, the lawyer is bound to that side."""
    h = harness
    case = _case_with_two_named(h, "张三")
    unsure = h.ask(case["case_number"], party_name="张三")
    assert unsure.status_code == 422, unsure.get_json()
    assert "原告、被告" in unsure.get_json()["errors"]["form"]["party_role"][0]
    assert h.client.get("/bindings", headers=h.lawyer()).get_json()["items"] == []
    resp = h.client.post("/bindings", headers=h.lawyer(), content_type="multipart/form-data",
                         data={"case_number": case["case_number"], "party_name": "张三",
                               "party_role": "defendant",
                               "letter": (io.BytesIO(PDF), "授权委托书.pdf", "application/pdf")})
    assert resp.status_code == 201, resp.get_json()
    assert _bound_role(h, resp.get_json()["id"]) == "defendant"


def test_two_parties_of_one_name_the_clerk_says_which(harness: Harness) -> None:
    h = harness
    case = _case_with_two_named(h, "张三")
    url, body = f"/cases/{case['id']}/lawyers", {"lawyer_account_id": h.ids["lawyer"],
                                                 "party_name": "张三"}
    unsure = h.client.post(url, headers=h.staff("clerk"), json=body)
    assert unsure.status_code == 422, unsure.get_json()
    assert "party_role" in unsure.get_json()["errors"]["json"]
    resp = h.client.post(url, headers=h.staff("clerk"), json={**body, "party_role": "plaintiff"})
    assert resp.status_code == 201, resp.get_json()
    assert _bound_role(h, resp.get_json()["id"]) == "plaintiff"
    wrong = h.client.post(url, headers=h.staff("clerk"), json={**body, "party_role": "third_party"})
    assert wrong.status_code == 422  # no third party of that name


def test_a_lawyer_search_takes_percent_and_underscore_as_typed(harness: Harness) -> None:
    """``q`` went into LIKE as it was: ``_`` or ``%`` matched every lawyer."""
    h = harness
    h.verify_lawyer(name="王大状", law_firm="广州天河律师事务所")
    h.verify_lawyer(name="陈律师", law_firm="广东100%律师事务所")
    clerk = h.staff("clerk")
    for q, firms in (("_", []), ("%", ["广东100%律师事务所"]), ("天河", ["广州天河律师事务所"])):
        found = h.client.get("/lawyers", headers=clerk, query_string={"q": q}).get_json()
        assert [lw["law_firm"] for lw in found["items"]] == firms, q


def test_two_parties_of_one_name_and_role_are_never_guessed_between(harness: Harness) -> None:
    """Two plaintiffs both 张三: neither the name nor the role tells them apart, so neither a
    lawyer's request nor the clerk's binding picks the first of them; nothing is kept. The
    clerk is told to name the party by id; the lawyer, who cannot see the case, to ask the
    court."""
    h = harness
    case = _case_with_two_named(h, "张三", ("plaintiff", "plaintiff"))
    unsure = h.ask(case["case_number"], party_name="张三")  # no role: the role would not do
    assert "ask the court" in unsure.get_json()["errors"]["form"]["party_name"][0]
    asked = h.client.post("/bindings", headers=h.lawyer(), content_type="multipart/form-data",
                          data={"case_number": case["case_number"], "party_name": "张三",
                                "party_role": "plaintiff",
                                "letter": (io.BytesIO(PDF), "授权委托书.pdf", "application/pdf")})
    assert asked.status_code == 422, asked.get_json()
    assert "cannot tell them apart" in asked.get_json()["errors"]["form"]["party_name"][0]
    bound = h.client.post(f"/cases/{case['id']}/lawyers", headers=h.staff("clerk"), json={
        "lawyer_account_id": h.ids["lawyer"], "party_name": "张三", "party_role": "plaintiff"})
    assert bound.status_code == 422, bound.get_json()
    assert "party_id" in bound.get_json()["errors"]["json"]["party_name"][0]
    with h.rt.db.transaction() as session:
        assert session.scalars(select(Binding)).all() == []


def test_the_clerk_binds_one_of_two_alike_parties_by_its_id(harness: Harness) -> None:
    """The case view lists each party's id; the clerk names the second plaintiff 张三 by it
    and the lawyer is bound to that one, not the first. An id of no party of the case, or an
    id beside a name, is a 422 that keeps nothing."""
    h = harness
    case = _case_with_two_named(h, "张三", ("plaintiff", "plaintiff"))
    shown = h.client.get(f"/cases/{case['id']}", headers=h.staff("clerk")).get_json()
    first, second = (p["id"] for p in shown["parties"])
    assert first != second and shown["parties"] == case["parties"]
    url = f"/cases/{case['id']}/lawyers"
    for body, field in (({"party_id": "no-such-party"}, "party_id"),
                        ({"party_id": second, "party_name": "张三"}, "party_id"),
                        ({}, "party_name")):
        refused = h.client.post(url, headers=h.staff("clerk"),
                                json={"lawyer_account_id": h.ids["lawyer"], **body})
        assert refused.status_code == 422, (body, refused.get_json())
        assert field in refused.get_json()["errors"]["json"], body
    with h.rt.db.transaction() as session:
        assert session.scalars(select(Binding)).all() == []
    bound = h.client.post(url, headers=h.staff("clerk"),
                          json={"lawyer_account_id": h.ids["lawyer"], "party_id": second})
    assert bound.status_code == 201, bound.get_json()
    assert bound.get_json()["party_id"] == second
    assert bound.get_json()["party_role"] == "plaintiff"
    with h.rt.db.transaction() as session:
        assert session.get(Binding, bound.get_json()["id"]).party_id == second  # type: ignore[union-attr]


def test_a_lawyer_for_two_alike_parties_names_the_applicant_by_id(harness: Harness) -> None:
    """A lawyer bound to both plaintiffs 张三 applies for one: the name alone used to take the
    first of them; now it is a 422 asking for party_id, and party_id picks the party."""
    h = harness
    case = _case_with_two_named(h, "张三", ("plaintiff", "plaintiff"))
    first, second = (p["id"] for p in case["parties"])
    for party_id in (first, second):
        assert h.client.post(f"/cases/{case['id']}/lawyers", headers=h.staff("clerk"), json={
            "lawyer_account_id": h.ids["lawyer"], "party_id": party_id}).status_code == 201
    url = f"/cases/{case['id']}/applications"
    by_name = h.client.post(url, headers=h.lawyer(), json={**APPLY, "party_name": "张三"})
    assert by_name.status_code == 422, by_name.get_json()
    assert "party_id" in by_name.get_json()["errors"]["json"]["party_name"][0]
    stranger = h.client.post(url, headers=h.lawyer(), json={**APPLY, "party_id": "no-such"})
    assert stranger.status_code == 422
    assert "party_id" in stranger.get_json()["errors"]["json"]
    assert h.client.get(url, headers=h.lawyer()).get_json() == []
    resp = h.client.post(url, headers=h.lawyer(), json={**APPLY, "party_id": second})
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["party_id"] == second  # the staff can tell which 张三 applied
    with h.rt.db.transaction() as session:
        assert session.get(Application, resp.get_json()["id"]).party_id == second  # type: ignore[union-attr]

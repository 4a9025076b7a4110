"""The effectiveness certificate (生效证明) end to end, driven through the gateway in both tiers:
the direct branch, the transfer to the presiding judge, a failed generation then regenerate,
public verification, the escalation ladder with a controllable clock, and who may do what."""

from __future__ import annotations

import io
import re
from datetime import timedelta
from typing import Any

import pytest
from werkzeug.test import Client

from ecourt.embedded import Suite
from servicekit.testing import wait_for
from tests.harness import Court, bearer, person, sms_for


def apply(http: Client, token: str, case_id: str) -> dict[str, Any]:
    resp = http.post(f"/api/matters/cases/{case_id}/applications", headers=bearer(token),
                     json={"kind": "effectiveness_certificate", "reason": "办理强制执行",
                           "use": "向执行法院提交", "materials": ["判决书.pdf"]})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.get_json()


def application(http: Client, token: str, app_id: str) -> dict[str, Any]:
    resp = http.get(f"/api/matters/applications/{app_id}", headers=bearer(token))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()


def wait_document(http: Client, token: str, app_id: str, state: str) -> dict[str, Any]:
    return wait_for(lambda: (a := application(http, token, app_id))["document"]["state"]
                    == state and a, timeout=30, message=f"the certificate to be {state}")


def act(http: Client, token: str, app_id: str, action: str, body: dict[str, Any] | None = None,
        status: int = 200) -> dict[str, Any]:
    path = f"/api/matters/applications/{app_id}"
    etag = http.get(path, headers=bearer(token)).headers["ETag"]  # as a client: read, then act
    resp = http.post(f"{path}/{action}", headers={**bearer(token), "If-Match": etag},
                     json=body or {})
    assert resp.status_code == status, resp.get_data(as_text=True)
    return resp.get_json()


@pytest.fixture(scope="module")
def world(suite: Suite) -> dict[str, Any]:
    http = Client(suite.gateway)
    gz = Court(suite, http, "粤01", "广州市中级人民法院")
    gz.register_seal()
    other = Court(suite, http, "粤02", "深圳市中级人民法院")
    plaintiff, plaintiff_token = person(http, "周俊雄")
    defendant, defendant_token = person(http, "黄添强")
    _stranger, stranger_token = person(http, "路人甲")
    return {"http": http, "gz": gz, "other": other, "plaintiff": plaintiff,
            "plaintiff_token": plaintiff_token, "defendant": defendant,
            "defendant_token": defendant_token, "stranger_token": stranger_token}


def _parties(world: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [("周俊雄", "plaintiff", world["plaintiff"]),
            ("黄添强", "defendant", world["defendant"])]


def test_direct_branch_issue_publish_download_and_verify(suite: Suite,
                                                         world: dict[str, Any]) -> None:
    http, gz, party = world["http"], world["gz"], world["plaintiff_token"]
    case_id = gz.case(_parties(world), effective="2021-07-01")
    app = apply(http, party, case_id)
    assert re.fullmatch(r"\(\d{4}\)粤01文书第\d+号", app["service_number"])
    assert app["status_label"] == "中台待办" and app["remaining"].startswith("剩余")
    for role in ("judge", "clerk"):  # told at once
        wait_for(lambda r=role: sms_for(suite, gz.id(r), "application_submitted"),
                 message=f"the {role}'s SMS")

    todo = http.get("/api/matters/todo", headers=bearer(gz.token("specialist"))).get_json()
    row = next(r for r in todo["items"] if r["application_id"] == app["id"])
    assert row["title"] == "周俊雄/生效证明" and row["parties_label"] == "原告:周俊雄;被告:黄添强"
    assert row["channel"] == "电子诉讼" and row["status_label"] == "中台待办"
    csv = http.get("/api/matters/todo/export", headers=bearer(gz.token("specialist")))
    assert csv.content_type.startswith("text/csv") and app["service_number"] in csv.get_data(
        as_text=True)

    reviewed = act(http, gz.token("specialist"), app["id"], "review", {"issuable": True})
    assert reviewed["status_label"] == "中台待办(已受理)"
    assert reviewed["handling_note"].startswith("经审查")
    assert reviewed["document"]["state"] in ("generating", "issued")
    issued = wait_document(http, gz.token("specialist"), app["id"], "issued")
    assert application(http, party, app["id"])["document"]["download_url"] is None  # not yet

    done = act(http, gz.token("specialist"), app["id"], "publish")
    assert done["status_label"] == "已办结"
    [sms] = wait_for(lambda: sms_for(suite, world["plaintiff"], "application_completed"),
                     message="the party's SMS")
    assert sms.text.startswith("【广州市中级人民法院】您好！您提交的(2021)粤01民初")
    assert sms.text.endswith("的材料法官已处理，请登录人民法院在线服务查看处理结果。")
    inbox = http.get("/api/delivery/inbox", headers=bearer(party)).get_json()
    assert any(n["title"] == "您的生效证明申请已办结" for n in inbox["items"])

    mine = application(http, party, app["id"])["document"]
    pdf = wait_for(lambda: (r := http.get(mine["download_url"], headers=bearer(party)))
                   .status_code == 200 and r, message="the party's download")
    assert pdf.content_type == "application/pdf"
    body = pdf.get_data()
    code = issued["document"]["code"]

    verify = http.get(f"/api/documents/verify/{code}", headers={"Accept": "application/json"})
    assert verify.status_code == 200 and verify.get_json()["status"] == "valid"
    assert http.get("/api/documents/verify/ABCD-EFGH-JKMN-PQRS",
                    headers={"Accept": "application/json"}).status_code == 404
    altered = bytearray(body)
    altered[len(altered) // 2] ^= 0x01
    answer = http.post("/api/documents/verify",
                       data={"file": (io.BytesIO(bytes(altered)), "c.pdf", "application/pdf")})
    assert answer.get_json()["result"] == "altered"
    answer = http.post("/api/documents/verify",
                       data={"file": (io.BytesIO(body), "c.pdf", "application/pdf")})
    assert answer.get_json()["result"] == "authentic"

    # access control: the other party, a stranger, staff of another court, a party as staff
    url = mine["download_url"]
    for token in (world["defendant_token"], world["stranger_token"],
                  world["other"].token("specialist")):
        assert http.get(f"/api/matters/applications/{app['id']}",
                        headers=bearer(token)).status_code == 404
        assert http.get(url, headers=bearer(token)).status_code == 404
    assert http.post(f"/api/matters/applications/{app['id']}/publish",
                     headers=bearer(party)).status_code == 403
    assert http.post(f"/api/matters/applications/{app['id']}/review", json={"issuable": True},
                     headers=bearer(world["other"].token("specialist"))).status_code == 404


def test_transfer_to_the_presiding_judge_with_an_effective_date(suite: Suite,
                                                                 world: dict[str, Any]) -> None:
    http, gz, party = world["http"], world["gz"], world["plaintiff_token"]
    case_id = gz.case(_parties(world), effective=None)
    app = apply(http, party, case_id)
    refused = act(http, gz.token("specialist"), app["id"], "review", {"issuable": True},
                  status=409)
    assert refused["type"].endswith("/effective-date-unknown")
    moved = act(http, gz.token("specialist"), app["id"], "review", {"needs_judge": True})
    assert moved["status_label"] == "后台待办" and moved["stage"] == "back_office"
    wait_for(lambda: sms_for(suite, gz.id("judge"), "application_transferred"),
             message="the judge's SMS")
    back = http.get("/api/matters/todo?stage=back_office",
                    headers=bearer(gz.token("judge"))).get_json()
    assert app["id"] in {r["application_id"] for r in back["items"]}
    decided = act(http, gz.token("judge"), app["id"], "judge-decision", {
        "opinion": "接收", "result_note": "判决已生效", "handler_name": "承办法官",
        "decided_on": "2021-08-13", "effective_date": "2021-08-13"})
    assert decided["judge_opinion"] == "接收"
    wait_document(http, gz.token("judge"), app["id"], "issued")
    assert http.get(f"/api/matters/cases/{case_id}", headers=bearer(party)).get_json()[
        "effective_date"] == "2021-08-13"
    assert act(http, gz.token("judge"), app["id"], "publish")["status"] == "completed"


def test_failed_generation_then_regenerate_yields_one_certificate(suite: Suite,
                                                                  world: dict[str, Any]) -> None:
    http, party = world["http"], world["plaintiff_token"]
    court = Court(suite, http, "粤03", "珠海市中级人民法院")  # no seal registered yet
    case_id = court.case(_parties(world), effective="2021-07-01")
    app = apply(http, party, case_id)
    act(http, court.token("specialist"), app["id"], "review", {"issuable": True})
    failed = wait_document(http, court.token("specialist"), app["id"], "failed")
    assert "seal" in failed["document"]["failure"] and "regenerate" in failed["document"][
        "actions"]
    court.register_seal()
    act(http, court.token("specialist"), app["id"], "regenerate")
    issued = wait_document(http, court.token("specialist"), app["id"], "issued")
    again = act(http, court.token("specialist"), app["id"], "regenerate", status=409)
    assert again["type"].endswith("/invalid-state")
    docs = http.get(f"/api/documents/documents?application_id={app['id']}",
                    headers=bearer(court.token("specialist"))).get_json()
    valid = [d for d in docs["items"] if d["status"] == "valid"]
    assert [d["id"] for d in valid] == [issued["document"]["document_id"]]


def test_escalation_ladder_one_level_at_a_time(suite: Suite, world: dict[str, Any]) -> None:
    http, gz = world["http"], world["gz"]
    case_id = gz.case(_parties(world), effective="2021-07-01")
    app = apply(http, world["plaintiff_token"], case_id)
    deadline = application(http, gz.token("specialist"), app["id"])["deadline"]
    from datetime import datetime

    due = datetime.fromisoformat(deadline)
    ladder = [(due + timedelta(hours=1), "judge"), (due + timedelta(days=3, hours=1),
                                                   "division_head"),
              (due + timedelta(days=7, hours=1), "president")]
    for moment, recipient in ladder:
        assert suite.run_escalation(moment) >= 1
        assert suite.run_escalation(moment) == 0  # each level once
        wait_for(lambda r=recipient: [m for m in sms_for(suite, gz.id(r), "application_overdue")
                                      if app["service_number"] in m.text],
                 message=f"the {recipient}'s urging SMS")
    assert suite.run_escalation(due + timedelta(days=30)) == 0  # the ladder has three rungs

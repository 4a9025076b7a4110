"""Issue check 4: one ``Idempotency-Key`` changes state once. The same registration sent twice
through the gateway makes one account and one event, and the second answer is the first one
replayed; the key reused for another body, or the same bytes under another media type, is
refused with a 422 problem, while an upload rebuilt under a new multipart boundary is the same
request. In both tiers."""

from __future__ import annotations

import io
import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select, update
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import Client, encode_multipart

from ecourt.embedded import Suite
from servicekit.db import utcnow
from servicekit.idempotency import request_hash
from servicekit.problems import PROBLEM_JSON
from servicekit.tables import outbox
from services.identity.models import Account
from tests.factories import mobile, uscc
from tests.harness import PASSWORD, PDF, bearer
from tests.harness import person as signed_in
from tests.reliability.helpers import person

pytestmark = pytest.mark.real

REGISTERED = "identity.account.registered"


def _accounts(suite: Suite, phone: str) -> list[Account]:
    with suite.runtimes["identity"].db.transaction() as s:
        return list(s.scalars(select(Account).where(Account.phone == phone)))


def _events_about(suite: Suite, account_id: str, kind: str = REGISTERED) -> int:
    with suite.runtimes["identity"].db.transaction() as s:
        bodies = s.scalars(select(outbox.c.body).where(outbox.c.type == kind)).all()
    return sum(1 for b in bodies if json.loads(b).get("subject") == account_id)


def _keys(suite: Suite) -> int:
    from servicekit.tables import idempotency_keys

    with suite.runtimes["identity"].db.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(idempotency_keys)) or 0)


def test_same_request_twice_changes_state_once(suite: Suite, http: Client) -> None:
    body = person()
    key = f"reg-{uuid.uuid4()}"
    headers = {"Idempotency-Key": key}
    keys_before = _keys(suite)

    first = http.post("/api/identity/accounts", json=body, headers=headers)
    assert first.status_code == 201, first.get_data(as_text=True)
    assert "Idempotent-Replayed" not in first.headers
    second = http.post("/api/identity/accounts", json=body, headers=headers)
    assert second.status_code == 201, second.get_data(as_text=True)
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert second.get_data() == first.get_data()
    assert second.headers["Content-Type"] == first.headers["Content-Type"]

    [account] = _accounts(suite, body["phone"])
    assert account.id == first.get_json()["id"]
    assert _events_about(suite, account.id) == 1
    assert _keys(suite) == keys_before + 1

    # without the key the same body is a new request: refused by the domain, not replayed
    again = http.post("/api/identity/accounts", json=body)
    assert again.status_code == 409 and "Idempotent-Replayed" not in again.headers
    assert len(_accounts(suite, body["phone"])) == 1
    assert _events_about(suite, account.id) == 1


def test_same_key_with_another_body_is_a_422_problem(suite: Suite, http: Client) -> None:
    body, other = person(), person()
    headers = {"Idempotency-Key": f"reg-{uuid.uuid4()}"}
    first = http.post("/api/identity/accounts", json=body, headers=headers)
    assert first.status_code == 201, first.get_data(as_text=True)

    reused = http.post("/api/identity/accounts", json=other, headers=headers)
    assert reused.status_code == 422, reused.get_data(as_text=True)
    assert reused.headers["Content-Type"].startswith(PROBLEM_JSON)
    problem = reused.get_json(force=True)
    assert problem["status"] == 422
    assert problem["type"].endswith("/idempotency-key-reused")
    assert _accounts(suite, other["phone"]) == []  # the second body was never applied
    [account] = _accounts(suite, body["phone"])
    assert _events_about(suite, account.id) == 1

    # the original request with its key still replays the first answer
    replay = http.post("/api/identity/accounts", json=body, headers=headers)
    assert replay.status_code == 201 and replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.get_data() == first.get_data()


def _age_key(suite: Suite, key: str, **age: float) -> None:
    from servicekit.tables import idempotency_keys

    with suite.runtimes["identity"].db.transaction() as s:
        s.execute(update(idempotency_keys).where(idempotency_keys.c.key == key)
                  .values(created_at=utcnow() - timedelta(**age)))


def test_a_key_older_than_a_day_is_free_again(suite: Suite, http: Client) -> None:
    body, later = person(), person()
    headers = {"Idempotency-Key": f"reg-{uuid.uuid4()}"}
    assert http.post("/api/identity/accounts", json=body, headers=headers).status_code == 201
    _age_key(suite, headers["Idempotency-Key"], hours=25)

    fresh = http.post("/api/identity/accounts", json=later, headers=headers)
    assert fresh.status_code == 201, fresh.get_data(as_text=True)
    assert "Idempotent-Replayed" not in fresh.headers
    assert len(_accounts(suite, later["phone"])) == 1
    # and from now on the key replays its new first answer
    replay = http.post("/api/identity/accounts", json=later, headers=headers)
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.get_data() == fresh.get_data()


def _reserve(suite: Suite, key: str, body: dict[str, str], minutes_ago: float) -> None:
    """The row a process leaves when it dies between reserving the key and answering."""
    from servicekit.tables import idempotency_keys

    path = "/accounts"
    digest = request_hash("POST", path + "?", "application/json", json.dumps(body).encode())
    with suite.runtimes["identity"].db.transaction() as s:
        s.execute(insert(idempotency_keys).values(
            key=key, principal="anonymous", method="POST", path=path, request_hash=digest,
            status=0, headers="{}", body=b"", created_at=utcnow() - timedelta(minutes=minutes_ago)))


@pytest.mark.parametrize(("minutes_ago", "slug"), [(0, "request-in-progress"),
                                                    (10, "request-outcome-unknown")])
def test_a_reserved_key_is_in_progress_until_its_process_must_have_died(
        suite: Suite, http: Client, minutes_ago: float, slug: str) -> None:
    body = person()
    key = f"reg-{uuid.uuid4()}"
    _reserve(suite, key, body, minutes_ago)
    answer = http.post("/api/identity/accounts", data=json.dumps(body),
                       content_type="application/json", headers={"Idempotency-Key": key})
    assert answer.status_code == 409, answer.get_data(as_text=True)
    assert answer.get_json(force=True)["type"].endswith("/" + slug)
    assert _accounts(suite, body["phone"]) == []  # never run a second time


def test_a_request_no_route_takes_keeps_no_key(suite: Suite, http: Client) -> None:
    """A 405 or 404 changed nothing, so its key stays free: the request the client meant,
    sent next with the same key, runs (it was refused as a reused key when the 405 was kept)."""
    key = f"miss-{uuid.uuid4()}"
    headers = {"Idempotency-Key": key}
    keys_before = _keys(suite)
    # straight to the service: the gateway refuses an anonymous PUT before routing (401)
    service = suite.apps["identity"].test_client()
    wrong_method = service.put("/accounts", json={"x": 1}, headers=headers)
    assert wrong_method.status_code == 405
    nowhere = service.post("/no-such-route", json={"x": 2}, headers=headers)
    assert nowhere.status_code == 404
    assert _keys(suite) == keys_before
    meant = http.post("/api/identity/accounts", json=person(), headers=headers)
    assert meant.status_code == 201, meant.get_data(as_text=True)
    assert _keys(suite) == keys_before + 1


def _spec_with_a_failing_write(name: str):  # type: ignore[no-untyped-def]
    """A service whose one route commits an event to its outbox and then fails (``after``:
    a 500 once the change is committed) or fails before writing anything."""
    from flask import current_app
    from flask.views import MethodView
    from flask_smorest import Blueprint

    from servicekit.access import public
    from servicekit.outbox import emit
    from servicekit.web import ServiceSpec

    blp = Blueprint(name, __name__)

    @blp.route("/changes/<when>")
    class Changes(MethodView):
        @public
        def post(self, when: str) -> dict[str, str]:
            if when == "before":
                raise RuntimeError("failed before changing anything")
            with current_app.extensions["ecourt.db"].transaction() as session:
                emit(session, "test.changed", {}, source="/test")
            raise RuntimeError("failed after the change committed")

    return ServiceSpec(name, "t", "t", [blp])


def _changes(suite: Suite) -> int:
    with suite.runtimes["filing"].db.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(outbox)
                            .where(outbox.c.type == "test.changed")) or 0)


def test_a_server_error_after_a_committed_change_keeps_the_key(suite: Suite) -> None:
    """A request that changed state and then failed (a database gone between the change and
    the answer) must not be run again by a retry with its key: the retry is told the outcome
    is unknown. One that failed before changing anything frees its key for the retry."""
    from servicekit.web import create_service_app

    app = create_service_app(_spec_with_a_failing_write(f"failing{uuid.uuid4().hex[:6]}"),
                             suite.runtimes["filing"])
    app.config["PROPAGATE_EXCEPTIONS"] = False
    http = Client(app)
    before = _changes(suite)

    key = {"Idempotency-Key": f"after-{uuid.uuid4()}"}
    assert http.post("/changes/after", headers=key).status_code == 500
    assert _changes(suite) == before + 1
    retry = http.post("/changes/after", headers=key)
    assert retry.status_code == 409, retry.get_data(as_text=True)
    assert retry.json["type"].endswith("request-outcome-unknown")
    assert _changes(suite) == before + 1  # not applied twice

    key = {"Idempotency-Key": f"before-{uuid.uuid4()}"}
    assert http.post("/changes/before", headers=key).status_code == 500
    assert http.post("/changes/before", headers=key).status_code == 500  # ran again
    assert _changes(suite) == before + 1


def _spec_with_refusals(name: str, ran: list[str]):  # type: ignore[no-untyped-def]
    """A service whose one route refuses with a 422 problem, having first committed an event
    (``after``) or having changed nothing (``before``), or commits one and answers 201
    (``made``); ``ran`` records each time it runs. It documents no body: it takes one of any
    type."""
    from flask import current_app
    from flask.views import MethodView
    from flask_smorest import Blueprint

    from servicekit.access import public
    from servicekit.outbox import emit
    from servicekit.problems import Problem
    from servicekit.web import ServiceSpec

    blp = Blueprint(name, __name__)

    @blp.route("/refusals/<when>")
    class Refusals(MethodView):
        @public
        def post(self, when: str) -> dict[str, str]:
            ran.append(when)
            if when == "denied":  # the kit writes the refusal to the audit trail
                raise Problem(403, "forbidden", "not yours")
            if when == "throttled":  # counts the attempt (a write), then says: later
                with current_app.extensions["ecourt.db"].transaction() as session:
                    emit(session, "test.counted", {}, source="/test")
                raise Problem(429, "too-many-attempts", "later",
                              headers={"Retry-After": "1"})
            if when in ("after", "made"):
                with current_app.extensions["ecourt.db"].transaction() as session:
                    emit(session, "test.changed", {}, source="/test")
            if when == "made":
                return {"made": when}, 201  # type: ignore[return-value]
            raise Problem(422, "refused", f"refused {when}")

    return ServiceSpec(name, "t", "t", [blp])


def test_a_refusal_that_changed_nothing_frees_its_key(suite: Suite) -> None:
    """A 4xx that committed nothing is not the key's answer: the client mends the request and
    sends it again with the same key, and it runs (it was handed the old refusal for a day —
    a 428 for a forgotten If-Match even after the client added it). A 4xx that committed a
    change is kept and replayed, so the change is not made twice."""
    from servicekit.web import create_service_app

    ran: list[str] = []
    app = create_service_app(_spec_with_refusals(f"refusing{uuid.uuid4().hex[:6]}", ran),
                             suite.runtimes["filing"])
    http = Client(app)
    before = _changes(suite)

    # each refusal runs again under its key: a 422 that changed nothing, a 403 (its audit entry
    # is the kit's bookkeeping, not the request's change), a 429 ("try again later", whatever
    # the refused attempt counted)
    for when, status in (("before", 422), ("denied", 403), ("throttled", 429)):
        ran.clear()
        key = {"Idempotency-Key": f"{when}-{uuid.uuid4()}"}
        for attempt in (1, 2):
            answer = http.post(f"/refusals/{when}", headers=key)
            assert answer.status_code == status, answer.get_data(as_text=True)
            assert "Idempotent-Replayed" not in answer.headers
            assert ran == [when] * attempt  # the view ran again: nothing was replayed
    # a mended request (here: another body) under a refused one's key is not "a reused key"
    key = {"Idempotency-Key": f"mended-{uuid.uuid4()}"}
    assert http.post("/refusals/before", headers=key).status_code == 422
    mended = http.post("/refusals/before", headers=key, json={"mended": True})
    assert mended.status_code == 422, mended.get_data(as_text=True)
    assert mended.get_json()["type"].endswith("/refused")
    assert _changes(suite) == before

    ran.clear()
    key = {"Idempotency-Key": f"changed-{uuid.uuid4()}"}
    first = http.post("/refusals/after", headers=key)
    assert first.status_code == 422 and _changes(suite) == before + 1
    replay = http.post("/refusals/after", headers=key)
    assert replay.status_code == 422 and replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.get_data() == first.get_data()
    assert ran == ["after"] and _changes(suite) == before + 1  # not run, not changed twice


def test_the_same_bytes_under_another_media_type_are_another_request(suite: Suite) -> None:
    """A view reads a body by its type (JSON only when it says JSON, a form only when it is
    one), so the same bytes under another type are another request: sent as text/plain under
    the key their JSON sending used, they were given the JSON's answer. They are refused as the
    key reused, and nothing runs; the type's parameters (a charset) are not the type. (Where
    the operation does not take the type at all, the 415 comes first: tests/test_media_types.)"""
    from servicekit.web import create_service_app

    ran: list[str] = []
    app = create_service_app(_spec_with_refusals(f"typed{uuid.uuid4().hex[:6]}", ran),
                             suite.runtimes["filing"])
    http = Client(app)
    before, raw = _changes(suite), b'{"judge": "zhou"}'
    key = {"Idempotency-Key": f"typed-{uuid.uuid4()}"}
    first = http.post("/refusals/made", data=raw, content_type="application/json", headers=key)
    assert first.status_code == 201, first.get_data(as_text=True)
    other = http.post("/refusals/made", data=raw, content_type="text/plain", headers=key)
    assert other.status_code == 422, other.get_data(as_text=True)
    assert other.get_json()["type"].endswith("/idempotency-key-reused")
    same = http.post("/refusals/made", data=raw, content_type="Application/JSON; charset=utf-8",
                     headers=key)
    assert same.status_code == 201 and same.headers.get("Idempotent-Replayed") == "true"
    assert ran == ["made"] and _changes(suite) == before + 1


@pytest.fixture(scope="module")
def applicant(suite: Suite) -> tuple[str, str]:
    """A court known to identity, and an individual's token to register organizations with."""
    from services.identity.usecases.staff import create_admin

    create_admin(suite.runtimes["identity"].db, court="粤03", court_name="深圳市中级人民法院",
                 name="管理员", phone=mobile(), password=PASSWORD)
    return "粤03", signed_in(Client(suite.gateway), "周经理")[1]


def _register(http: Client, applicant: tuple[str, str], code: str, key: str,
              licence: bytes = PDF, boundary: str | None = None):  # type: ignore[no-untyped-def]
    """Register organization ``code`` (multipart: the form and its licence), the body built
    afresh as a client builds it: under a new boundary unless ``boundary`` is given."""
    court, token = applicant
    form = MultiDict({"name": "深圳示例贸易有限公司", "uscc": code, "court": court,
                      "legal_representative": "周经理", "password": "org-password-123"})
    form.add("licence", FileStorage(io.BytesIO(licence), "营业执照.pdf",
                                    content_type="application/pdf"))
    boundary = boundary or f"----client{uuid.uuid4().hex}"
    _, body = encode_multipart(form, boundary=boundary)
    return http.post("/api/identity/organizations", data=body,
                     content_type=f"multipart/form-data; boundary={boundary}",
                     headers={**bearer(token), "Idempotency-Key": key})


def _organizations(suite: Suite, code: str) -> list[str]:
    from services.identity.models_orgs import Organization

    with suite.runtimes["identity"].db.transaction() as s:
        return list(s.scalars(select(Organization.id).where(Organization.uscc == code)))


def test_the_same_upload_rebuilt_with_another_boundary_is_replayed(
        suite: Suite, http: Client, applicant: tuple[str, str]) -> None:
    """A multipart body's bytes hold the boundary its client drew: the same upload rebuilt to
    retry it was refused as a different request under its key. It is the same request, its
    first answer replayed, one organization registered."""
    code, key = uscc(), f"org-{uuid.uuid4()}"
    first = _register(http, applicant, code, key, boundary="----first0123456789")
    assert first.status_code == 201, first.get_data(as_text=True)
    retry = _register(http, applicant, code, key, boundary="----WebKitFormBoundaryRetry42")
    assert retry.status_code == 201, retry.get_data(as_text=True)
    assert retry.headers.get("Idempotent-Replayed") == "true"
    assert retry.get_data() == first.get_data()
    [org_id] = _organizations(suite, code)
    assert _events_about(suite, org_id, "identity.organization.registered") == 1


def test_another_file_under_the_same_key_is_refused(
        suite: Suite, http: Client, applicant: tuple[str, str]) -> None:
    code, key = uscc(), f"org-{uuid.uuid4()}"
    assert _register(http, applicant, code, key).status_code == 201
    other = _register(http, applicant, code, key, licence=PDF + b"%another page")
    assert other.status_code == 422, other.get_data(as_text=True)
    assert other.get_json()["type"].endswith("/idempotency-key-reused")
    [org_id] = _organizations(suite, code)
    assert _events_about(suite, org_id, "identity.organization.registered") == 1

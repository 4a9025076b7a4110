"""A body of a media type its operation does not take is a 415 problem naming the types it takes
(``servicekit.media_types``), on a small app of the kit's own: webargs reads no JSON from a body
that is not labelled JSON, and no form from one that is not a form, so such a body was "Missing
data for required field" for every field. Nothing is done and no ``Idempotency-Key`` is kept."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import marshmallow as ma
import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import func, select

from ecourt import registry
from ecourt.runtime import make_runtime
from servicekit.access import public, roles
from servicekit.config import Settings
from servicekit.media_types import takes
from servicekit.service import Runtime
from servicekit.tables import idempotency_keys
from servicekit.testing import problem_of
from servicekit.web import ServiceSpec, create_service_app

NOTE = {"text": "立案材料已补正"}
PDF = b"%PDF-1.7\n" + b"x" * 64


class NoteSchema(ma.Schema):
    text = ma.fields.String(required=True)


class OptionalNoteSchema(ma.Schema):
    text = ma.fields.String()


class LetterSchema(ma.Schema):
    letter = ma.fields.Raw(required=True, metadata={"type": "string", "format": "binary"})


def _blueprint(done: list[str]) -> Blueprint:
    """Routes of each kind: a JSON body, a multipart one, an optional one, one the view reads
    itself (JSON or multipart), one for the signed-in, and a PUT and a PATCH."""
    blp = Blueprint("bodies", __name__)

    @blp.route("/notes")
    class Notes(MethodView):
        @public
        @blp.arguments(NoteSchema)
        @blp.response(201)
        def post(self, note: dict[str, str]) -> dict[str, str]:
            done.append(note["text"])
            return note

    @blp.route("/notes/<int:number>")
    class Note(MethodView):
        @public
        @blp.arguments(NoteSchema)
        @blp.response(200)
        def put(self, note: dict[str, str], number: int) -> dict[str, str]:
            done.append(note["text"])
            return note

        @public
        @blp.arguments(OptionalNoteSchema, content_type="application/merge-patch+json")
        @blp.response(200)
        def patch(self, note: dict[str, str], number: int) -> dict[str, str]:
            done.append(note.get("text", ""))
            return note

    @blp.route("/letters")
    class Letters(MethodView):
        @public
        @blp.arguments(LetterSchema, location="files")
        @blp.response(201)
        def post(self, files: dict[str, Any]) -> dict[str, int]:
            done.append(files["letter"].filename)
            return {"size": len(files["letter"].read())}

    @blp.route("/pings")
    class Pings(MethodView):
        @public
        @blp.arguments(OptionalNoteSchema, required=False)
        @blp.response(201)
        def post(self, note: dict[str, str]) -> dict[str, str]:
            done.append(note.get("text", "ping"))
            return note

    @blp.route("/either")
    class Either(MethodView):
        @public
        @blp.doc(requestBody={"required": True, "content": {
            "application/json": {"schema": NoteSchema},
            "multipart/form-data": {"schema": LetterSchema}}})
        @blp.response(201)
        def post(self) -> dict[str, str]:
            kind = "json" if request.is_json else "form"
            done.append(kind)
            return {"kind": kind}

    @blp.route("/private-notes")
    class PrivateNotes(MethodView):
        @roles("clerk")
        @blp.arguments(NoteSchema)
        @blp.response(201)
        def post(self, note: dict[str, str]) -> dict[str, str]:
            done.append(note["text"])
            return note

    return blp


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """A database with the kit's tables (every service's migrations make them)."""
    path: Path = tmp_path_factory.mktemp("bodies") / "bodies.db"
    rt = make_runtime(registry.get("filing"),
                      Settings.from_env("filing", database_url=f"sqlite:///{path}"), None)
    yield rt
    rt.db.dispose()


@pytest.fixture
def done() -> list[str]:
    return []


@pytest.fixture
def app(runtime: Runtime, done: list[str]) -> Flask:
    return create_service_app(ServiceSpec("bodies", "t", "t", [_blueprint(done)]), runtime)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _unsupported(resp: Any, *accepted: str) -> dict[str, Any]:
    body = problem_of(resp, 415, "unsupported-media-type")
    assert body["accepted"] == list(accepted)
    assert " or ".join(accepted) in body["detail"]
    return body


def _keys_held(runtime: Runtime) -> int:
    with runtime.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(idempotency_keys)) or 0


@pytest.mark.parametrize(("ctype", "sent"), [
    ("text/plain", "text/plain"),
    ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded"),  # curl's -d
    ("application/xml", "application/xml"),
    ("application/jsonx", "application/jsonx"),
    (None, "no Content-Type"),
])
def test_a_json_body_not_labelled_json_is_a_415_naming_application_json(
        client: FlaskClient, done: list[str], ctype: str | None, sent: str) -> None:
    headers = {"Content-Type": ctype} if ctype else {}
    resp = client.post("/notes", data=json.dumps(NOTE), headers=headers)
    body = _unsupported(resp, "application/json")
    assert sent in body["detail"] and "Content-Type: application/json" in body["detail"]
    assert resp.headers["Accept-Post"] == "application/json"
    assert body["instance"] == "/notes"
    assert done == []


def test_a_json_body_sent_to_a_multipart_route_is_a_415_naming_multipart(
        client: FlaskClient, done: list[str]) -> None:
    body = _unsupported(client.post("/letters", json={"letter": "x"}), "multipart/form-data")
    assert "application/json" in body["detail"]
    assert _unsupported(client.post("/letters", data="letter=x",
                                    content_type="application/x-www-form-urlencoded"),
                        "multipart/form-data")
    assert done == []


def test_a_multipart_body_sent_to_a_json_route_is_a_415(client: FlaskClient,
                                                        done: list[str]) -> None:
    _unsupported(client.post("/notes", data={"text": "x"}, content_type="multipart/form-data"),
                 "application/json")
    assert done == []


def test_a_view_that_reads_its_body_itself_takes_what_its_document_says(
        client: FlaskClient, done: list[str]) -> None:
    resp = client.post("/either", data=json.dumps(NOTE), content_type="text/plain")
    _unsupported(resp, "application/json", "multipart/form-data")
    assert resp.headers["Accept-Post"] == "application/json, multipart/form-data"
    assert client.post("/either", json=NOTE).get_json() == {"kind": "json"}
    assert client.post("/either", data={"letter": (io.BytesIO(PDF), "l.pdf")}).get_json() == {
        "kind": "form"}
    assert done == ["json", "form"]


@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8",
                                   "Application/JSON", "application/problem+json",
                                   "application/merge-patch+json; charset=UTF-8"])
def test_json_by_any_json_type_still_works(client: FlaskClient, done: list[str],
                                           ctype: str) -> None:
    resp = client.post("/notes", data=json.dumps(NOTE).encode(), headers={"Content-Type": ctype})
    assert resp.status_code == 201, resp.get_json()
    assert done == [NOTE["text"]]


def test_multipart_still_works(client: FlaskClient, done: list[str]) -> None:
    resp = client.post("/letters", data={"letter": (io.BytesIO(PDF), "授权委托书.pdf")})
    assert resp.status_code == 201, resp.get_json()
    assert done == ["授权委托书.pdf"]


def test_no_body_is_judged_by_the_route_as_before(client: FlaskClient,
                                                  done: list[str]) -> None:
    """A POST without a body is no body of the wrong type: a route whose body is optional runs
    (a Content-Type with no body, or a Content-Length of 0, changes nothing); one whose body is
    required names the missing fields, as before."""
    assert client.post("/pings").status_code == 201
    assert client.post("/pings", content_type="text/plain").status_code == 201
    assert client.post("/pings", data=b"", headers={"Content-Type": "text/plain",
                                                    "Content-Length": "0"}).status_code == 201
    problem = problem_of(client.post("/notes", content_type="text/plain"),
                         422, "validation-error")
    assert "text" in problem["errors"]["json"]
    assert done == ["ping", "ping", "ping"]


def test_an_optional_body_of_the_wrong_type_is_refused(client: FlaskClient,
                                                       done: list[str]) -> None:
    _unsupported(client.post("/pings", data="text=x",
                             content_type="application/x-www-form-urlencoded"),
                 "application/json")
    assert done == []


def test_a_chunked_body_counts_as_a_body(client: FlaskClient, done: list[str]) -> None:
    """Its length is not known before it is read: Transfer-Encoding says there is one."""
    resp = client.post("/notes", input_stream=io.BytesIO(json.dumps(NOTE).encode()),
                       headers={"Transfer-Encoding": "chunked", "Content-Type": "text/plain"},
                       environ_overrides={"wsgi.input_terminated": True})
    _unsupported(resp, "application/json")
    resp = client.post("/notes", input_stream=io.BytesIO(json.dumps(NOTE).encode()),
                       headers={"Transfer-Encoding": "chunked",
                                "Content-Type": "application/json"},
                       environ_overrides={"wsgi.input_terminated": True})
    assert resp.status_code == 201, resp.get_json()
    assert done == [NOTE["text"]]


def test_patch_names_its_types_in_accept_patch_and_put_in_the_problem(
        client: FlaskClient, done: list[str]) -> None:
    resp = client.patch("/notes/1", data=json.dumps(NOTE), content_type="text/plain")
    _unsupported(resp, "application/merge-patch+json")
    assert resp.headers["Accept-Patch"] == "application/merge-patch+json"
    resp = client.put("/notes/1", data=json.dumps(NOTE), content_type="text/plain")
    _unsupported(resp, "application/json")  # no standard header names a PUT's types
    assert "Accept-Post" not in resp.headers and "Accept-Patch" not in resp.headers
    # a JSON type other than application/json is that type alone: plain JSON is not a patch
    _unsupported(client.patch("/notes/1", json=NOTE), "application/merge-patch+json")
    assert client.patch("/notes/1", data=json.dumps(NOTE),
                        content_type="application/merge-patch+json").status_code == 200
    assert done == [NOTE["text"]]


def test_an_idempotency_key_sent_with_the_415_is_free_for_the_corrected_request(
        client: FlaskClient, runtime: Runtime, done: list[str]) -> None:
    key = str(uuid.uuid4())
    before = _keys_held(runtime)
    _unsupported(client.post("/notes", data=json.dumps(NOTE), content_type="text/plain",
                             headers={"Idempotency-Key": key}), "application/json")
    assert _keys_held(runtime) == before
    resp = client.post("/notes", json=NOTE, headers={"Idempotency-Key": key})
    assert resp.status_code == 201, resp.get_json()
    again = client.post("/notes", json=NOTE, headers={"Idempotency-Key": key})
    assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (201, "true")
    assert done == [NOTE["text"]]


def test_a_stranger_is_refused_for_who_it_is_before_what_it_sent(client: FlaskClient) -> None:
    problem_of(client.post("/private-notes", data=json.dumps(NOTE), content_type="text/plain"),
               401, "authentication-required")


def test_the_document_names_the_415_and_its_hint(app: Flask) -> None:
    paths = app.extensions["ecourt.api"].spec.to_dict()["paths"]
    notes = paths["/notes"]["post"]["responses"]["415"]
    assert "application/json" in notes["description"]
    assert "Accept-Post" in notes["headers"]
    assert notes["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/Problem"}
    assert "Accept-Patch" in paths["/notes/{number}"]["patch"]["responses"]["415"]["headers"]
    assert "headers" not in paths["/notes/{number}"]["put"]["responses"]["415"]
    either = paths["/either"]["post"]["responses"]["415"]["description"]
    assert "application/json or multipart/form-data" in either


@pytest.mark.parametrize(("declared", "mimetype", "taken"), [
    ("application/json", "application/json", True),
    ("application/json", "application/vnd.api+json", True),
    ("application/json", "text/json", False),
    ("application/json", "", False),
    ("multipart/form-data", "multipart/form-data", True),
    ("multipart/form-data", "multipart/mixed", False),
    ("image/*", "image/png", True),
    ("image/*", "text/plain", False),
    ("*/*", "text/plain", True),
    ("*/*", "", False),
])
def test_which_types_a_declared_type_takes(declared: str, mimetype: str, taken: bool) -> None:
    assert takes(declared, mimetype) is taken

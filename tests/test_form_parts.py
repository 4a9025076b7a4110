"""A multipart part that names no field is a 422 problem in both tiers, before any view runs
(RELIABILITY S7: schemathesis, seed 7202, found it a 500). RFC 7578 §4.2 requires each part's
``Content-Disposition: form-data`` to carry a ``name``; werkzeug files a part without one (or
with one it cannot read) under the key ``None``, on which the kit's form check and the views'
schemas failed."""

from __future__ import annotations

import uuid

import pytest
from werkzeug.test import Client

from ecourt.embedded import Suite
from tests.harness import PDF

BOUNDARY = "fuzz7202boundary"


def _multipart(*parts: tuple[bytes, bytes]) -> bytes:
    """A body of ``(Content-Disposition value, content)`` parts."""
    out = b""
    for disposition, content in parts:
        out += (b"--" + BOUNDARY.encode() + b"\r\nContent-Disposition: " + disposition
                + b"\r\n\r\n" + content + b"\r\n")
    return out + b"--" + BOUNDARY.encode() + b"--\r\n"


@pytest.mark.parametrize("nameless", [
    b"form-data", b"form-data; name=", b'form-data; name="a\\"', b'form-data; filename="x.pdf"'])
def test_a_part_naming_no_field_is_a_422_not_a_500(suite: Suite, nameless: bytes) -> None:
    http = Client(suite.gateway)
    body = _multipart((b'form-data; name="file"; filename="doc.pdf"', PDF), (nameless, b"x"))
    resp = http.post("/api/documents/verify", data=body,
                     content_type=f"multipart/form-data; boundary={BOUNDARY}",
                     headers={"Idempotency-Key": str(uuid.uuid4())})
    assert resp.status_code == 422, resp.get_data(as_text=True)
    assert resp.content_type == "application/problem+json"
    problem = resp.get_json()
    assert problem["type"].endswith("/validation-error")
    assert "names no field" in problem["detail"]
    assert problem["errors"] == {"form": {"": ["a part without a field name"]}}


def test_a_form_whose_parts_all_name_their_fields_goes_on_to_the_view(suite: Suite) -> None:
    """The same body without the nameless part is verified (a PDF the court never issued)."""
    http = Client(suite.gateway)
    body = _multipart((b'form-data; name="file"; filename="doc.pdf"', PDF))
    resp = http.post("/api/documents/verify", data=body,
                     content_type=f"multipart/form-data; boundary={BOUNDARY}")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json() == {"document": None, "result": "unknown"}

"""Public verification by code (JSON and HTML) and by uploading the PDF."""

from __future__ import annotations

import io
from typing import Any

import pytest
from pypdf import PdfWriter
from reportlab.pdfgen.canvas import Canvas
from sqlalchemy import select

from services.documents import codes
from services.documents.models import Verification
from services.documents.tests.conftest import Harness, certificate_request

JSON = {"Accept": "application/json"}
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.fixture
def issued(harness: Harness) -> dict[str, Any]:
    harness.register_seal()
    harness.deliver("matters.certificate.requested", certificate_request())
    [event] = harness.emitted("documents.document.issued")
    return event["data"]


def pdf_of(h: Harness, data: dict[str, Any]) -> bytes:
    return h.docs.blobs.get(data["sha256"])


def upload(h: Harness, content: bytes, name: str = "certificate.pdf") -> Any:
    return h.client.post("/verify", data={"file": (io.BytesIO(content), name)},
                         content_type="multipart/form-data")


def test_a_valid_code_answers_json(harness: Harness, issued: dict[str, Any]) -> None:
    resp = harness.client.get(f"/verify/{issued['code']}", headers=JSON)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["status"] == "valid" and body["sha256"] == issued["sha256"]
    assert body["case_number"] == "(2026)粤01民初123号"
    assert body["court"] == "粤01" and body["kind_label"] == "生效证明"
    assert body["issued_at_local"].endswith("(UTC+08:00)")
    assert "张三" not in resp.get_data(as_text=True)  # no parties' names in public


def test_a_valid_code_answers_a_page_to_a_browser(harness: Harness,
                                                  issued: dict[str, Any]) -> None:
    resp = harness.client.get(f"/verify/{issued['code']}", headers=BROWSER)
    assert resp.status_code == 200 and resp.content_type.startswith("text/html")
    page = resp.get_data(as_text=True)
    for words in ("广州市中级人民法院", "(2026)粤01民初123号", "生效证明", "有效",
                  issued["sha256"], issued["code"]):
        assert words in page
    assert resp.headers["Vary"] == "Accept"


def test_the_code_may_be_typed_in_lower_case_without_hyphens(
        harness: Harness, issued: dict[str, Any]) -> None:
    typed = issued["code"].replace("-", "").lower()
    assert harness.client.get(f"/verify/{typed}", headers=JSON).status_code == 200


def test_an_unknown_code_is_404_in_both_forms(harness: Harness) -> None:
    unknown = codes.display(codes.new_code())
    api = harness.client.get(f"/verify/{unknown}", headers=JSON)
    assert api.status_code == 404 and api.content_type == "application/problem+json"
    page = harness.client.get(f"/verify/{unknown}", headers=BROWSER)
    assert page.status_code == 404 and page.content_type.startswith("text/html")
    assert "未找到" in page.get_data(as_text=True)


def test_a_mistyped_code_is_404_with_a_hint(harness: Harness, issued: dict[str, Any]) -> None:
    code = issued["code"]
    typo = code[:3] + ("Z" if code[3] != "Z" else "Y") + code[4:]
    resp = harness.client.get(f"/verify/{typo}", headers=JSON)
    assert resp.status_code == 404
    assert "check character" in resp.get_json()["detail"]
    short = harness.client.get("/verify/ABC", headers=JSON)
    assert short.status_code == 404 and "20 letters" in short.get_json()["detail"]


def test_the_original_pdf_is_authentic(harness: Harness, issued: dict[str, Any]) -> None:
    resp = upload(harness, pdf_of(harness, issued))
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["result"] == "authentic"
    assert body["document"]["code"] == issued["code"]


def test_one_changed_byte_is_altered(harness: Harness, issued: dict[str, Any]) -> None:
    pdf = bytearray(pdf_of(harness, issued))
    at = pdf.index(b"/CreationDate (D:") + len(b"/CreationDate (D:") + 3
    pdf[at] = ord("9") if pdf[at] != ord("9") else ord("8")
    body = upload(harness, bytes(pdf)).get_json()
    assert body["result"] == "altered"
    assert body["document"]["code"] == issued["code"]


@pytest.mark.parametrize("at", [0, 1, 4])
def test_a_changed_byte_in_the_header_is_altered_not_refused(harness: Harness,
                                                            issued: dict[str, Any],
                                                            at: int) -> None:
    """S8 says one changed byte anywhere: the first five (``%PDF-``) too."""
    pdf = bytearray(pdf_of(harness, issued))
    pdf[at] = ord("X")
    resp = upload(harness, bytes(pdf))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["result"] == "altered"


def test_an_appended_incremental_update_is_altered(harness: Harness,
                                                   issued: dict[str, Any]) -> None:
    original = pdf_of(harness, issued)
    writer = PdfWriter(io.BytesIO(original), incremental=True)
    writer.add_metadata({"/Producer": "someone else"})
    out = io.BytesIO()
    writer.write(out)
    updated = out.getvalue()
    assert updated.startswith(original) and len(updated) > len(original)
    assert upload(harness, updated).get_json()["result"] == "altered"


def test_a_pdf_that_is_not_ours_is_unknown(harness: Harness, issued: dict[str, Any]) -> None:
    out = io.BytesIO()
    canvas = Canvas(out)
    canvas.drawString(72, 720, "An unrelated document, code ABCD-EFGH-JKMN-PQRS-TVWX")
    canvas.save()
    body = upload(harness, out.getvalue()).get_json()
    assert body == {"result": "unknown", "document": None}
    assert upload(harness, b"%PDF-1.7 garbage, not parseable").get_json()["result"] == "unknown"


def test_non_pdf_and_oversize_uploads_are_refused(harness: Harness) -> None:
    not_pdf = upload(harness, b"PK\x03\x04 a zip file", "evil.pdf")
    assert not_pdf.status_code == 415
    assert not_pdf.content_type == "application/problem+json"
    limit = 20 * 1024 * 1024
    oversize = upload(harness, b"%PDF-" + b"0" * limit)
    assert oversize.status_code == 413
    assert oversize.content_type == "application/problem+json"
    far_over = upload(harness, b"%PDF-" + b"0" * (limit + 1024 * 1024))
    assert far_over.status_code == 413
    assert far_over.content_type == "application/problem+json"
    missing = harness.client.post("/verify", data={}, content_type="multipart/form-data")
    assert missing.status_code == 422


def test_every_verification_is_logged_without_personal_data(
        harness: Harness, issued: dict[str, Any]) -> None:
    harness.client.get(f"/verify/{issued['code']}", headers=JSON)
    harness.client.get("/verify/nonsense", headers=JSON)
    upload(harness, pdf_of(harness, issued))
    with harness.rt.db.transaction() as session:
        rows = [(v.method, v.code, v.result) for v in session.scalars(
            select(Verification).order_by(Verification.id))]
    code = codes.parse(issued["code"])
    assert rows == [("code", code, "valid"), ("code", None, "malformed"),
                    ("upload", code, "authentic")]
    assert set(Verification.__table__.columns.keys()) == {"id", "method", "code", "result",
                                                          "verified_at"}


def test_verification_needs_no_token(harness: Harness, issued: dict[str, Any]) -> None:
    assert harness.client.get(f"/verify/{issued['code']}").status_code == 200

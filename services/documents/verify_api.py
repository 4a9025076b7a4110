"""documents's public verification routes (no sign-in; the gateway rate-limits them).

``GET /verify/<code>`` answers by content negotiation: a browser (``Accept: text/html``) gets a
small page, an API client (``Accept: application/json``, or no preference) gets JSON. An
unknown or mistyped code is a 404 either way: problem+json for API clients, a page for
browsers. ``POST /verify`` takes the PDF itself (multipart field ``file``).
"""

from __future__ import annotations

from typing import Any

from flask import Response, render_template_string, request
from flask.views import MethodView
from flask_smorest import Blueprint
from werkzeug.datastructures import FileStorage

from servicekit.access import public
from servicekit.problems import Problem
from servicekit.service import runtime
from services.documents import verification
from services.documents.config import documents_of
from services.documents.schemas import UploadResultSchema, UploadSchema, VerificationSchema
from services.documents.verification import PDF_MAGIC

blp = Blueprint("verify", __name__, description="Public verification of issued documents")
HTML_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
                "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
                "Vary": "Accept", "Referrer-Policy": "no-referrer"}
STATUS_LABELS = {"valid": "有效 (valid)", "revoked": "已撤销 (revoked)"}

PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body{font-family:system-ui,"Microsoft YaHei","PingFang SC",sans-serif;max-width:40rem;
margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem} table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.45rem .3rem;border-bottom:1px solid #ddd;vertical-align:top}
th{width:8rem;color:#555;font-weight:normal} code{word-break:break-all}
.valid{color:#0a7a2f;font-weight:bold} .revoked,.bad{color:#b3261e;font-weight:bold}
</style></head><body>
{% if doc %}
<h1>文书核验结果 · Verification</h1>
<p class="{{ doc.status }}">{{ status_label }}</p>
<table>
<tr><th>法院 Court</th><td>{{ doc.court_name }} ({{ doc.court }})</td></tr>
<tr><th>文书 Document</th><td>{{ doc.kind_label }}</td></tr>
<tr><th>案号 Case</th><td>{{ doc.case_number }}</td></tr>
<tr><th>签发 Issued</th><td>{{ doc.issued_at_local }}</td></tr>
<tr><th>防伪码 Code</th><td><code>{{ doc.code }}</code></td></tr>
<tr><th>SHA-256</th><td><code>{{ doc.sha256 }}</code></td></tr>
</table>
<p>核对文书内容与上表一致；如需核对文件本身，可上传 PDF 比对 SHA-256。<br>
Check that the document matches the table; the SHA-256 identifies the exact file issued.</p>
{% else %}
<h1>未找到该文书 · Not found</h1>
<p class="bad">{{ hint }}</p>
{% endif %}
</body></html>
"""


def _wants_html() -> bool:
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def _page(status: int, **context: Any) -> Response:
    title = "文书核验 · Document verification"
    body = render_template_string(PAGE, title=title, **context)
    return Response(body, status=status, content_type="text/html; charset=utf-8",
                    headers=HTML_HEADERS)


@blp.route("/verify/<code>")
class VerifyCode(MethodView):
    @public
    @blp.response(200, VerificationSchema)
    @blp.alt_response(404, description="unknown or mistyped code (problem+json, or a page)")
    @blp.doc(responses={"200": {
        "description": "what the court issued under this code: JSON, or a page for a browser",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Verification"}},
            "text/html": {"schema": {"type": "string"}}}}})
    def get(self, code: str) -> Any:
        """Verify a document by its anti-counterfeit code (with or without hyphens)."""
        docs = documents_of(runtime())
        doc, hint = verification.lookup(runtime().db, code)
        if doc is None:
            if _wants_html():
                return _page(404, doc=None, hint=hint)
            raise Problem(404, "unknown-code", hint, headers={"Vary": "Accept"})
        view = verification.public_view(doc, docs.settings.verify_url(doc.code))
        if _wants_html():
            return _page(200, doc=view, status_label=STATUS_LABELS.get(doc.status, doc.status))
        return view, 200, {"Vary": "Accept", "Cache-Control": "no-store"}


@blp.route("/verify")
class VerifyUpload(MethodView):
    @public
    @blp.arguments(UploadSchema, location="files")
    @blp.response(200, UploadResultSchema)
    @blp.alt_response(413, description="larger than 20 MB")
    @blp.alt_response(415, description="not a PDF")
    def post(self, files: dict[str, FileStorage]) -> dict[str, Any]:
        """Upload a PDF: is it exactly a document this court issued?"""
        docs = documents_of(runtime())
        limit = docs.settings.max_upload_bytes
        upload = files["file"]
        data = upload.stream.read(limit + 1)
        if len(data) > limit:
            raise Problem(413, "file-too-large",
                          f"the file is larger than {limit // (1024 * 1024)} MB")
        if not data.startswith(PDF_MAGIC) and not verification.MARKER.search(data):
            # A file that still carries one of our codes is judged, whatever its first bytes:
            # an issued PDF with its header changed is "altered", not "not a PDF" (S8).
            raise Problem(415, "not-a-pdf", "the file is not a PDF (it must start with %PDF-)")
        result, doc = verification.verify_upload(runtime().db, data)
        view = (verification.public_view(doc, docs.settings.verify_url(doc.code))
                if doc is not None else None)
        return {"result": result, "document": view}

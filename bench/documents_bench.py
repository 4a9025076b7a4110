"""Certificate rendering: the documents service's renderer against bare reportlab.

``run(quick)`` returns a dict of figures (no file is written, nothing leaves 127.0.0.1):

* ``renderer_per_s``  ``services.documents.render.Renderer.render`` on a typical effectiveness
  certificate (glyph-coverage check, wrapped CJK text, the vector seal with its arc text, the
  QR code, metadata, subset font embedding, compression).
* ``bare_per_s``      the raw baseline: a reportlab ``Canvas`` with the *same* registered CJK
  font drawing the same lines of text with ``drawString`` and a QR code of the same URL the
  way reportlab documents it (``QrCodeWidget`` in a ``Drawing``), compressed, saved — what a
  plain reportlab page with this content costs. (The renderer draws its QR code from one
  encoding as a single path, which is why it can beat the baseline.)
* ``ratio``           renderer ÷ bare; target ≥ 0.5 (``met``).
* ``issuance_per_s``  for context, no target: the whole ``matters.certificate.requested``
  handler (render, blob write with fsync, document row, hash-chained log entry, outbox event)
  in one SQLite transaction each, as the embedded tier runs it.

Runs are interleaved (bare, renderer, bare, renderer, …) after a warm-up, so drift on a shared
machine hits both alike; each figure is the median of its runs (3, or 1 with ``quick``), and
every run is returned too. Every loop is bounded in count.
"""

from __future__ import annotations

import io
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from reportlab.graphics import renderPDF
from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen.canvas import Canvas

from services.documents import codes, fonts
from services.documents.render import Certificate, Party, Renderer, body_text

TARGET_RATIO = 0.5
BASE_URL = "http://127.0.0.1:8080/api/documents"


def certificate() -> Certificate:
    code = codes.new_code()
    return Certificate(
        court_name="广州市中级人民法院", case_number="(2026)粤01民初123号",
        parties=[Party("张三", "plaintiff"), Party("广州某某科技有限公司", "defendant")],
        effective_date=date(2026, 4, 1), service_number="SF20261123000123", code=code,
        verify_url=f"{BASE_URL}/verify/{codes.display(code)}", issued_at=datetime.now(UTC),
        seal_court_name="广州市中级人民法院", seal_name="广州市中级人民法院诉讼服务专用章",
        cause="民间借贷纠纷", judgment_title="民事判决书", decided_on=date(2026, 3, 1))


def bare_page(font: str, c: Certificate) -> bytes:
    """The baseline: the same text and QR code, drawn as plainly as reportlab allows."""
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=A4, pageCompression=1)
    lines = [c.court_name, "生效证明", f"案号：{c.case_number}", f"案由：{c.cause}",
             *(f"{p.role_label}：{p.name}" for p in c.parties), body_text(c), "特此证明。",
             c.court_name, f"服务编号：{c.service_number}", f"防伪码：{codes.display(c.code)}",
             f"核验真伪：扫描二维码或访问 {c.verify_url}"]
    canvas.setFont(font, 12)
    y = 780.0
    for line in lines:
        canvas.drawString(40, y, line)
        y -= 24
    widget = QrCodeWidget(c.verify_url, barLevel="M", barBorder=4)  # reportlab's own QR
    x0, y0, x1, y1 = widget.getBounds()
    drawing = Drawing(92, 92, transform=[92 / (x1 - x0), 0, 0, 92 / (y1 - y0), 0, 0])
    drawing.add(widget)
    renderPDF.draw(drawing, canvas, 72, 56)
    canvas.showPage()
    canvas.save()
    return out.getvalue()


def _rate(n: int, fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - started)


def _verification_rates(n: int) -> dict[str, float]:
    """Verification look-ups per second, in process (the embedded suite, one thread): straight
    into the documents app, and through the gateway (token-less public route, rate limiter on,
    with a limit too high to refuse anything)."""
    from sqlalchemy import select
    from werkzeug.test import Client

    from ecourt.embedded import Suite
    from servicekit.envelope import CloudEvent
    from services.documents.models import Document, Seal

    with tempfile.TemporaryDirectory(prefix="bench_verify_") as tmp:
        suite = Suite(tmp, rate_limit=10**9)
        rt = suite.runtimes["documents"]
        handler = _issue_handler(suite)
        with rt.db.transaction() as session:
            session.add(Seal(court="粤01", court_name="广州市中级人民法院",
                             seal_name="广州市中级人民法院诉讼服务专用章", version=1,
                             registered_by="bench", updated_at=datetime.now(UTC)))
        data = {"request_id": str(uuid.uuid4()), "application_id": str(uuid.uuid4()),
                "case_number": "(2026)粤01民初123号", "court": "粤01",
                "court_name": "广州市中级人民法院", "cause": "民间借贷纠纷",
                "parties": [{"name": "张三", "role": "plaintiff"}], "judgment": {},
                "effective_date": "2026-04-01", "service_number": "SF1",
                "applicant_account_id": str(uuid.uuid4())}
        with rt.db.transaction() as session:
            handler(session, CloudEvent("matters.certificate.requested", "/matters", data))
        with rt.db.transaction() as session:
            code = session.scalars(select(Document.code)).one()
        accept = {"Accept": "application/json"}
        direct, gateway = suite.apps["documents"].test_client(), Client(suite.gateway)

        def look(client: Client, path: str) -> None:
            resp = client.get(path, headers=accept)
            if resp.status_code != 200:
                raise RuntimeError(f"verification answered {resp.status_code}")
            resp.close()

        look(direct, f"/verify/{code}")
        look(gateway, f"/api/documents/verify/{code}")
        try:
            return {"verify_direct_per_s": _rate(n, lambda: look(direct, f"/verify/{code}")),
                    "verify_gateway_per_s": _rate(
                        n, lambda: look(gateway, f"/api/documents/verify/{code}"))}
        finally:
            suite.stop()


def _issue_handler(suite):  # type: ignore[no-untyped-def]
    from ecourt import registry

    return registry.get("documents").handlers(suite.runtimes["documents"])[
        "matters.certificate.requested"]


def _issuance_rate(n: int) -> float:
    from ecourt.runtime import make_runtime
    from servicekit.blobs import LocalBlobStore
    from servicekit.config import Settings
    from servicekit.envelope import CloudEvent
    from services.documents.app import SERVICE
    from services.documents.config import EXTRAS_KEY, Documents, DocumentsSettings
    from services.documents.models import Seal

    with tempfile.TemporaryDirectory(prefix="bench_documents_") as tmp:
        settings = Settings.from_env("documents", database_url=f"sqlite:///{tmp}/documents.db")
        rt = make_runtime(SERVICE, settings, None)
        blob_dir = Path(tmp) / "blobs"
        rt.extras[EXTRAS_KEY] = Documents(
            DocumentsSettings(BASE_URL, blob_dir, None, 20 * 1024 * 1024),
            LocalBlobStore(blob_dir))
        handler = SERVICE.handlers(rt)["matters.certificate.requested"]
        with rt.db.transaction() as session:
            session.add(Seal(court="粤01", court_name="广州市中级人民法院",
                             seal_name="广州市中级人民法院诉讼服务专用章", version=1,
                             registered_by="bench", updated_at=datetime.now(UTC)))

        def one() -> None:
            data = {"request_id": str(uuid.uuid4()), "application_id": str(uuid.uuid4()),
                    "case_number": "(2026)粤01民初123号", "court": "粤01",
                    "court_name": "广州市中级人民法院", "cause": "民间借贷纠纷",
                    "parties": [{"name": "张三", "role": "plaintiff"}],
                    "judgment": {"title": "民事判决书", "decided_on": "2026-03-01"},
                    "effective_date": "2026-04-01", "service_number": "SF1",
                    "applicant_account_id": str(uuid.uuid4())}
            with rt.db.transaction() as session:
                handler(session, CloudEvent("matters.certificate.requested", "/matters", data))

        one()  # warm-up
        try:
            return _rate(n, one)
        finally:
            rt.db.dispose()


def run(quick: bool) -> dict[str, Any]:
    runs, n = (1, 30) if quick else (3, 150)
    font = fonts.load()
    renderer = Renderer(font)
    sample = certificate()
    for _ in range(3):  # warm-up: font tables, QR encoder, code paths
        renderer.render(sample)
        bare_page(font.name, sample)
    bare_runs: list[float] = []
    renderer_runs: list[float] = []
    for _ in range(runs):
        bare_runs.append(_rate(n, lambda: bare_page(font.name, sample)))
        renderer_runs.append(_rate(n, lambda: renderer.render(sample)))
    bare = statistics.median(bare_runs)
    rendered = statistics.median(renderer_runs)
    ratio = rendered / bare
    result: dict[str, Any] = {
        "name": "certificate rendering (documents renderer vs bare reportlab page)",
        "unit": "documents/s", "n_per_run": n, "runs": runs,
        "renderer_per_s": rendered, "bare_per_s": bare, "ratio": ratio,
        "target_ratio": TARGET_RATIO, "met": ratio >= TARGET_RATIO,
        "renderer_runs": renderer_runs, "bare_runs": bare_runs,
        "pdf_bytes": len(renderer.render(sample)), "font": str(font.path),
    }
    try:
        result.update(_verification_rates(200 if quick else 1000))
    except Exception as exc:  # reported, never guessed
        result["verify_error"] = f"not measured: {exc.__class__.__name__}: {exc}"
    try:
        result["issuance_per_s"] = _issuance_rate(max(10, n // 3))
    except Exception as exc:  # reported, never guessed
        result["issuance_per_s"] = None
        result["issuance_error"] = f"not measured: {exc.__class__.__name__}: {exc}"
    return result


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=2, ensure_ascii=False))

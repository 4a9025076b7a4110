"""documents's app factory and service definition."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from servicekit.db import Database
from servicekit.service import Runtime, ServiceDefinition
from servicekit.web import ServiceSpec, create_service_app
from services.documents import api, ledger_api, verify_api
from services.documents.config import documents_of
from services.documents.handlers import CONSUMES, build_handlers
from services.documents.models import Base, Document, RenderRequest, Verification

#: multipart overhead allowed on top of the largest PDF ``POST /verify`` accepts
MULTIPART_SLACK = 256 * 1024


class DocumentsCollector:
    """Business gauges read at scrape time: documents by court and status, render requests
    by outcome, verifications by method and result."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self):  # type: ignore[no-untyped-def]
        docs = GaugeMetricFamily("documents_issued", "Issued documents",
                                 labels=["court", "status"])
        requests = GaugeMetricFamily("documents_render_requests",
                                     "Certificate requests by outcome", labels=["outcome"])
        checks = GaugeMetricFamily("documents_verifications", "Public verifications",
                                   labels=["method", "result"])
        with self.db.transaction() as session:
            for court, status, n in session.execute(
                    select(Document.court, Document.status, func.count())
                    .group_by(Document.court, Document.status)):
                docs.add_metric([court, status], n)
            for outcome, n in session.execute(
                    select(RenderRequest.outcome, func.count()).group_by(RenderRequest.outcome)):
                requests.add_metric([outcome], n)
            for method, result, n in session.execute(
                    select(Verification.method, Verification.result, func.count())
                    .group_by(Verification.method, Verification.result)):
                checks.add_metric([method, result], n)
        yield from (docs, requests, checks)


def create_app(rt: Runtime) -> Flask:
    docs = documents_of(rt)

    def blob_store() -> None:
        docs.blobs.check_writable()

    spec = ServiceSpec(
        "documents", "eCourt documents",
        "Court documents: rendering, anti-counterfeit codes, seals, hashes, verification.",
        [api.blp, verify_api.blp, ledger_api.blp], readiness=[blob_store],
        collectors=[DocumentsCollector(rt.db)],
    )
    app = create_service_app(spec, rt)
    app.config["MAX_CONTENT_LENGTH"] = docs.settings.max_upload_bytes + MULTIPART_SLACK
    return app


SERVICE = ServiceDefinition(name="documents", metadata=Base.metadata,
                            migrations=Path(__file__).parent / "migrations",
                            build_app=create_app, build_handlers=build_handlers,
                            consumes=CONSUMES, blob_store=lambda rt: documents_of(rt).blobs,
                            # the log names the same PDFs; kept as long as either does
                            blob_columns=("documents.sha256", "issuance_log.sha256"))

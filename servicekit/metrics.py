"""Prometheus metrics, correct under several gunicorn workers.

When ``PROMETHEUS_MULTIPROC_DIR`` is set (``ecourt serve`` sets it), each worker writes its
samples to files there and ``/metrics`` aggregates them with ``MultiProcessCollector``; a
worker that exits is marked dead by the gunicorn ``child_exit`` hook. Per-app collectors that
read the database at scrape time (outbox backlog, business gauges) live in the app's own
registry and are rendered beside the process metrics.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests handled",
                        ["service", "route", "method", "status"])
HTTP_LATENCY = Histogram("http_request_duration_seconds", "HTTP request latency",
                         ["service", "route", "method"],
                         buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
EVENTS_PUBLISHED = Counter("events_published_total", "Outbox rows confirmed by the broker",
                           ["service", "type"])
PUBLISH_FAILURES = Counter("outbox_publish_failures_total",
                           "Outbox publish failures (broker down, nack, unroutable)",
                           ["service", "reason"])
ROWS_PRUNED = Counter("kit_rows_pruned_total",
                      "Rows of the kit's tables (sent outbox rows, inbox entries, idempotency "
                      "keys) deleted once older than their retention", ["service", "table"])
AUDIT_SEALED = Counter("audit_entries_sealed_total",
                       "Audit-trail entries chained by the relay's sealer", ["service"])
AUDIT_SEAL_FAILURES = Counter("audit_seal_failures_total",
                              "Rounds of the relay's sealer that failed (retried a second "
                              "later; entries wait unsealed meanwhile)", ["service"])
EVENTS_CONSUMED = Counter("events_consumed_total",
                          "Events taken off a queue, by outcome "
                          "(handled, duplicate, ignored, retried, dead_lettered, malformed)",
                          ["service", "type", "outcome"])
WORKDAY_CALENDAR_UNCOVERED = Counter(
    "workday_calendar_uncovered_days_total",
    "Days looked up in a year with no public-holiday data (neither the chinese-calendar "
    "package nor ECOURT_WORKDAY_CALENDAR_FILE has it): counted Monday to Friday, so deadlines "
    "across that year's holidays come out early", ["year"])
#: set by a process given ECOURT_WORKDAY_CALENDAR_FILE (servicekit.workdays.use); the lowest
#: of the live workers, so one left on an older calendar shows
WORKDAY_CALENDAR_LAST_YEAR = Gauge(
    "workday_calendar_last_year",
    "The last year of the working-day calendar's unbroken run of years with holiday data "
    "(chinese-calendar and ECOURT_WORKDAY_CALENDAR_FILE)", multiprocess_mode="livemin")

#: the gateway's front end (``gateway.edge``), set by each worker's sweeper once a second and
#: summed over the live workers: how close they are to ``worker_connections`` and to
#: ``GATEWAY_BODY_BUDGET_BYTES`` (each worker's limit; refusals show as 503 in the requests)
GATEWAY_CONNECTIONS = Gauge("gateway_client_connections",
                            "Client connections the gateway's workers hold",
                            multiprocess_mode="livesum")
GATEWAY_BODIES_HELD = Gauge("gateway_request_bodies_bytes",
                            "Bytes of request bodies the gateway's workers hold, read or declared",
                            multiprocess_mode="livesum")


def render(app_registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """The text exposition of process-wide metrics plus ``app_registry``'s collectors."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    output = generate_latest(registry)
    if app_registry is not None:
        output += generate_latest(app_registry)
    return output, CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)


#: the methods a metric names; any other a client sends is counted as ``other``
STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """The ``method`` label of the request metrics (the services' and the gateway's): the
    method, or ``other`` for one outside ``STANDARD_METHODS``. Werkzeug's server takes any
    token as a method, and every new label value is a metric child kept for the life of the
    process: ``AAAA1 /healthz``, ``AAAA2 /healthz``, ... would grow memory without bound."""
    return method if method in STANDARD_METHODS else "other"

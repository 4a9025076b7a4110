"""``python -m bench.run [--quick] [--only SECTIONS]``: raw baselines and suite benches.

Prints a table and writes ``bench/RESULTS.md``. ``--quick`` is a smoke run (small counts, one
run per figure) written to ``bench/out/RESULTS.quick.md``, and ``--only`` writes
``bench/out/RESULTS.partial.md``, so neither replaces the real results. Each figure is the
median of its runs; each suite figure is compared with the raw baseline measured in the same
run, interleaved run by run so drift on a shared machine hits both alike. A bench that cannot
run is reported as "not measured: <reason>", never guessed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import baselines, nginx
from bench.common import (
    REDIS_URL,
    ROOT,
    Figure,
    loadavg,
    machine_info,
    pg_database,
    rabbit_vhost,
    tree_cpu,
    versions,
)

OUT_DIR = ROOT / "bench" / "out"
#: consumer processes in the end-to-end bench's target figure: a service's consumer scales by
#: replicas that share its queue (docker-compose.yml), as its API scales by workers
E2E_REPLICAS = 2
SECTIONS = ("amqp", "pg", "http", "memory", "documents")


@dataclass(frozen=True)
class Plan:
    runs: int
    n_sync: int
    n_stream: int
    window: int
    n_relay: int
    n_e2e: int
    n_pg: int
    wrk_seconds: float
    connections: int
    budget_s: float


FULL = Plan(runs=3, n_sync=3000, n_stream=20_000, window=1000, n_relay=20_000, n_e2e=10_000,
            n_pg=3000, wrk_seconds=5.0, connections=32, budget_s=14 * 60)
QUICK = Plan(runs=1, n_sync=500, n_stream=3000, window=1000, n_relay=3000, n_e2e=2000,
             n_pg=500, wrk_seconds=2.0, connections=32, budget_s=170)


class Results:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.figs: dict[str, Figure] = {}
        self.notes: list[str] = []
        self.started = time.monotonic()

    def fig(self, key: str, name: str, unit: str, note: str = "") -> Figure:
        if key not in self.figs:
            self.figs[key] = Figure(name, unit, note=note)
        return self.figs[key]

    def over_budget(self) -> bool:
        return time.monotonic() - self.started > self.plan.budget_s

    def fail(self, keys: list[str], reason: str) -> None:
        for key in keys:
            f = self.figs.get(key)
            if f is not None and not f.error:
                f.error = reason

    def attempt(self, keys: list[str], fn: Callable[[], tuple[float, ...] | float]) -> None:
        """Run one measurement that yields one value per key; on failure mark them all."""
        if any(self.figs[k].error for k in keys):
            return
        try:
            values = fn()
        except Exception as exc:  # noqa: BLE001 - the reason goes into RESULTS.md
            reason = short_reason(exc)
            self.fail(keys, reason)
            print(f"  ! {', '.join(keys)}: {reason}", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            return
        values = values if isinstance(values, tuple) else (values,)
        for key, value in zip(keys, values, strict=True):
            self.figs[key].runs.append(float(value))


def short_reason(exc: BaseException) -> str:
    """One line for the report: the exception's class and the first line of its message."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{exc.__class__.__name__}: {first[:200]}"


def _say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------

def section_amqp(r: Results) -> None:
    from bench import suite, suite_schema

    p = r.plan
    r.fig("raw.pika_sync", f"raw pika publish, wait for each confirm ({p.n_sync} msgs)", "msg/s")
    r.fig("raw.pika_stream", f"raw pika publish, {p.window} confirms in flight "
          f"({p.n_stream} msgs)", "msg/s")
    r.fig("raw.pika_consume", "raw pika consume, one manual ack each (prefetch 100)", "msg/s")
    r.fig("suite.relay", f"relay drains {p.n_relay} outbox rows (PikaPublisher)", "msg/s")
    r.fig("suite.e2e_one", f"events end to end, outbox → relay → broker → one consumer → "
          f"inbox + row ({p.n_e2e} events)", "events/s")
    r.fig("suite.e2e", f"events end to end, {E2E_REPLICAS} consumer replicas sharing the queue "
          f"({p.n_e2e} events)", "events/s")
    with rabbit_vhost() as amqp, pg_database() as (_, pub_url), pg_database() as (_, sink_url):
        try:
            r.notes.append(suite_schema.prepare(pub_url))
            suite_schema.prepare(sink_url)
        except Exception as exc:  # noqa: BLE001
            r.fail(["suite.relay", "suite.e2e_one", "suite.e2e"],
                   f"schema: {short_reason(exc)}")
        for i in range(p.runs):
            if r.over_budget():
                r.notes.append(f"amqp: time budget reached after {i} run(s)")
                break
            _say(f"amqp run {i + 1}/{p.runs}")
            r.attempt(["raw.pika_sync"], lambda: baselines.pika_confirm_sync(amqp, p.n_sync))
            r.attempt(["raw.pika_stream", "raw.pika_consume"], lambda: _stream_consume(amqp, p))
            r.attempt(["suite.relay"], lambda: suite.relay_drain(amqp, pub_url, p.n_relay))
            r.attempt(["suite.e2e_one"], lambda: suite.events_e2e(amqp, pub_url, sink_url,
                                                                  p.n_e2e, OUT_DIR))
            r.attempt(["suite.e2e"], lambda: suite.events_e2e(
                amqp, pub_url, sink_url, p.n_e2e, OUT_DIR, consumers=E2E_REPLICAS))


def _stream_consume(amqp: str, p: Plan) -> tuple[float, float]:
    pc = baselines.stream_then_consume(amqp, n=p.n_stream, window=p.window)
    return pc.publish_rate, pc.consume_rate


def section_pg(r: Results) -> None:
    from bench import suite_schema

    p = r.plan
    r.fig("raw.pg_1row", f"raw psycopg 3, 1-row transactions ({p.n_pg} tx)", "tx/s")
    r.fig("raw.pg_2row", f"raw psycopg 3, 2-row transactions ({p.n_pg} tx)", "tx/s")
    r.fig("suite.tx_bare", "Database.transaction(): state write", "tx/s")
    r.fig("suite.tx_emit", "Database.transaction(): state write + outbox.emit", "tx/s")
    with pg_database() as (dsn, url):
        try:
            suite_schema.prepare(url)
        except Exception as exc:  # noqa: BLE001
            r.fail(["suite.tx_bare", "suite.tx_emit"], f"schema: {short_reason(exc)}")
        for i in range(p.runs):
            if r.over_budget():
                r.notes.append(f"pg: time budget reached after {i} run(s)")
                break
            _say(f"pg run {i + 1}/{p.runs}")
            r.attempt(["raw.pg_1row", "raw.pg_2row"], lambda: baselines.pg_tx_rates(dsn, p.n_pg))
            r.attempt(["suite.tx_bare", "suite.tx_emit"], lambda: _overhead(url, p.n_pg))


def _overhead(url: str, n: int) -> tuple[float, float]:
    from bench import suite

    o = suite.outbox_overhead(url, n)
    return o.bare_tps, o.emit_tps


def section_http(r: Results) -> None:
    from bench import serving
    from bench.wrk import run_wrk

    p = r.plan
    c = p.connections
    for prefix, label in (("raw.flask", "raw Flask route, gunicorn 2 sync workers"),
                          ("suite.direct", "identity GET /healthz direct, 2 workers"),
                          ("suite.gateway", "same route through the gateway, 2+2 workers"),
                          ("suite.gateway_redis", "same route through a gateway whose limits "
                                                  "are shared through Redis, as deployed"),
                          ("raw.nginx", "same route through nginx (the reference hop), "
                                        "2+2 workers")):
        r.fig(f"{prefix}_rps", f"{label}, wrk {c} conns", "req/s")
        r.fig(f"{prefix}_p50", f"{label}, p50", "ms")
        r.fig(f"{prefix}_p99", f"{label}, p99", "ms")
    # CPU per answered request, from each process tree's /proc times over the wrk run
    r.fig("suite.direct_svc_cpu", "identity's CPU per request, direct", "µs")
    for prefix, hop in (("suite.gateway", "the gateway"),
                        ("suite.gateway_redis", "the gateway with limits in Redis"),
                        ("raw.nginx", "nginx")):
        r.fig(f"{prefix}_svc_cpu", f"identity's CPU per request behind {hop}", "µs")
        r.fig(f"{prefix}_cpu", f"{hop}'s CPU per request (user + system)", "µs")
        r.fig(f"{prefix}_cpu_user", f"{hop}'s user-mode CPU per request", "µs")
    proxied = ("suite.gateway", "suite.gateway_redis", "raw.nginx")
    keys = {pre: [f"{pre}_rps", f"{pre}_p50", f"{pre}_p99"]
            for pre in ("raw.flask", "suite.direct", *proxied)}
    keys["suite.direct"].append("suite.direct_svc_cpu")
    for pre in proxied:
        keys[pre] += [f"{pre}_svc_cpu", f"{pre}_cpu", f"{pre}_cpu_user"]

    def measure(url: str) -> tuple[float, float, float]:
        res = run_wrk(url, connections=c, duration=p.wrk_seconds)
        return res.rps, res.p50_ms, res.p99_ms

    def measure_cpu(url: str, service: int, proxy: int | None) -> tuple[float, ...]:
        """wrk against ``url``, and the µs of CPU the service's (and the proxy's) process
        tree spent per request it answered."""
        svc0 = tree_cpu(service)
        hop0 = tree_cpu(proxy) if proxy else None
        res = run_wrk(url, connections=c, duration=p.wrk_seconds)
        per = 1e6 / max(res.requests, 1)
        svc = (tree_cpu(service) - svc0).total * per
        if proxy is None or hop0 is None:
            return res.rps, res.p50_ms, res.p99_ms, svc
        hop = tree_cpu(proxy) - hop0
        return res.rps, res.p50_ms, res.p99_ms, svc, hop.total * per, hop.user * per

    why = serving.ecourt_available()
    served = [k for pre in ("suite.direct", *proxied) for k in keys[pre]]
    if why:
        r.fail(served, why)
    with (baselines.hello_server(OUT_DIR) as hello, pg_database() as (_, url),
          contextlib.ExitStack() as stack):
        api = hop = None
        if not why:
            try:
                api = stack.enter_context(serving.api_and_gateway(url, OUT_DIR, REDIS_URL))
            except Exception as exc:  # noqa: BLE001
                r.fail(served, short_reason(exc))
        if api is not None:
            try:
                tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-ngx-")))
                hop = stack.enter_context(nginx.in_front(
                    api.direct.split("//", 1)[1].split("/", 1)[0], serving.SERVICE,
                    serving.ROUTE, tmp, OUT_DIR / "nginx.log"))
            except Exception as exc:  # noqa: BLE001
                r.fail(keys["raw.nginx"], short_reason(exc))
        for i in range(p.runs):
            if r.over_budget():
                r.notes.append(f"http: time budget reached after {i} run(s)")
                break
            _say(f"http run {i + 1}/{p.runs}")
            r.attempt(keys["raw.flask"], lambda: measure(hello))
            if api is not None:
                r.attempt(keys["suite.direct"],
                          lambda: measure_cpu(api.direct, api.api_pid, None))
                r.attempt(keys["suite.gateway"],
                          lambda: measure_cpu(api.gateway, api.api_pid, api.gateway_pid))
                r.attempt(keys["suite.gateway_redis"],
                          lambda: measure_cpu(api.redis_gateway, api.api_pid,
                                              api.redis_gateway_pid))
                if hop is not None:
                    r.attempt(keys["raw.nginx"],
                              lambda: measure_cpu(hop.url, api.api_pid, hop.pid))


def section_memory(r: Results) -> None:
    from bench import serving

    r.fig("suite.embedded_rss", "embedded suite (ecourt run) idle RSS, process tree", "MB")
    r.fig("suite.api_rss", "one API worker RSS (ecourt serve identity --workers 1)", "MB")
    why = serving.ecourt_available()
    if why:
        r.fail(["suite.embedded_rss", "suite.api_rss"], why)
        return
    with pg_database() as (_, url):
        for i in range(r.plan.runs):
            if r.over_budget():
                r.notes.append(f"memory: time budget reached after {i} run(s)")
                break
            _say(f"memory run {i + 1}/{r.plan.runs}")
            r.attempt(["suite.embedded_rss"],
                      lambda: serving.embedded_idle_rss(OUT_DIR).tree_mb)
            r.attempt(["suite.api_rss"], lambda: serving.api_worker_rss(url, OUT_DIR).main_mb)


def section_documents(r: Results) -> None:
    """Certificates rendered per second beside a bare reportlab page (same font, a QR)."""
    from bench import documents_bench

    r.fig("raw.bare_pdf", "bare reportlab page, same CJK font and a QR code", "PDF/s")
    r.fig("suite.render", "documents renderer: an effectiveness certificate", "PDF/s")
    try:
        result = documents_bench.run(quick=r.plan.runs == 1)
    except Exception as exc:  # noqa: BLE001 - the reason goes into RESULTS.md
        r.fail(["raw.bare_pdf", "suite.render"], short_reason(exc))
        return
    for bare, rendered in zip(result["bare_runs"], result["renderer_runs"], strict=True):
        r.attempt(["raw.bare_pdf"], lambda v=bare: v)
        r.attempt(["suite.render"], lambda v=rendered: v)
    r.fig("suite.verify_direct", "verification look-ups straight into documents (in process)",
          "look-ups/s")
    r.fig("suite.verify_gateway", "verification look-ups through the gateway (in process)",
          "look-ups/s")
    if "verify_error" in result:
        r.fail(["suite.verify_direct", "suite.verify_gateway"], result["verify_error"])
    else:
        r.attempt(["suite.verify_direct"], lambda: result["verify_direct_per_s"])
        r.attempt(["suite.verify_gateway"], lambda: result["verify_gateway_per_s"])


RUNNERS = {"amqp": section_amqp, "pg": section_pg, "http": section_http,
           "memory": section_memory, "documents": section_documents}


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------

@dataclass
class Row:
    label: str
    key: str
    base: str | None = None
    kind: str = "info"  # info | ratio_min | ratio_max | abs_min | abs_max | added_max
    limit: float | None = None
    target: str = ""


ROWS = [
    Row("Raw: pika publish, wait per confirm", "raw.pika_sync"),
    Row("Raw: pika streaming confirms", "raw.pika_stream"),
    Row("Raw: pika consume + manual ack", "raw.pika_consume"),
    Row("Raw: psycopg 1-row tx", "raw.pg_1row"),
    Row("Raw: psycopg 2-row tx", "raw.pg_2row", "raw.pg_1row", "added_info"),
    Row("Raw: Flask route, req/s", "raw.flask_rps"),
    Row("Raw: Flask route, p50", "raw.flask_p50"),
    Row("Raw: Flask route, p99", "raw.flask_p99"),
    Row("Relay drain", "suite.relay", "raw.pika_stream", "ratio_min", 0.60,
        "≥ 0.60 × raw streaming"),
    Row("Events end to end, one consumer process", "suite.e2e_one", "raw.pika_consume"),
    Row(f"Events end to end, {E2E_REPLICAS} consumer replicas", "suite.e2e", "raw.pika_consume",
        "abs_min", 1000.0, "≥ 1,000 events/s"),
    Row("State write (servicekit)", "suite.tx_bare", "raw.pg_1row"),
    Row("State write + emit", "suite.tx_emit", "suite.tx_bare", "added_max", 0.25,
        "outbox adds ≤ 25 %"),
    Row("Service route direct, req/s", "suite.direct_rps", "raw.flask_rps"),
    Row("Service route direct, p50", "suite.direct_p50", "raw.flask_p50"),
    Row("Through gateway, req/s", "suite.gateway_rps", "suite.direct_rps", "ratio_min", 0.75,
        "≥ 0.75 × direct"),
    Row("Through gateway, p50", "suite.gateway_p50", "suite.direct_p50", "ratio_max", 1.3,
        "≤ 1.3 × direct"),
    Row("Through gateway, p99", "suite.gateway_p99", "suite.direct_p99"),
    Row("Through gateway, limits in Redis (as deployed), req/s", "suite.gateway_redis_rps",
        "suite.direct_rps"),
    Row("Through gateway, limits in Redis (as deployed), p50", "suite.gateway_redis_p50",
        "suite.direct_p50"),
    Row("Raw: through nginx (reference hop), req/s", "raw.nginx_rps", "suite.direct_rps"),
    Row("Raw: through nginx (reference hop), p50", "raw.nginx_p50", "suite.direct_p50"),
    Row("Through gateway vs through nginx, req/s", "suite.gateway_rps", "raw.nginx_rps"),
    Row("CPU/request: identity, direct", "suite.direct_svc_cpu"),
    Row("CPU/request: identity behind the gateway", "suite.gateway_svc_cpu",
        "suite.direct_svc_cpu"),
    Row("CPU/request: identity behind nginx", "raw.nginx_svc_cpu", "suite.direct_svc_cpu"),
    Row("CPU/request: the gateway", "suite.gateway_cpu", "raw.nginx_cpu"),
    Row("CPU/request: the gateway, limits in Redis", "suite.gateway_redis_cpu",
        "suite.gateway_cpu"),
    Row("CPU/request: nginx", "raw.nginx_cpu"),
    Row("CPU/request: the gateway, user mode", "suite.gateway_cpu_user", "raw.nginx_cpu_user"),
    Row("CPU/request: nginx, user mode", "raw.nginx_cpu_user"),
    Row("Embedded suite idle RSS", "suite.embedded_rss", None, "abs_max", 300.0, "≤ 300 MB"),
    Row("One API worker RSS", "suite.api_rss", None, "abs_max", 120.0, "≤ 120 MB"),
    Row("Raw: bare reportlab page + QR", "raw.bare_pdf"),
    Row("Certificate rendering", "suite.render", "raw.bare_pdf", "ratio_min", 0.50,
        "≥ 0.50 × bare page"),
    Row("Verification look-ups, direct", "suite.verify_direct"),
    Row("Verification look-ups, through the gateway", "suite.verify_gateway",
        "suite.verify_direct"),
]


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}" if value < 10 else \
        f"{value:.1f}"
    return f"{text} {unit}".strip()


def evaluate(row: Row, figs: dict[str, Figure]) -> dict[str, str]:
    fig = figs.get(row.key)
    base = figs.get(row.base) if row.base else None
    out = {"label": row.label, "figure": "—", "baseline": "—", "ratio": "—",
           "target": row.target or "—", "result": "—", "runs": "—"}
    if fig is None:
        out["figure"] = "not measured: section not run"
        out["result"] = "not measured" if row.kind != "info" else "—"
        return out
    if fig.value is None:
        out["figure"] = f"not measured: {fig.error or 'no runs'}"
        out["result"] = "not measured" if row.kind != "info" else "—"
        return out
    out["figure"] = _fmt(fig.value, fig.unit)
    out["runs"] = ", ".join(_fmt(v) for v in fig.runs)
    ratio = None
    if base is not None and base.value:
        out["baseline"] = _fmt(base.value, base.unit)
        ratio = fig.value / base.value
        out["ratio"] = f"{ratio:.2f}"
    elif base is not None:
        out["baseline"] = f"not measured: {base.error or 'no runs'}"
    if row.kind in ("added_info", "added_max") and ratio:
        out["ratio"] = f"{ratio:.2f} (adds {1 / ratio - 1:+.0%})"
    if row.kind in ("info", "added_info"):
        return out
    if row.kind == "added_max" and ratio:
        ok = 1 / ratio - 1 <= row.limit  # time per tx grows by bare/emit - 1
    elif row.kind in ("ratio_min", "ratio_max"):
        if ratio is None:
            out["result"] = "not measured"
            return out
        ok = ratio >= row.limit if row.kind == "ratio_min" else ratio <= row.limit
    elif row.kind == "abs_min":
        ok = fig.value >= row.limit
    elif row.kind == "abs_max":
        ok = fig.value <= row.limit
    else:
        return out
    out["result"] = "PASS" if ok else "MISS"
    return out


def render_table(rows: list[dict[str, str]]) -> str:
    head = ["Bench", "Figure (median)", "Runs", "Baseline", "Ratio", "Target", "Result"]
    keys = ["label", "figure", "runs", "baseline", "ratio", "target", "result"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        lines.append("| " + " | ".join(row[k].replace("|", "/") for k in keys) + " |")
    return "\n".join(lines)


def paired_ratios(figs: dict[str, Figure]) -> list[str]:
    """Per-run ratios (run i of the figure over run i of its baseline) of every compared row."""
    out = []
    for row in ROWS:
        fig, base = figs.get(row.key), figs.get(row.base or "")
        if (fig is None or base is None or fig.value is None or base.value is None
                or len(fig.runs) != len(base.runs) or not all(base.runs)):
            continue
        pairs = ", ".join(f"{a / b:.2f}" for a, b in zip(fig.runs, base.runs, strict=True))
        out.append(f"{row.label}: {pairs}")
    return out


def busy_warning(meta: dict[str, object]) -> list[str]:
    try:
        nproc = int(meta["machine"]["nproc"])  # type: ignore[index]
        load = float(str(meta["load_before"]).split()[0])  # before: other work, not ours
    except (KeyError, TypeError, ValueError):
        return []
    if load > 0.5 * nproc:
        return [f"**The machine was busy** (1-minute load {load:.2f} on {nproc} CPUs before "
                "the bench started): absolute figures are noisy; trust the side-by-side "
                "ratios more, and compare the per-run ratios below."]
    return []


def write_markdown(path: Path, r: Results, table: str, meta: dict[str, object]) -> None:
    machine = meta["machine"]
    vers = meta["versions"]
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `python -m bench.run{' --quick' if meta['quick'] else ''}` on "
        f"{meta['date']} in {meta['duration_s']:.0f} s. Each figure is the median of "
        f"{r.plan.runs} run(s); each suite figure is set against a raw baseline measured in "
        "the same run, interleaved run by run. Ratios are the suite median over the baseline "
        "median. See `bench/README.md` for what each bench measures.",
        "",
        "## Machine",
        "",
        *[f"- {k}: {v}" for k, v in machine.items()],  # type: ignore[union-attr]
        f"- load average before: {meta['load_before']}",
        f"- load average after: {meta['load_after']}",
        "",
        "## Versions",
        "",
        *[f"- {k}: {v}" for k, v in vers.items()],  # type: ignore[union-attr]
        "",
        "## Results",
        "",
        table,
        "",
        "## Notes",
        "",
        *[f"- {n}" for n in busy_warning(meta)],
        *[f"- {n}" for n in dict.fromkeys(r.notes)],
        "- per-run ratios (run i over baseline run i): "
        + ("; ".join(paired_ratios(r.figs)) or "—"),
        f"- sizes: {json.dumps(asdict(r.plan))}",
        "- 'adds' is the extra time per transaction: (baseline tx/s ÷ figure tx/s) − 1.",
        "- RSS is VmRSS from /proc/<pid>/status (shared pages are counted in every process).",
        "- The gateways' limits were too high to refuse anything (the limiter still runs on "
        "every request): the target rows' gateway counts in memory, the 'limits in Redis' one "
        "shares them through the machine's Redis (`gateway/synced_limiter.py`, synced every "
        "100 ms); the service used a fresh PostgreSQL database migrated by `ecourt serve`.",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small smoke run (< 3 minutes)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run ({', '.join(SECTIONS)})")
    parser.add_argument("--output", type=Path,
                        help="where to write the Markdown report (default: bench/RESULTS.md "
                        "for a full run of every section, else under bench/out/)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    if args.output:
        output = args.output
    elif args.quick:
        output = OUT_DIR / "RESULTS.quick.md"
    elif set(sections) != set(SECTIONS):
        output = OUT_DIR / "RESULTS.partial.md"  # only a full run replaces bench/RESULTS.md
    else:
        output = ROOT / "bench" / "RESULTS.md"
    OUT_DIR.mkdir(parents=True, exist_ok=True)

    started = time.monotonic()
    meta: dict[str, object] = {"quick": args.quick,
                               "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                               "machine": machine_info(), "load_before": loadavg()}
    _say(f"{'quick' if args.quick else 'full'} run, sections: {', '.join(sections)}")
    from bench.wrk import ensure_wrk

    if "http" in sections:
        try:
            ensure_wrk()
            nginx.ensure_nginx()
        except Exception as exc:  # noqa: BLE001 - the http section will report it
            print(f"  ! wrk/nginx: {exc}", file=sys.stderr)
    meta["versions"] = versions()
    results = Results(plan)
    for name in sections:
        try:
            RUNNERS[name](results)
        except Exception as exc:  # noqa: BLE001 - isolation failed (vhost, database)
            reason = short_reason(exc)
            results.notes.append(f"section {name} aborted: {reason}")
            for fig in results.figs.values():
                if not fig.runs and not fig.error:
                    fig.error = reason
            traceback.print_exc(file=sys.stderr)
    meta["load_after"] = loadavg()
    meta["duration_s"] = time.monotonic() - started

    rows = [evaluate(row, results.figs) for row in ROWS if row.key in results.figs]
    table = render_table(rows)
    print()
    print(table)
    print()
    write_markdown(output, results, table, meta)
    (OUT_DIR / (output.stem.lower() + ".json")).write_text(
        json.dumps({"meta": meta, "figures": {k: asdict(f) | {"value": f.value}
                                              for k, f in results.figs.items()}},
                   indent=2, ensure_ascii=False), encoding="utf-8")
    _say(f"wrote {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output} "
         f"in {meta['duration_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

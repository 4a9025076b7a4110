"""The gateway as a plain WSGI application: request id, routing, token, rate limit, forwarding.

For every request, in this order:

1. keep a valid ``X-Request-ID`` or make one; it goes upstream and comes back on every response;
   with ``GATEWAY_CORS_ORIGINS`` set, a browser's preflight is answered here (``preflight``)
   and every answer to a request with ``Origin`` gets the CORS headers (``gateway.cors``);
2. the gateway's own routes: ``/healthz`` (never rate limited), ``/metrics`` (to the
   deployment's own addresses only, ``gateway.metrics_access``), ``/docs``,
   ``/docs/openapi/<service>.json``;
3. ``/api/<service>/<rest>``: unknown service -> 404, ``/internal/...`` and a service's
   ``/metrics`` (scraped directly, never through the gateway) -> 404, dot segments -> 400;
4. the token: on a protected route a valid ``Authorization: Bearer`` token is required; on a
   public route a token is optional but, if sent, must be valid. Failures are 401 with
   ``WWW-Authenticate``. The header is forwarded unchanged (services verify again);
5. the rate limit, keyed by the token's ``sub`` or else the client address. It is counted
   *before* a 401 is returned, so floods of bad tokens are throttled per address too;
6. forward; 502 when the service cannot be reached or crashes, 504 when it is too slow; a
   service's own answer, 5xx included, passes through.

Errors are RFC 9457 problem+json. One JSON access-log line per request on ``gateway.access``
(method, path without the query string, status, duration, request id, upstream); query strings
and bodies are never logged.
"""

from __future__ import annotations

import bisect
import functools
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Response
from werkzeug.wsgi import ClosingIterator

from gateway import docs, routing
from gateway.cors import CorsAnswer, CorsPolicy, is_cors_header, policy_from
from gateway.metrics_access import MetricsReaders, readers_from
from gateway.ratelimit import RateLimiter
from gateway.upstream import (
    HttpUpstream,
    InProcessUpstream,
    UpstreamTimeout,
    UpstreamUnavailable,
    WSGIApp,
    make_session,
)
from servicekit import context, metrics
from servicekit.chain import AUDIT_LINE_FIELDS, LogChain
from servicekit.logs import scrub
from servicekit.problems import Problem, problem_response
from servicekit.tokens import (
    InvalidToken,
    KeysNeeded,
    KeysUnavailable,
    TokenVerifier,
    keys_unavailable,
)

log = logging.getLogger(__name__)
access_log = logging.getLogger("gateway.access")
#: the gateway's authentication refusals: it has no database, so they are log lines (the
#: services' own decisions are in their audit trails, ``servicekit.audit``)
audit_log = logging.getLogger("gateway.audit")
#: the lines are hash-chained per process (``ecourt audit verify-log`` checks collected logs)
AUDIT_CHAIN = LogChain("gateway")
AUDIT_FIELDS = AUDIT_LINE_FIELDS  # what each line's hash covers (servicekit.chain)

_OPENAPI_PATH = re.compile(r"/docs/openapi/([^/]+)\.json")
_SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_READ_METHODS = ("GET", "HEAD")

Upstream = InProcessUpstream | HttpUpstream
_MEMO_SIZE = 4096


class Gateway:
    """Build with ``create_gateway``."""

    def __init__(self, *, upstreams: dict[str, Upstream], verifier: TokenVerifier,
                 rate_limiter: RateLimiter, public_routes: routing.PublicRoutes,
                 trust_forwarded: bool, cors: CorsPolicy | None = None,
                 metrics_readers: MetricsReaders | None = None) -> None:
        self.upstreams = upstreams
        self.verifier = verifier
        self.rate_limiter = rate_limiter
        self.public_routes = public_routes
        self.trust_forwarded = trust_forwarded
        #: None: CORS is off, no request is looked at for it
        self.cors = cors
        #: who may read ``/metrics`` (``gateway.metrics_access``)
        self.metrics_readers = metrics_readers or readers_from()
        self._resolved: dict[str, tuple[Upstream, str]] = {}

    # -- WSGI entry point ---------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        rid = routing.request_id(environ)
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = str(environ.get("PATH_INFO") or "/")
        seen: dict[str, Any] = {"status": 0, "upstream": None}
        cors = self._cors_answer(environ, method)

        def respond(status: str, headers: list[tuple[str, str]],
                    exc_info: Any = None) -> Callable[[bytes], Any]:
            seen["status"] = int(status.split(" ", 1)[0])
            if cors is None:
                headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"]
            else:
                headers = [(k, v) for k, v in headers
                           if k.lower() != "x-request-id" and not is_cors_header(k)]
                headers.extend(cors.headers)
            headers.append(("X-Request-ID", rid))
            return start_response(status, headers, exc_info)

        with context.bound(rid):
            try:
                if cors is not None and cors.preflight:
                    body = self._preflight(environ, respond, cors)
                else:
                    body = self._dispatch(environ, respond, rid, method, path, seen)
            except Problem as problem:
                body = self._problem(problem, path, rid)(environ, respond)
            except Exception:
                log.exception("gateway error on %s %s", method, path)
                problem = Problem(500, "internal-error", "an unexpected error occurred")
                body = self._problem(problem, path, rid)(environ, respond)

        def log_access() -> None:
            record_access(method, path, seen["status"], started, rid, seen["upstream"])

        return ClosingIterator(body, [log_access])

    # -- CORS ---------------------------------------------------------------------------------

    def _cors_answer(self, environ: dict[str, Any], method: str) -> CorsAnswer | None:
        """What CORS adds to this request's answer; None (nothing) with CORS off or no
        ``Origin``."""
        if self.cors is None:
            return None
        origin = environ.get("HTTP_ORIGIN")
        if origin is None:
            return None
        return self.cors.answer_for(
            method, str(origin), "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ)

    def _preflight(self, environ: dict[str, Any], respond: Callable[..., Any],
                   cors: CorsAnswer) -> Iterable[bytes]:
        self.preflight(cors, routing.client_ip(environ, self.trust_forwarded))
        answer = Response(status=204)
        del answer.headers["Content-Type"]  # no content, no type (as the edge answers)
        return answer(environ, respond)

    def preflight(self, cors: CorsAnswer, client_ip: str) -> None:
        """Admit a browser's preflight, answered by the gateway itself (both front ends): it is
        counted against the client's address like any anonymous request (the 429 problem once
        over the limit); from an origin not allowed it is refused with 403 (no CORS header, so
        the browser refuses it too). Admitted, the answer is 204 with ``cors.headers``."""
        self._count(f"ip:{client_ip}")
        if not cors.allowed:
            raise Problem(403, "origin-not-allowed",
                          "this origin may not call the API from a browser")

    # -- dispatch -----------------------------------------------------------------------------

    def _dispatch(self, environ: dict[str, Any], respond: Callable[..., Any], rid: str,
                  method: str, path: str, seen: dict[str, Any]) -> Iterable[bytes]:
        if path == "/healthz":
            self._read_only(method)
            return _json({"status": "ok", "service": "gateway"})(environ, respond)
        if path == "/metrics":
            if not self.metrics_readers.allow(routing.client_ip(environ, self.trust_forwarded)):
                raise Problem(404, "not-found", "no such route")  # as a route that is not there
            self._read_only(method)
            body, content_type = metrics.render()
            return Response(body, content_type=content_type)(environ, respond)
        if path in ("/docs", "/docs/"):
            self._read_only(method)
            self._admit_environ(environ, method, path)
            html = docs.render_index(self.upstreams, str(environ.get("SCRIPT_NAME", "")))
            return Response(html, content_type="text/html; charset=utf-8")(environ, respond)
        match = _OPENAPI_PATH.fullmatch(path)
        if match:
            self._read_only(method)
            upstream = self._upstream(match.group(1))
            seen["upstream"] = upstream.name
            self._admit_environ(environ, method, path)
            try:
                spec = docs.rebased_openapi(upstream, upstream.name, rid)
            except docs.OpenApiUnavailable as exc:
                raise Problem(502, "bad-gateway", str(exc)) from exc
            except UpstreamTimeout as exc:
                raise Problem(504, "gateway-timeout", str(exc)) from exc
            except UpstreamUnavailable as exc:
                raise Problem(502, "bad-gateway", str(exc)) from exc
            return _json(spec)(environ, respond)

        upstream, rest = self.resolve(path)
        seen["upstream"] = upstream.name
        self._admit_environ(environ, method, path)
        try:
            answer = upstream.forward(environ, rest, rid, self.trust_forwarded)
        except UpstreamTimeout as exc:
            raise Problem(504, "gateway-timeout", str(exc)) from exc
        except UpstreamUnavailable as exc:
            raise Problem(502, "bad-gateway", str(exc)) from exc
        try:
            respond(answer.status, answer.headers)
        except BaseException:
            answer.close()
            raise
        return answer.body

    def resolve(self, path: str) -> tuple[Upstream, str]:
        """The upstream and its path for ``/api/<service>/<rest>``; raise the 400/404.

        Answers are remembered (a bounded memo: portals ask for the same paths again and
        again, and this runs on every request)."""
        known = self._resolved.get(path)
        if known is not None:
            return known
        answer = self._resolve(path)
        if len(self._resolved) >= _MEMO_SIZE:
            self._resolved.clear()
        self._resolved[path] = answer
        return answer

    def _resolve(self, path: str) -> tuple[Upstream, str]:
        try:
            parts = routing.split_api_path(path)
        except routing.BadPath as exc:
            raise Problem(400, "bad-path", "dot segments are not allowed in a path") from exc
        if parts is None:
            raise Problem(404, "not-found", "no such route")
        service, rest = parts
        upstream = self._upstream(service)
        if routing.is_internal(rest):
            raise Problem(404, "not-found", "no such route")
        return upstream, rest

    def _upstream(self, service: str) -> Upstream:
        upstream = self.upstreams.get(service)
        if upstream is None:
            # the name as the client wrote it: the path is WSGI's latin-1 text of its bytes
            raise Problem(404, "not-found",
                          f"there is no service named {routing.display_path(service)!r}")
        return upstream

    @staticmethod
    def _read_only(method: str) -> None:
        if method not in _READ_METHODS:
            raise Problem(405, "method-not-allowed", "only GET and HEAD are allowed here",
                          headers={"Allow": "GET, HEAD"})

    # -- token and rate limit -----------------------------------------------------------------

    def _admit_environ(self, environ: dict[str, Any], method: str, path: str) -> None:
        self.admit(method, path, str(environ.get("HTTP_AUTHORIZATION", "")),
                   routing.client_ip(environ, self.trust_forwarded))

    def admit(self, method: str, path: str, authorization: str, client_ip: str, *,
              allow_fetch: bool = True) -> dict[str, Any] | None:
        """Authenticate, then count the request; raise the 429 or 401 problem if any.

        ``allow_fetch=False`` raises ``KeysNeeded`` instead of fetching the JWKS (the asyncio
        front end then runs this again on a thread, so its event loop never waits on I/O)."""
        claims, refusal = self._authenticate(authorization, method, path, allow_fetch)
        self._count(f"sub:{claims['sub']}" if claims is not None else f"ip:{client_ip}")
        if refusal is not None:
            _log_refusal(refusal, method, path, client_ip)
            raise refusal
        return claims

    def _count(self, key: str) -> None:
        """One request of ``key`` against the rate limit; the 429 problem once over it."""
        allowed, retry_after = self.rate_limiter.hit(key)
        if not allowed:
            seconds = max(1, math.ceil(retry_after))
            raise Problem(429, "rate-limited", f"too many requests; retry in {seconds} s",
                          headers={"Retry-After": str(seconds)})

    def refusal_before_body(self, method: str, path: str, authorization: str, client_ip: str,
                            *, count: bool = True) -> Problem | None:
        """The refusal a request gets whatever its body holds — no such route, or no valid
        token for a protected one — or None. The asyncio front end asks before reading a body,
        so an anonymous client cannot make the gateway buffer up to the body limit per
        connection only to be told 401. A token refusal is counted against the client's
        address as ``admit`` counts it (a 429 once over the limit) unless ``count`` is False
        (a limiter that does I/O, never called on the event loop); a JWKS that would have to
        be fetched first leaves the decision to ``admit``."""
        try:
            self.resolve(path)
            _, refusal = self._authenticate(authorization, method, path, allow_fetch=False)
        except Problem as problem:
            return problem
        except KeysNeeded:
            return None
        if refusal is not None and count:
            try:
                self._count(f"ip:{client_ip}")
            except Problem as limited:
                return limited
        if refusal is not None:
            _log_refusal(refusal, method, path, client_ip)
        return refusal

    def _authenticate(self, authorization: str, method: str, path: str, allow_fetch: bool
                      ) -> tuple[dict[str, Any] | None, Problem | None]:
        header = authorization.strip()
        if not header:
            if self.public_routes.is_public(method, path):
                return None, None
            return None, Problem(401, "authentication-required",
                                 "a Bearer access token is required",
                                 headers={"WWW-Authenticate": "Bearer"})
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None, Problem(401, "invalid-token", "a Bearer access token is required",
                                 headers={"WWW-Authenticate": 'Bearer error="invalid_request"'})
        try:
            return self.verifier.verify(token, allow_fetch=allow_fetch), None
        except InvalidToken as exc:
            return None, Problem(401, "invalid-token", f"the access token is invalid: {exc}",
                                 headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        except KeysUnavailable as exc:
            return None, keys_unavailable(exc)

    @staticmethod
    def _problem(problem: Problem, path: str, rid: str) -> Response:
        return problem_response(problem, routing.display_path(path), rid)


_BOUNDS = (*metrics.HTTP_LATENCY._upper_bounds,)  # the buckets, ending with +Inf


@functools.lru_cache(maxsize=4096)
def _series(upstream: str | None, method: str, status: int) -> tuple[Any, Any]:
    """The labelled metric children of one kind of answer, looked up once (hot path)."""
    route = f"/api/{upstream}" if upstream else "gateway"
    return (metrics.HTTP_REQUESTS.labels("gateway", route, method, str(status)),
            metrics.HTTP_LATENCY.labels("gateway", route, method))


class AccessTally:
    """Answered requests added up in plain dicts and written to the metrics in bulk.

    Why: in prometheus-client's multiprocess mode every ``inc``/``observe`` takes a lock and
    writes an mmap'ed file, which costs as much as a tenth of a forwarded request. The asyncio
    front end adds its answers up here and ``flush``es once a second (its sweeper), so
    ``/metrics`` may lag by up to that second. The bucket a latency falls in is found as
    prometheus-client does (the first upper bound not below it).
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[str | None, str, int], list[Any]] = {}

    def add(self, upstream: str | None, method: str, status: int, elapsed: float) -> None:
        key = (upstream, method, status)
        entry = self._counts.get(key)
        if entry is None:
            entry = self._counts[key] = [0, 0.0, [0] * len(_BOUNDS)]
        entry[0] += 1
        entry[1] += elapsed
        entry[2][bisect.bisect_left(_BOUNDS, elapsed)] += 1

    def flush(self) -> None:
        counts, self._counts = self._counts, {}
        for (upstream, method, status), (n, total, buckets) in counts.items():
            counter, latency = _series(upstream, method, status)
            counter.inc(n)
            latency._sum.inc(total)
            for bucket, hits in zip(latency._buckets, buckets, strict=True):
                if hits:
                    bucket.inc(hits)


def record_access(method: str, path: str, status: int, started: float, rid: str,
                  upstream: str | None, tally: AccessTally | None = None) -> None:
    """Count and log one answered request (both front ends: this app and ``gateway.edge``,
    which passes its ``tally``). The metrics name a method outside the standard set
    ``other`` (``servicekit.metrics.method_label``); the log line keeps the method sent."""
    elapsed = time.perf_counter() - started
    label = metrics.method_label(method)
    if tally is not None:
        tally.add(upstream, label, status, elapsed)
    else:
        counter, latency = _series(upstream, label, status)
        counter.inc()
        latency.observe(elapsed)
    if access_log.isEnabledFor(logging.INFO):
        with context.bound(rid):
            access_log.info("%s %s %s", method, scrub(path), status, extra={
                "method": method, "path": scrub(path), "status": status,
                "duration_ms": round(elapsed * 1000, 1), "request_id": rid,
                "upstream": upstream})


def _log_refusal(refusal: Problem, method: str, path: str, client_ip: str) -> None:
    """One line per authentication refusal (a 401), whoever answers it. Refusals beyond the
    client's rate limit are 429s and are not logged one by one, so a flood of bad tokens
    costs a few lines per client, not one per request. A 503 (keys unavailable) decided
    nothing about the caller."""
    if refusal.status != 401:
        return
    shown_path = scrub(path)
    fields = {"at": datetime.now(UTC).isoformat(timespec="microseconds"),
              "decision": "auth.rejected", "status": refusal.status, "problem": refusal.slug,
              "method": method, "path": shown_path, "client_ip": client_ip}
    audit_log.warning("refused %s %s: %s", method, shown_path, refusal.slug,
                      extra=fields | AUDIT_CHAIN.link(fields))


def _json(payload: Any) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False), content_type="application/json")


def create_gateway(*, upstreams: dict[str, WSGIApp | str], verifier: TokenVerifier,
                   rate_limiter: RateLimiter,
                   public_routes: list[tuple[str, str]] | None = None,
                   timeout: float = 10.0, connect_timeout: float = 2.0,
                   trust_forwarded: bool | None = None, pool_maxsize: int = 64,
                   cors_origins: str | Iterable[str] | None = None,
                   metrics_from: str | None = None) -> Gateway:
    """The gateway WSGI app.

    ``upstreams`` maps a service name to its WSGI app (embedded) or base URL (distributed).
    ``public_routes`` (methods, path regex) *replaces* ``routing.DEFAULT_PUBLIC_ROUTES`` when
    given. ``timeout``/``connect_timeout`` apply to HTTP upstreams. ``trust_forwarded`` defaults
    to ``GATEWAY_TRUST_FORWARDED=1``, ``cors_origins`` (the origins whose pages may call the
    API, ``gateway.cors``) to ``GATEWAY_CORS_ORIGINS``; a bad origin is a ``ConfigError``.
    ``metrics_from`` (who may read ``/metrics``, ``gateway.metrics_access``) defaults to
    ``GATEWAY_METRICS_FROM``.
    """
    cors = policy_from(cors_origins)
    session = None
    built: dict[str, Upstream] = {}
    for name, target in upstreams.items():
        if not _SERVICE_NAME.fullmatch(name):
            raise ValueError(f"invalid service name {name!r}")
        if isinstance(target, str):
            if not target.startswith(("http://", "https://")):
                raise ValueError(f"upstream {name!r}: base URL must be http(s)://, got {target!r}")
            if session is None:
                session = make_session(pool_maxsize=pool_maxsize,
                                       pool_connections=max(len(upstreams), 1))
            built[name] = HttpUpstream(name, target, session, timeout=timeout,
                                       connect_timeout=connect_timeout)
        elif callable(target):
            built[name] = InProcessUpstream(name, target)
        else:
            raise TypeError(f"upstream {name!r} must be a WSGI app or a base URL")
    return Gateway(
        upstreams=built, verifier=verifier, rate_limiter=rate_limiter,
        public_routes=routing.PublicRoutes(
            routing.DEFAULT_PUBLIC_ROUTES if public_routes is None else public_routes),
        trust_forwarded=routing.trust_forwarded_from_env() if trust_forwarded is None
        else trust_forwarded,
        cors=cors,
        metrics_readers=readers_from(metrics_from),
    )

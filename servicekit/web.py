"""The Flask app factory every service shares: OpenAPI, problem+json, auth, request ids,
idempotency, metrics and health, so a service's own ``create_app`` is a few lines."""

from __future__ import annotations

import hmac
import http
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any

import marshmallow as ma
from flask import Flask, g, jsonify, request
from flask_smorest import Api, Blueprint
from flask_smorest.pagination import PaginationMetadataSchema
from flask_smorest.utils import prepare_response
from prometheus_client import CollectorRegistry
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from servicekit import audit, context, metrics
from servicekit.access import Access, access_of, public
from servicekit.api_docs import RETRY_AFTER, HookDocs, install_security_schemes
from servicekit.chain import LogChain
from servicekit.db import Database, database_unreachable, writes_committed
from servicekit.idempotency import UNSAFE, IdempotencyStore, request_hash, stores_answers
from servicekit.logs import scrub
from servicekit.media_types import refuse_unsupported_media_type
from servicekit.problems import PROBLEM_JSON, Problem, problem_response, slug_for
from servicekit.readiness import BrokerCheck
from servicekit.service import Runtime
from servicekit.tokens import InvalidToken, KeysUnavailable, TokenVerifier, keys_unavailable

log = logging.getLogger(__name__)
#: access a signed-in caller was granted: one JSON line per request (the trail in the database
#: holds the changes such requests made and every refusal; ``servicekit.audit``)
grants = logging.getLogger("servicekit.audit.grants")
#: the chain through this process's granted-read lines
GRANTS_CHAIN = LogChain("grants")
#: flask-smorest's own documentation routes, and Flask's static files.
_FRAMEWORK_ENDPOINTS = ("api-docs.", "static")
SERVICE_TOKEN_HEADER = "X-Service-Token"  # noqa: S105 - a header name, not a secret
#: how deep a JSON body may nest arrays and objects: far more than any route's schema (a few
#: levels), far less than where the parser's recursion fails (about 1,000 levels on CPython)
MAX_JSON_DEPTH = 64


class ProblemSchema(ma.Schema):
    """An error as every service and the gateway send it (RFC 9457, ``problem_response``).
    Other members may follow (``errors``, ``checks``, ...): unknown ones are allowed."""

    class Meta:
        unknown = ma.INCLUDE

    type = ma.fields.String(required=True, metadata={"description": "the problem's URI"})
    title = ma.fields.String(required=True)
    status = ma.fields.Integer(required=True)
    detail = ma.fields.String()
    instance = ma.fields.String(metadata={"description": "the request's path"})
    request_id = ma.fields.String()
    errors = ma.fields.Dict(metadata={"description": "what is wrong with each input field"})


class ProblemApi(Api):
    """flask-smorest with RFC 9457 error bodies instead of its default shape, answered and
    documented: every error response of the spec is ``application/problem+json``."""

    def _register_responses(self) -> None:
        # flask-smorest's own, with the problem schema and media type: the spec describes
        # what the services send (found by schemathesis: the spec said application/json
        # with flask-smorest's error shape)
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if not 100 <= status < 200 and status not in (204, 304):
                response["schema"] = ProblemSchema
            if status in (429, 503):
                response["headers"] = {"Retry-After": RETRY_AFTER}
            prepare_response(response, self.spec, PROBLEM_JSON)
            self.spec.components.response(status.name, response, lazy=True)
        default: dict[str, Any] = {"description": "a problem (RFC 9457)",
                                   "schema": ProblemSchema}
        prepare_response(default, self.spec, PROBLEM_JSON)
        self.spec.components.response(self.DEFAULT_ERROR_RESPONSE_NAME, default, lazy=True)

    def _register_pagination_header(self) -> None:
        # flask-smorest sends X-Pagination as a JSON object but documents it with a bare
        # object schema, which OpenAPI 3 reads as the "simple" style (``k,v,k,v``): the spec
        # said something the services never send (found by schemathesis). A header whose value
        # is JSON is documented with ``content`` (OpenAPI 3.0 §4.7.21: one media type).
        self.spec.components.header("PAGINATION", {
            "description": "Paging: a JSON object (total, total_pages, first_page, "
                           "last_page, page, previous_page, next_page)",
            "content": {"application/json": {"schema": PaginationMetadataSchema}},
        }, lazy=True)

    def handle_http_exception(self, error: HTTPException) -> Response:  # type: ignore[override]
        data = getattr(error, "data", None) or {}
        extensions: dict[str, Any] = {}
        if data.get("messages"):
            extensions["errors"] = data["messages"]
        headers = dict(data.get("headers") or {})
        allowed = getattr(error, "valid_methods", None)
        if allowed:  # a 405 says what is allowed (RFC 9110 §15.5.6)
            headers["Allow"] = ", ".join(allowed)
        problem = Problem(error.code or 500, slug_for(error.code or 500),
                          error.description if not extensions else "the request is invalid",
                          headers=headers, **extensions)
        if error.code == 422:
            problem.slug = "validation-error"
        return problem_response(problem, request_instance(), context.request_id())


#: a path prefix a service may be mounted under (``/api/<service>``, or deeper)
_PREFIX = re.compile(r"(?:/[A-Za-z0-9._~-]+)+")


def request_instance() -> str:
    """A problem's ``instance``: the path the client asked for, so the same error reads the
    same in both tiers and in the gateway's own problems. Behind the gateway the service sees
    its own path; the ``/api/<service>`` in front of it is SCRIPT_NAME in process and
    ``X-Forwarded-Prefix`` over HTTP (a prefix that is not a plain path is ignored)."""
    prefix = request.script_root or request.headers.get("X-Forwarded-Prefix", "")
    if prefix and not _PREFIX.fullmatch(prefix):
        prefix = ""
    return prefix + request.path


@dataclass
class ServiceSpec:
    """What a service brings to the factory."""

    name: str
    title: str
    description: str
    blueprints: list[Blueprint]
    readiness: list[Callable[[], None]] = field(default_factory=list)
    collectors: Iterable[object] = ()


def max_body_bytes() -> int:
    """The largest request body any route accepts (a 20 MB upload plus its multipart
    envelope), ``ECOURT_MAX_BODY_BYTES``: the services and the gateway's front end refuse
    the same bodies, so the gateway never buffers one that no service would take."""
    return int(os.environ.get("ECOURT_MAX_BODY_BYTES", 21 * 1024 * 1024))


def create_service_app(spec: ServiceSpec, rt: Runtime) -> Flask:
    db, service_secret, verifier = rt.db, rt.settings.service_secret, rt.verifier
    app = Flask(spec.name)
    app.extensions["ecourt.runtime"] = rt
    app.config.update(
        API_TITLE=spec.title, API_VERSION="1.0", OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/", OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={"info": {"description": spec.description}},
        JSON_AS_ASCII=False,
        MAX_CONTENT_LENGTH=max_body_bytes(),
    )
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.extensions["ecourt.db"] = db
    app.extensions["ecourt.service"] = spec.name
    api = ProblemApi(app, spec_kwargs={"extra_plugins": [HookDocs(app)]})
    install_security_schemes(api.spec, SERVICE_TOKEN_HEADER)
    app.register_blueprint(_health_blueprint(spec, db, rt.settings.broker_url))
    for blp in spec.blueprints:
        api.register_blueprint(blp)
    app.extensions["ecourt.api"] = api
    _install_hooks(app, spec, db, service_secret, verifier,
                   rt.settings.retention.idempotency_keys)
    check_every_route_declares_access(app)
    return app


def check_every_route_declares_access(app: Flask) -> None:
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(_FRAMEWORK_ENDPOINTS):
            continue
        view = app.view_functions[rule.endpoint]
        for method in rule.methods or ():
            if method in ("HEAD", "OPTIONS"):
                continue
            if access_of(view, method) is None:
                raise RuntimeError(f"{app.name}: {method} {rule.rule} declares no access rule "
                                   "(@public, @roles(...) or @internal)")


def _health_blueprint(spec: ServiceSpec, db: Database,  # type: ignore[no-untyped-def]
                      broker_url: str):
    from flask import Blueprint as FlaskBlueprint

    broker = BrokerCheck(broker_url)
    bp = FlaskBlueprint("health", __name__)
    registry = CollectorRegistry(auto_describe=True)
    for collector in spec.collectors:
        registry.register(collector)  # type: ignore[arg-type]

    @bp.get("/healthz")
    @public
    def healthz():  # type: ignore[no-untyped-def]
        return jsonify(status="ok", service=spec.name)

    @bp.get("/readyz")
    @public
    def readyz():  # type: ignore[no-untyped-def]
        checks: dict[str, str] = {}
        checks_to_run = [("database", db.ping), ("broker", broker),
                         *[(c.__name__, c) for c in spec.readiness]]
        for name, check in checks_to_run:
            try:
                check()
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"failed: {exc.__class__.__name__}"
        if all(v == "ok" for v in checks.values()):
            return jsonify(status="ready", service=spec.name, checks=checks)
        raise Problem(503, "not-ready", "a dependency is unavailable", checks=checks)

    @bp.get("/metrics")
    @public
    def metrics_view():  # type: ignore[no-untyped-def]
        body, content_type = metrics.render(registry)
        return Response(body, content_type=content_type)

    return bp


def _install_hooks(app: Flask, spec: ServiceSpec, db: Database, service_secret: str,
                   verifier: TokenVerifier | None, key_ttl: timedelta | None) -> None:
    store = IdempotencyStore(db, key_ttl)

    @app.before_request
    def start() -> Response | None:
        audit.forget_denied()
        g.request_id = context.request_id_from(request.headers.get("X-Request-ID", ""))
        g.ctx = context.bound(g.request_id)
        g.ctx.__enter__()
        g.started = time.perf_counter()
        _authenticate(verifier)
        g.audit = audit.bind(_actor(service_secret))
        _authorize(app, service_secret)
        # a body of a type the operation does not take: a 415, not "missing fields", and the
        # first of the looks at a body (its type is what is wrong, not what it holds); from
        # the headers alone, before the key is looked at (``servicekit.media_types``)
        refuse_unsupported_media_type()
        _refuse_deep_json()
        _refuse_unstorable_text()
        replay = _idempotent_replay(app, store)
        if replay is None:
            # after the key's reservation, which read and kept the body for its hash: a form
            # parsed first would leave no body to hash (a refusal here releases the key)
            _refuse_unreadable_form()
        return replay

    @app.after_request
    def finish(response: Response) -> Response:
        if getattr(g, "idem", None):
            key, principal, writes_before = g.idem
            store.finish(key, principal, response, changed=writes_committed() > writes_before)
        response.headers["X-Request-ID"] = getattr(g, "request_id", "")
        route = request.url_rule.rule if request.url_rule else "unmatched"
        method = metrics.method_label(request.method)
        metrics.HTTP_REQUESTS.labels(spec.name, route, method, str(response.status_code)).inc()
        if hasattr(g, "started"):
            metrics.HTTP_LATENCY.labels(spec.name, route, method).observe(
                time.perf_counter() - g.started)
        if g.get("claims") and response.status_code < 400 and grants.isEnabledFor(logging.INFO):
            _log_grant(route, response.status_code)
        return response

    @app.teardown_request
    def unbind(_exc: BaseException | None) -> None:
        bound = g.pop("audit", None)
        if bound is not None:
            audit.unbind(bound)
        ctx = g.pop("ctx", None)
        if ctx is not None:
            ctx.__exit__(None, None, None)

    @app.errorhandler(Problem)
    def on_problem(problem: Problem) -> Response:
        if problem.status in (401, 403) or audit.denied_subject():
            _record_refusal(db, problem, service_secret)
        return problem_response(problem, request_instance(), getattr(g, "request_id", None))

    @app.errorhandler(Exception)
    def on_crash(exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return app.extensions["ecourt.api"].handle_http_exception(exc)
        if database_unreachable(exc):
            # a restart, a failover, a cut line or a busy SQLite file: the transaction rolled
            # back with nothing written, and trying again later is the right thing to do
            log.warning("database unavailable on %s %s: %s", request.method, request.path,
                        _db_error_name(exc))
            return problem_response(database_unavailable(), request_instance(),
                                    getattr(g, "request_id", None))
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(Problem(500, "internal-error", "an unexpected error occurred"),
                                request_instance(), getattr(g, "request_id", None))


def database_unavailable() -> Problem:
    return Problem(503, "database-unavailable",
                   "the service cannot reach its database; try again shortly",
                   headers={"Retry-After": "5"})


def _db_error_name(exc: Exception) -> str:
    """The error's class and SQLSTATE, never its text (which may quote the statement)."""
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None)
    name = type(orig).__name__ if orig is not None else type(exc).__name__
    return f"{name} ({state})" if state else name


def _client_address() -> str:
    """Where the request came from: the hop our gateway appended to ``X-Forwarded-For`` (the
    right-most), else the peer. A record, not a decision: identity's throttling has its own,
    stricter rule (``services.identity.api.client_ip``)."""
    hops = request.headers.get("X-Forwarded-For", "").split(",")
    return (hops[-1].strip() or request.remote_addr or "")[:100]


def _actor(service_secret: str) -> audit.Actor:
    """Who the audit trail names for this request: the token's subject, another service (with
    the service secret), or anonymous."""
    claims = g.get("claims") or {}
    if claims.get("sub"):
        return audit.Actor(str(claims["sub"]), tuple(claims.get("roles") or ()),
                           _client_address())
    given = request.headers.get(SERVICE_TOKEN_HEADER, "")
    if given and hmac.compare_digest(given, service_secret):
        return audit.Actor("service", (), _client_address())
    return audit.Actor("anonymous", (), _client_address())


def _log_grant(route: str, status: int) -> None:
    """One chained log line per read granted (``GRANTS_CHAIN``): reads change nothing and are
    not written to the database, yet an authorization decision must be tamper-evident
    (RELIABILITY, Audit); ``ecourt audit verify-log`` checks the collected lines."""
    actor = audit.current()
    objects = {key: scrub(str(value)) for key, value in (request.view_args or {}).items()}
    fields = {"at": datetime.now(UTC).isoformat(timespec="microseconds"),
              "decision": "access.granted", "actor": actor.who, "roles": ",".join(actor.roles),
              "client_ip": actor.source, "method": request.method, "route": route,
              "objects": objects, "status": status}
    grants.info("granted %s %s to %s", request.method, route, actor.who,
                extra=fields | GRANTS_CHAIN.link(fields))


def _record_refusal(db: Database, problem: Problem, service_secret: str) -> None:
    """An authentication or authorization decision that refused the request: written in its
    own transaction (the request's rolled back), naming the object when the view named one
    (``servicekit.audit.note_denied``), else the route."""
    # an unmatched path is the client's text: masked, as in the logs
    route = request.url_rule.rule if request.url_rule else scrub(request.path)
    subject = audit.denied_subject() or f"route:{request.method} {route}"
    action = "auth.rejected" if problem.status == 401 else "access.denied"
    actor = audit.current() if g.get("audit") is not None else _actor(service_secret)
    with audit.acting(actor):
        audit.record_alone(db, action, subject=subject, outcome=audit.DENIED, detail={
            "status": problem.status, "problem": problem.slug,
            "method": request.method, "route": route})


def _authenticate(verifier: TokenVerifier | None) -> None:
    g.claims = None
    header = request.headers.get("Authorization", "")
    if not header:
        return
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token or verifier is None:
        raise Problem(401, "invalid-token", "a Bearer access token is required",
                      headers={"WWW-Authenticate": "Bearer"})
    try:
        g.claims = verifier.verify(token.strip())
    except InvalidToken as exc:
        raise Problem(401, "invalid-token", str(exc),
                      headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from exc
    except KeysUnavailable as exc:
        raise keys_unavailable(exc) from exc


def _authorize(app: Flask, service_secret: str) -> None:
    if request.url_rule is None or request.endpoint is None:
        return  # 404/405 follow
    if request.endpoint.startswith(_FRAMEWORK_ENDPOINTS):
        return
    access: Access | None = access_of(app.view_functions[request.endpoint], request.method)
    if access is None or access.kind == "public":
        return
    if access.kind == "internal":
        given = request.headers.get(SERVICE_TOKEN_HEADER, "")
        if not given or not hmac.compare_digest(given, service_secret):
            raise Problem(403, "forbidden", "this route is for other services only")
        return
    if not g.claims:
        raise Problem(401, "authentication-required", "sign in to use this route",
                      headers={"WWW-Authenticate": "Bearer"})
    if access.roles and not access.roles.intersection(g.claims.get("roles") or []):
        raise Problem(403, "forbidden", "your role may not use this route")


#: a JSON string in a body's bytes (UTF-8: no byte of a multi-byte character is ASCII); one
#: left open runs to the end, as the parser reads it (and each quote is tried once, not again
#: from every escaped quote after it: linear time)
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
#: every byte but the four brackets, for ``bytes.translate`` to delete
_NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def _json_depth(raw: bytes) -> int:
    """How deep a JSON body nests arrays and objects, without parsing it: the brackets outside
    strings, counted. A body in UTF-16 or UTF-32 (it has NUL bytes) is read as UTF-8 first; one
    that decodes in none is 0, left to the view's parser, which refuses it."""
    if b"\x00" in raw:
        try:
            raw = raw.decode(json.detect_encoding(raw), "surrogatepass").encode(
                "utf-8", "surrogatepass")
        except UnicodeError:
            return 0
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_A_BRACKET)
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)


def _refuse_deep_json() -> None:
    """A JSON body nested more than ``MAX_JSON_DEPTH`` deep is refused with a 400 before any
    parser sees it: Python's recursed to its limit and raised ``RecursionError``, which neither
    webargs nor ``request.get_json(silent=True)`` takes for bad JSON, so ``[`` sent 100,000
    times was a 500. A body with no more opening brackets than the limit (most: two counts of
    its bytes) cannot be that deep and is not looked at further."""
    if not request.is_json:
        return
    raw = request.get_data(cache=True)
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return
    if _json_depth(raw) > MAX_JSON_DEPTH:
        raise Problem(400, "nested-too-deeply",
                      f"the JSON body nests arrays and objects more than {MAX_JSON_DEPTH} "
                      "levels deep; no route takes that many")


#: the bytes by which a JSON body may spell a character no text can hold: the escape of U+0000
#: or of a UTF-16 surrogate (JSON's hex digits may be upper-case: ``\\uD800``), a NUL byte (a
#: body in UTF-16 or UTF-32 has them too), a surrogate in UTF-8's pattern (``ED A0..BF``, which
#: is not UTF-8, yet Python's JSON parser takes it from bytes)
_SUSPECT_BYTES = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])|\x00|\xed[\xa0-\xbf]")
#: a surrogate left alone once JSON's parser joined each pair into the character it spells
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _unstorable_character(value: Any) -> str | None:
    """The first character in a parsed JSON value's strings (keys and values, at any depth)
    that no text can hold: U+0000 (PostgreSQL's text refuses it) or a lone surrogate (UTF-8
    cannot encode it); None when there is none."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "\x00"
            found = _LONE_SURROGATE.search(item)
            if found:
                return found.group()
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _refuse_unstorable_text() -> None:
    """Text that no column and no answer can hold is refused with a 400, before anything is
    done (RELIABILITY S7): U+0000, which PostgreSQL text cannot hold (psycopg raises
    ``DataError``), and a lone UTF-16 surrogate (``"\\ud800"``), which UTF-8 cannot encode
    (SQLite's and psycopg's encoders and the answer's raise ``UnicodeEncodeError``). Either was
    a 500 on every route that kept or echoed the text.

    Only a JSON body that holds one of ``_SUSPECT_BYTES`` is parsed here: the cheap look covers
    every other request. A body that does not parse is left to the view, whose own parser
    refuses it. The path and the query string are looked at too: a path parameter or a filter
    reaches the database as text just the same (werkzeug decodes them with replacement
    characters, so they hold no surrogate)."""
    if "\x00" in request.path or b"%00" in request.query_string \
            or b"\x00" in request.query_string:
        raise Problem(400, "invalid-character",
                      "the request's path or query holds the character U+0000 (NUL); "
                      "no text may contain it")
    if not request.is_json:
        return
    raw = request.get_data(cache=True)
    if not _SUSPECT_BYTES.search(raw):
        return
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):
        return
    found = _unstorable_character(parsed)
    if found == "\x00":
        raise Problem(400, "invalid-character",
                      "the request body holds the character U+0000 (NUL) in a string; "
                      "no text may contain it")
    if found is not None:
        raise Problem(400, "invalid-character",
                      f"the request body holds U+{ord(found):04X}, a UTF-16 surrogate that "
                      "is not half of a pair, in a string; text must be Unicode characters "
                      "(a pair such as \\ud83d\\ude00 spells one, U+1F600)")


#: the bodies whose fields werkzeug parses into ``request.form``
_FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")


def _refuse_unreadable_form() -> None:
    """A form no view can read is refused with a 422, before any view runs:

    * a part of a multipart body that names no field (``Content-Disposition: form-data`` with
      no ``name``, or one werkzeug cannot read): RFC 7578 §4.2 requires one, werkzeug files such
      a part under the key ``None``, and this check and the views' schemas, which take every
      key for a field's name, failed on it with a 500;
    * a form field (its name or its text) holding U+0000, named in the answer: the answer
      identity's form schemas gave alone (``FormSchema``), kept so that a form is refused the
      same way in every service (a JSON body's is the 400 of ``_refuse_unstorable_text``).
      Other services' forms went on to their views, where a party's name with it was "no such
      party" and a field named with it was taken. A file's name is
      ``servicekit.uploads.safe_filename``'s to refuse."""
    if request.mimetype not in _FORMS:
        return
    fields = request.form.items(multi=True)
    if None in request.form or None in request.files:
        raise Problem(422, "validation-error",
                      "a part of the form names no field: each part of a multipart/form-data "
                      "body needs Content-Disposition: form-data; name=\"...\"",
                      errors={"form": {"": ["a part without a field name"]}})
    held = sorted({name for name, value in fields if "\x00" in name or "\x00" in value})
    if held:
        raise Problem(422, "validation-error",
                      f"the form field{'s' if len(held) > 1 else ''} "
                      f"{', '.join(map(repr, held))} hold{'' if len(held) > 1 else 's'} the "
                      "character U+0000 (NUL); no text may contain it",
                      errors={"form": {name: ["must not contain the character U+0000 (NUL)"]
                                       for name in held}})


def _idempotent_replay(app: Flask, store: IdempotencyStore) -> Response | None:
    g.idem = None
    key = request.headers.get("Idempotency-Key")
    if key is None or request.method not in UNSAFE:
        return None
    view = app.view_functions.get(request.endpoint or "")
    if view is None or not stores_answers(view, request.method):
        # no route (its 404/405 changes nothing and keeps no key), or a live credential
        # (``answer_not_stored``): the key is ignored
        return None
    principal = str((g.claims or {}).get("sub", "anonymous"))
    digest = request_hash(request.method, request.full_path, request.content_type or "",
                          request.get_data())
    replay = store.begin(key, principal, request.method, request.path, digest)
    if replay is None:  # reserved: what the request commits from here on is its change
        g.idem = (key, principal, writes_committed())
    return replay

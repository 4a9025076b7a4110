"""Path parsing, public routes, request ids and client addresses for the gateway.

Decisions written down here:

* ``/api/<service>/<rest>`` goes to ``<service>``'s ``/<rest>``. The check is made on the decoded
  path the upstream will see (PATH_INFO), so ``%2F``, ``%69nternal`` or ``//internal`` tricks
  cannot reach a service-to-service route: any path whose first non-empty segment is
  ``internal`` (case-insensitive, ignoring ``;params``) answers 404, and dot segments
  (``.``/``..``) are refused outright (400) instead of being normalised. A first segment
  ``metrics`` answers 404 the same way: each service's ``/metrics`` is for Prometheus, which
  scrapes the services directly, never through the gateway (through it, anyone signed in
  would read per-court business figures and run their queries on demand). The gateway's own
  ``/metrics``, and ``/api/<service>/healthz`` and ``readyz``, are not affected.
* Routes are protected by default. ``DEFAULT_PUBLIC_ROUTES`` is the explicit allow-list of
  (methods, path regex) pairs, matched with ``re.fullmatch`` against the gateway path; ``HEAD``
  matches wherever ``GET`` does. A ``public_routes`` list given to ``create_gateway`` *replaces*
  this list (extend it with ``[*DEFAULT_PUBLIC_ROUTES, ...]``).
* The client address is ``REMOTE_ADDR``. With ``GATEWAY_TRUST_FORWARDED=1`` (only behind a proxy
  we run that appends the client's address to ``X-Forwarded-For``, such as an Ingress) it is
  the right-most ``X-Forwarded-For`` entry, all the request's lines read in order as one list:
  the one our proxy appended, which a client cannot forge (left-most entries can be). It is the
  last hop of ``gateway.headers.forwarded_chain``, the ``X-Forwarded-For`` a service receives,
  so the services' right-most hop is this address too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.headers import forwarded_chain
from servicekit.context import request_id_from

API_PREFIX = "/api/"
REQUEST_ID_HEADER = "X-Request-ID"
_SERVICE = r"[a-z][a-z0-9-]*"

#: (methods, path regex). Methods: ``"GET"``, ``"GET|POST"`` or ``"*"``.
DEFAULT_PUBLIC_ROUTES: list[tuple[str, str]] = [
    # the gateway's own pages
    ("GET", r"/healthz"),
    ("GET", r"/docs/?"),
    ("GET", rf"/docs/openapi/{_SERVICE}\.json"),
    # every service's probes and contract
    ("GET", rf"/api/{_SERVICE}/(healthz|readyz|openapi\.json)"),
    # identity: registration, login, the public keys
    ("POST", r"/api/identity/accounts"),
    ("POST", r"/api/identity/tokens"),
    ("POST", r"/api/identity/tokens/(refresh|revoke)"),  # the access token may have expired
    # identity: other ways in — captcha, SMS codes, password reset, QR tickets (the web polls)
    ("POST", r"/api/identity/(captchas|sms-codes|tokens/sms|password-resets|qr-tickets)"),
    ("GET", r"/api/identity/qr-tickets/[A-Za-z0-9_-]{20,100}"),
    ("GET", r"/api/identity/\.well-known/jwks\.json"),
    # documents: anyone may verify an issued document
    ("GET|POST", r"/api/documents/verify(/.*)?"),
    # documents: anyone may pin and check the issuance log's hashes (a witness)
    ("GET", r"/api/documents/ledger(/[0-9]{1,18})?"),
]


@dataclass(frozen=True)
class _Rule:
    methods: frozenset[str] | None  # None: any method
    pattern: re.Pattern[str]


class PublicRoutes:
    """The allow-list of routes that need no token.

    Each method's rules are joined into one alternation, so a request costs one regex match
    however long the list grows (the gateway asks on every request)."""

    def __init__(self, routes: Iterable[tuple[str, str]]) -> None:
        self._rules: list[_Rule] = []
        for methods, regex in routes:
            names = None if methods.strip() == "*" else frozenset(
                m.strip().upper() for m in methods.split("|") if m.strip())
            self._rules.append(_Rule(names, re.compile(regex, re.DOTALL)))
        self._by_method: dict[str, re.Pattern[str] | None] = {}
        self._memo: dict[tuple[str, str], bool] = {}

    def _pattern(self, method: str) -> re.Pattern[str] | None:
        if method not in self._by_method:
            parts = [f"(?:{rule.pattern.pattern})" for rule in self._rules
                     if rule.methods is None or method in rule.methods]
            if len(self._by_method) < 64:  # methods are few; never grow without bound
                self._by_method[method] = _joined(parts)
            else:
                return _joined(parts)
        return self._by_method[method]

    def is_public(self, method: str, path: str) -> bool:
        known = self._memo.get((method, path))
        if known is None:
            verb = "GET" if method.upper() == "HEAD" else method.upper()
            pattern = self._pattern(verb)
            known = pattern is not None and pattern.fullmatch(path) is not None
            if len(self._memo) >= 4096:  # bounded: paths come from clients
                self._memo.clear()
            self._memo[(method, path)] = known
        return known


def _joined(parts: list[str]) -> re.Pattern[str] | None:
    """One alternation of a method's rules. DOTALL: a path is matched whole, and a decoded
    ``%0A`` in it (``/verify/a%0Ab``) must not turn a public route into a protected one."""
    return re.compile("|".join(parts), re.DOTALL) if parts else None


class BadPath(ValueError):
    """The path contains dot segments."""


def split_api_path(path: str) -> tuple[str, str] | None:
    """``/api/identity/tokens`` -> ``("identity", "/tokens")``; not under ``/api/`` -> None."""
    if not path.startswith(API_PREFIX):
        return None
    service, slash, rest = path[len(API_PREFIX):].partition("/")
    if not service:
        return None
    rest = slash + rest if slash else "/"
    if "." in rest and any(s.split(";", 1)[0] in (".", "..") for s in rest.split("/")):
        raise BadPath(path)
    return service, rest


#: a service path whose first segment is one of these is never forwarded (see the module)
HIDDEN_SEGMENTS = frozenset({"internal", "metrics"})


def is_internal(rest: str) -> bool:
    """True for the routes the gateway never exposes: the service-to-service routes and each
    service's ``/metrics``."""
    upper = rest.upper()
    if "INTERNAL" not in upper and "METRICS" not in upper:
        return False
    segments = [s.split(";", 1)[0] for s in rest.split("/") if s]
    return bool(segments) and segments[0].lower() in HIDDEN_SEGMENTS


def display_path(path: str) -> str:
    """A request's path as text, for a problem's ``instance``. WSGI, and the asyncio front end
    after it, carry the path's bytes as latin-1 text (PEP 3333); a client's non-ASCII path is
    UTF-8, so it is decoded once more (bytes that are not UTF-8 become U+FFFD)."""
    try:
        return path.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:  # already decoded text
        return path


def request_id(environ: Mapping[str, Any]) -> str:
    """Keep a well-formed incoming ``X-Request-ID``, otherwise make one."""
    return request_id_from(str(environ.get("HTTP_X_REQUEST_ID", "")))


def trust_forwarded_from_env() -> bool:
    return os.environ.get("GATEWAY_TRUST_FORWARDED", "").strip().lower() in ("1", "true", "yes")


def client_ip(environ: Mapping[str, Any], trust_forwarded: bool) -> str:
    """``client_address`` for a WSGI request (the server joins several ``X-Forwarded-For``
    lines into one value, in order)."""
    return client_address(str(environ.get("REMOTE_ADDR") or ""),
                          str(environ.get("HTTP_X_FORWARDED_FOR", "")), trust_forwarded)


def client_address(remote: str, forwarded_for: str, trust_forwarded: bool) -> str:
    """The address a client is counted by (see the module's notes on ``X-Forwarded-For``):
    the last hop of the chain the gateway forwards. ``forwarded_for``: every
    ``X-Forwarded-For`` line of the request, joined with "," in order."""
    return forwarded_chain(forwarded_for if trust_forwarded else "", remote, trust_forwarded)[-1]

"""CORS: which browsers' pages may call the API, decided once for both front ends.

The court's own web portals are served from origins of their own (``https://portal.court``),
so a browser asks the gateway before it lets their scripts read an answer (the Fetch
standard's CORS protocol). ``GATEWAY_CORS_ORIGINS`` names the origins allowed, exactly; unset
or empty, the gateway adds no CORS header anywhere and forwards an ``OPTIONS`` as any other
request (as it always did).

Decisions written down here (``Gateway`` and ``gateway.edge`` both apply them through
``CorsPolicy.answer_for`` and ``Gateway.preflight``):

* an entry is ``scheme://host[:port]``, http or https, nothing after it but a lone ``/`` (as
  copied from an address bar); it is compared as a browser serialises an origin (scheme and
  host in lower case, IDN hosts in punycode, the default port left out), so
  ``https://Portal.Court:443/`` allows ``https://portal.court``.
  ``*`` is refused at start (``ConfigError``): the portals are known, and "any site may read
  our answers" should never be one character away. ``null`` (sandboxed frames, ``file:``)
  is refused too: every such page sends it alike;
* a preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is answered
  by the gateway itself, whatever the path: never forwarded, no token asked (a browser sends
  none on a preflight), counted against the client's address like any anonymous request (429
  beyond the limit). An allowed origin gets 204 with the methods and headers below and
  ``Access-Control-Max-Age`` (``MAX_AGE``: Chromium keeps a preflight at most that long); an
  origin not allowed gets 403 with no CORS header, which the browser refuses;
* every other answer to a request from an allowed origin — a service's, or the gateway's own
  401, 429, 502, 504 — carries ``Access-Control-Allow-Origin: <that origin>`` and
  ``Access-Control-Expose-Headers`` (the headers a portal reads: ``EXPOSED``). Any
  ``Access-Control-*`` header a service sends is dropped then: the gateway is the one
  authority, and two ``Allow-Origin`` values make a browser refuse the answer;
* no ``Access-Control-Allow-Credentials``: the API takes bearer tokens only, never cookies, so
  a page must hold a token to use it, and no site rides on a browser's ambient credentials;
* ``Vary: Origin`` is on every answer to a request that carried an ``Origin``, allowed or not
  (a cache must not hand one origin's answer to another). An answer to a request without
  ``Origin`` is left exactly as before, so such a request, as every request with CORS off,
  costs one header lookup more, no more (``bench/README.md``: the edge's per-request cost).
  The Fetch standard would have ``Vary: Origin`` on those too, for a browser cache holding an
  answer fetched without ``Origin``; the answers worth caching here are either private to a
  token or ``no-store``, and such a stale entry is revalidated (``ETag``) by the next request,
  whose answer carries the header.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from servicekit.config import ConfigError

SETTING = "GATEWAY_CORS_ORIGINS"
METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE"
ALLOWED_HEADERS = ("Authorization, Content-Type, Idempotency-Key, If-Match, If-None-Match, "
                   "X-Request-ID")
EXPOSED = "ETag, Location, Retry-After, X-Request-ID, Idempotent-Replayed"
#: seconds a browser may keep a preflight's answer (Chromium's cap; Firefox allows a day)
MAX_AGE = 7200
_DEFAULT_PORTS = {"http": 80, "https": 443}

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class CorsAnswer:
    """What the CORS rules add to the answer of one request that carried an ``Origin``:
    ``headers`` as text (WSGI) and ``raw``, the same as header lines ready to write (the
    edge). Built once at start, per origin allowed."""

    allowed: bool
    preflight: bool
    headers: Headers
    raw: bytes


def _answer(allowed: bool, preflight: bool, headers: Headers) -> CorsAnswer:
    raw = b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers)
    return CorsAnswer(allowed, preflight, headers, raw)


_VARY = (("Vary", "Origin"),)
_REFUSED = _answer(False, False, _VARY)
_REFUSED_PREFLIGHT = _answer(False, True, _VARY)


class CorsPolicy:
    """The origins allowed and the answers made for them, each built once at start: a request
    costs a dict lookup of its ``Origin``."""

    def __init__(self, origins: Iterable[str]) -> None:
        self.origins = tuple(dict.fromkeys(origins))
        self._by_origin: dict[str, tuple[CorsAnswer, CorsAnswer]] = {}
        for origin in self.origins:
            allow = (("Access-Control-Allow-Origin", origin),)
            actual = _answer(True, False, (
                *allow, ("Access-Control-Expose-Headers", EXPOSED), *_VARY))
            preflight = _answer(True, True, (
                *allow, ("Access-Control-Allow-Methods", METHODS),
                ("Access-Control-Allow-Headers", ALLOWED_HEADERS),
                ("Access-Control-Max-Age", str(MAX_AGE)), *_VARY))
            self._by_origin[origin] = (actual, preflight)

    def answer_for(self, method: str, origin: str, request_method: bool) -> CorsAnswer:
        """The CORS side of the answer to a request from ``origin`` (its ``Origin`` header);
        ``request_method``: it carries ``Access-Control-Request-Method``. A preflight is an
        ``OPTIONS`` that does."""
        preflight = request_method and method == "OPTIONS"
        known = self._by_origin.get(origin)
        if known is None:
            return _REFUSED_PREFLIGHT if preflight else _REFUSED
        return known[preflight]


def is_cors_header(name: str) -> bool:
    """A header only the gateway sets once CORS applies (a service's is dropped then)."""
    return name[:15].lower() == "access-control-"


def without_cors_raw(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """A service's answer headers without any ``Access-Control-*`` of its own."""
    return [(k, v) for k, v in headers if k[:15].lower() != b"access-control-"]


def parse_origins(value: str, setting: str = SETTING) -> list[str]:
    """The origins of a comma-separated setting, each as a browser sends it; a ConfigError
    naming the setting for an entry that is not ``scheme://host[:port]``, and for ``*``."""
    origins = []
    for entry in (e.strip() for e in value.split(",")):
        if entry:
            origins.append(_origin(entry, setting))
    return origins


def _origin(entry: str, setting: str) -> str:
    if entry == "*":
        raise ConfigError(
            f"{setting}: '*' is not accepted: name each portal's origin "
            "(scheme://host[:port], comma-separated); the gateway answers those only")
    if entry.lower() == "null":
        raise ConfigError(f"{setting}: 'null' is not an origin a portal can be allowed by "
                          "(every sandboxed page and file: sends it)")
    bad = ConfigError(f"{setting}: {entry!r} is not an origin: write scheme://host[:port] "
                      "(http or https, no path), e.g. https://portal.court.example")
    try:
        parts = urlsplit(entry)
        port = parts.port
    except ValueError:
        raise bad from None
    scheme = parts.scheme.lower()
    if (scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None
            or parts.password is not None or parts.path not in ("", "/") or parts.query
            or parts.fragment
            or entry.endswith(("?", "#"))):
        raise bad
    host = parts.hostname  # lower case already
    if ":" in host:
        host = f"[{host}]"
    else:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise bad from None
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}"


def policy_from(origins: str | Iterable[str] | None) -> CorsPolicy | None:
    """The policy for ``origins`` (a setting's text or a list), or from ``GATEWAY_CORS_ORIGINS``
    when None; None when no origin is allowed: CORS is off."""
    if origins is None:
        origins = os.environ.get(SETTING, "")
    text = origins if isinstance(origins, str) else ",".join(origins)
    parsed = parse_origins(text)
    return CorsPolicy(parsed) if parsed else None

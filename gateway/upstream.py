"""Forwarding a request to a service: in process (embedded mode) or over HTTP (distributed).

Both kinds return an ``UpstreamResponse`` (status line, headers, a body iterable that must be
closed) or raise ``UpstreamUnavailable`` (-> 502) / ``UpstreamTimeout`` (-> 504). An upstream
that answers, even with a 5xx, is passed through unchanged.

HTTP forwarding decisions:

* one pooled ``requests.Session`` for every upstream (``pool_maxsize`` connections per host,
  no automatic retries: a request body is a stream and an unsafe request must not be sent twice);
* ``trust_env`` off (no proxy variables, no ``.netrc`` replacing the caller's Authorization) and
  a cookie jar that stores nothing, so one client's cookies never reach another client;
* no default headers (no ``Accept-Encoding: gzip`` the client did not ask for); bodies are passed
  through raw (``decode_content=False``) and streamed both ways in 64 KiB chunks;
* the headers that cross, both ways, follow ``gateway.headers`` (hop-by-hop removed,
  ``X-Service-Token`` from a client dropped, ``X-Forwarded-*`` and ``X-Request-ID`` set; the
  ``X-Forwarded-*`` are ``gateway.headers.forwarded_values``, in process too);
* the path sent is the decoded path the gateway checked, re-encoded, so what was checked is
  what the service sees; the query string is passed through as received;
* ``timeout`` is the read timeout (the longest silence between bytes, as in ``requests``, not a
  total deadline) and ``connect_timeout`` the TCP connect timeout;
* a connect or read timeout before the response headers arrive is a 504; refused connections,
  DNS failures and broken responses are a 502. A failure *while streaming* a body that has
  already started is re-raised so the server aborts the connection (never a silent truncation).

In-process forwarding cannot enforce a timeout (the call runs on the request's own thread); an
exception escaping the service's WSGI app is a 502.
"""

from __future__ import annotations

import http.cookiejar
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from werkzeug.datastructures import EnvironHeaders
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.test import EnvironBuilder, run_wsgi_app
from werkzeug.wsgi import ClosingIterator, get_input_stream

from gateway.headers import clean_response_headers, forward_headers, forwarded_values

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

CHUNK = 64 * 1024
_PATH_SAFE = "/:@!$&'()*+,;=~"


class UpstreamUnavailable(Exception):
    """The service could not be reached or gave no usable answer (502)."""


class UpstreamTimeout(UpstreamUnavailable):
    """The service did not answer in time (504)."""


@dataclass
class UpstreamResponse:
    status: str
    headers: list[tuple[str, str]]
    body: Iterable[bytes]

    def close(self) -> None:
        close = getattr(self.body, "close", None)
        if close is not None:
            close()


def prefix_of(environ: Mapping[str, Any], service: str) -> str:
    return str(environ.get("SCRIPT_NAME", "")).rstrip("/") + "/api/" + service


def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


def forwarded_environ(environ: Mapping[str, Any], service: str,
                      trust_forwarded: bool) -> dict[str, str]:
    """The ``X-Forwarded-For/Proto/Host/Prefix`` a service receives in process, as environ
    keys: ``gateway.headers.forwarded_values``, the headers the HTTP tier sends, so a link or
    an address a service builds from them is the same in both tiers (the environ holds every
    line of a header joined with ",", as a WSGI server hands them over)."""
    pairs = forwarded_values(
        lambda name: str(environ.get(_environ_key(name)) or ""),
        host=str(environ.get("HTTP_HOST") or ""), remote=str(environ.get("REMOTE_ADDR") or ""),
        scheme=str(environ.get("wsgi.url_scheme", "http")), prefix=prefix_of(environ, service),
        trust_forwarded=trust_forwarded)
    return {_environ_key(name): value for name, value in pairs}


class InProcessUpstream:
    """A service's WSGI app called directly, with ``/api/<service>`` moved into SCRIPT_NAME.

    Its ``X-Forwarded-*`` are the HTTP tier's (``forwarded_environ``): the ``X-Forwarded-For``
    ends with the client address the gateway decided on, never with a hop the client wrote,
    and ``X-Forwarded-Proto/Host/Prefix`` are set as over HTTP (they were missing, or the
    client's own), so a service builds the same absolute links in either tier."""

    def __init__(self, name: str, app: WSGIApp) -> None:
        self.name = name
        self.app = app

    def forward(self, environ: dict[str, Any], rest: str, request_id: str,
                trust_forwarded: bool = False) -> UpstreamResponse:
        env = dict(environ)
        env["SCRIPT_NAME"] = prefix_of(environ, self.name)
        env["PATH_INFO"] = rest
        # the client's X-Forwarded-Host goes too: ``forwarded_environ`` may set none
        for key in ("REQUEST_URI", "RAW_URI", "HTTP_X_SERVICE_TOKEN", "werkzeug.request",
                    "HTTP_X_FORWARDED_HOST"):
            env.pop(key, None)
        env["HTTP_X_REQUEST_ID"] = request_id
        env.update(forwarded_environ(environ, self.name, trust_forwarded))
        return self._call(env)

    def _call(self, env: dict[str, Any]) -> UpstreamResponse:
        started: list[tuple[str, list[tuple[str, str]]]] = []
        written: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            started[:] = [(status, list(headers))]
            return written.append

        app_iter: Iterable[bytes] | None = None
        try:
            app_iter = self.app(env, start_response)
            head: list[bytes] = []
            rest: Iterator[bytes] = iter(app_iter)
            if not started:  # start_response may wait for the first chunk (PEP 3333)
                head = list(itertools.islice(rest, 1))
            if not started:
                raise RuntimeError("the application never called start_response")
        except Exception as exc:
            close = getattr(app_iter, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.debug("closing a failed in-process response failed", exc_info=True)
            log.warning("in-process upstream %s failed: %s", self.name,
                        exc.__class__.__name__, exc_info=True)
            raise UpstreamUnavailable(f"the {self.name} service failed") from exc
        status, headers = started[0]
        close = getattr(app_iter, "close", None)
        body = ClosingIterator(itertools.chain(written, head, rest), [close] if close else None)
        return UpstreamResponse(status, clean_response_headers(headers), body)

    def get(self, path: str, request_id: str) -> tuple[int, bytes]:
        builder = EnvironBuilder(path=path, base_url=f"http://gateway/api/{self.name}",
                                 headers={"X-Request-ID": request_id,
                                          "Accept": "application/json"})
        try:
            app_iter, status, _headers = run_wsgi_app(self.app, builder.get_environ(),
                                                      buffered=True)
            try:
                body = b"".join(app_iter)
            finally:
                close = getattr(app_iter, "close", None)
                if close is not None:
                    close()
        except Exception as exc:
            log.warning("in-process upstream %s failed: %s", self.name,
                        exc.__class__.__name__, exc_info=True)
            raise UpstreamUnavailable(f"the {self.name} service failed") from exc
        return int(status.split(" ", 1)[0]), body


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False

    def return_ok(self, cookie: Any, request: Any) -> bool:
        return False


def make_session(pool_maxsize: int = 64, pool_connections: int = 16) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.headers.clear()
    session.cookies.set_policy(_NoCookies())
    adapter = HTTPAdapter(pool_connections=pool_connections, pool_maxsize=pool_maxsize,
                          max_retries=0, pool_block=False)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class _SizedBody:
    """The request body as a stream of known length (``requests`` sends Content-Length)."""

    def __init__(self, stream: Any, length: int) -> None:
        self._stream = stream
        self._length = length

    def __len__(self) -> int:
        return self._length

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def __iter__(self) -> Iterator[bytes]:
        return iter(lambda: self._stream.read(CHUNK), b"")


def _request_body(environ: dict[str, Any]) -> Any:
    raw = environ.get("CONTENT_LENGTH") or ""
    try:
        length: int | None = int(raw) if raw.strip() else None
    except ValueError:
        length = None
    stream = get_input_stream(environ)
    if length is not None:
        return b"" if length <= 0 else _SizedBody(stream, length)
    if environ.get("wsgi.input_terminated"):  # chunked from the client: chunked upstream
        return iter(lambda: stream.read(CHUNK), b"")
    return None


def _request_headers(environ: dict[str, Any], service: str, request_id: str,
                     trust_forwarded: bool) -> dict[str, str]:
    return dict(forward_headers(
        list(EnvironHeaders(environ).items()), remote=str(environ.get("REMOTE_ADDR") or ""),
        scheme=str(environ.get("wsgi.url_scheme", "http")),
        prefix=prefix_of(environ, service), request_id=request_id,
        trust_forwarded=trust_forwarded))


def encode_path(path: str) -> str:
    try:
        raw = path.encode("latin-1")  # PEP 3333: PATH_INFO carries the bytes as latin-1
    except UnicodeEncodeError:
        raw = path.encode("utf-8")
    return quote(raw, safe=_PATH_SAFE)


class HttpUpstream:
    """A service behind a base URL such as ``http://identity-api:8000``."""

    def __init__(self, name: str, base_url: str, session: requests.Session, *,
                 timeout: float, connect_timeout: float) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.timeouts = (connect_timeout, timeout)

    def forward(self, environ: dict[str, Any], rest: str, request_id: str,
                trust_forwarded: bool = False) -> UpstreamResponse:
        url = self.base_url + encode_path(rest)
        query = environ.get("QUERY_STRING")
        if query:
            url += "?" + query
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        headers = _request_headers(environ, self.name, request_id, trust_forwarded)
        resp = self._send(method, url, headers=headers, data=_request_body(environ),
                          stream=True)
        reason = resp.reason or HTTP_STATUS_CODES.get(resp.status_code, "")
        status = f"{resp.status_code} {reason}".strip()
        headers_out = clean_response_headers(resp.raw.headers.items())
        return UpstreamResponse(status, headers_out, _StreamedBody(self.name, resp))

    def get(self, path: str, request_id: str) -> tuple[int, bytes]:
        resp = self._send("GET", self.base_url + path, stream=False,
                          headers={"X-Request-ID": request_id, "Accept": "application/json"})
        return resp.status_code, resp.content

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(method, url, timeout=self.timeouts,
                                        allow_redirects=False, **kwargs)
        except requests.Timeout as exc:  # ConnectTimeout and ReadTimeout
            log.warning("upstream %s timed out: %s", self.name, exc.__class__.__name__)
            raise UpstreamTimeout(f"the {self.name} service did not answer in time") from exc
        except requests.RequestException as exc:
            log.warning("upstream %s unreachable: %s", self.name, exc.__class__.__name__)
            raise UpstreamUnavailable(f"the {self.name} service is unavailable") from exc


class _StreamedBody:
    """Iterates the upstream body raw; gives the connection back to the pool when it was read
    to the end, and closes it otherwise (a half-read connection cannot be reused)."""

    def __init__(self, name: str, resp: requests.Response) -> None:
        self._name = name
        self._resp = resp
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._resp.raw.stream(CHUNK, decode_content=False):
                if chunk:
                    yield chunk
        except Exception as exc:
            log.warning("upstream %s broke off while streaming: %s", self._name,
                        exc.__class__.__name__)
            raise
        self._done = True

    def close(self) -> None:
        if self._done:
            self._resp.raw.release_conn()
        else:
            self._resp.close()

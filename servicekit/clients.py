"""Calls between services: the exception, never the rule (events are the rule).

``InternalClient`` calls another service's ``@internal`` routes with the service secret, over
HTTP with a pooled session and a timeout (distributed), or straight into the other service's
WSGI app (embedded).
"""

from __future__ import annotations

import os
from typing import Any

import requests
from flask import Flask

from servicekit.web import SERVICE_TOKEN_HEADER


class ServiceUnavailable(Exception):
    """The other service did not answer usefully; the caller retries later."""


class InternalClient:
    def __init__(self, secret: str, apps: dict[str, Flask] | None = None,
                 timeout: float = 3.0) -> None:
        self.secret = secret
        self.apps = apps if apps is not None else {}
        self.timeout = timeout
        self._http = requests.Session()

    def base_url(self, service: str) -> str:
        url = os.environ.get(f"GATEWAY_UPSTREAM_{service.upper()}", "")
        if not url:
            raise ServiceUnavailable(f"no URL configured for service {service!r}")
        return url.rstrip("/")

    def get_json(self, service: str, path: str) -> dict[str, Any]:
        headers = {SERVICE_TOKEN_HEADER: self.secret}
        if service in self.apps:
            resp = self.apps[service].test_client().get(path, headers=headers)
            status, body = resp.status_code, resp.get_json(silent=True)
        else:
            try:
                r = self._http.get(self.base_url(service) + path, headers=headers,
                                   timeout=self.timeout)
            except requests.RequestException as exc:
                raise ServiceUnavailable(f"{service}: {exc.__class__.__name__}") from exc
            status, body = r.status_code, _json_of(r)
        if status != 200 or not isinstance(body, dict):
            raise ServiceUnavailable(f"{service} answered {status} for {path}")
        return body


def _json_of(resp: requests.Response) -> Any:
    """The answer's JSON, or None when it is empty or not JSON (a proxy's HTML error page):
    the caller then gets ``ServiceUnavailable``, not a decoding error."""
    try:
        return resp.json() if resp.content else None
    except ValueError:
        return None

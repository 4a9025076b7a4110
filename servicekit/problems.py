"""RFC 9457 problem details: the one error shape of every service and the gateway."""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Response

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://ecourt.example/problems/"

TITLES = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 412: "Precondition Failed",
    413: "Content Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Content",
    428: "Precondition Required", 429: "Too Many Requests", 500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}


class Problem(Exception):
    """Raise anywhere in a request to answer with a problem+json body."""

    def __init__(self, status: int, slug: str, detail: str | None = None, *,
                 title: str | None = None, headers: dict[str, str] | None = None,
                 **extensions: Any) -> None:
        super().__init__(detail or slug)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.title = title or TITLES.get(status, "Error")
        self.headers = headers or {}
        self.extensions = extensions

    def body(self, instance: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"type": TYPE_BASE + self.slug, "title": self.title,
                               "status": self.status}
        if self.detail:
            out["detail"] = self.detail
        if instance:
            out["instance"] = instance
        out.update(self.extensions)
        return out


def problem_response(problem: Problem, instance: str | None = None,
                     request_id: str | None = None) -> Response:
    body = problem.body(instance)
    if request_id:
        body["request_id"] = request_id
    resp = Response(json.dumps(body, ensure_ascii=False), status=problem.status,
                    content_type=PROBLEM_JSON)
    for key, value in problem.headers.items():
        resp.headers[key] = value
    return resp


def slug_for(status: int) -> str:
    return TITLES.get(status, "error").lower().replace(" ", "-")

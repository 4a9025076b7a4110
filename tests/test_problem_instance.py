"""A problem's ``instance`` is the path the client asked for, wherever the problem is made:
in the gateway (``test_routing``, ``test_edge``) or in a service behind it, in process
(SCRIPT_NAME) or over HTTP (``X-Forwarded-Prefix``), non-ASCII paths included."""

from __future__ import annotations

from werkzeug.test import Client

from ecourt.embedded import Suite
from tests.harness import bearer, person


def test_a_services_problem_names_the_path_the_client_asked_for(embedded: Suite) -> None:
    http = Client(embedded.gateway)
    _, party = person(http, "李四")
    resp = http.get("/api/matters/cases/案件-1", headers=bearer(party))
    assert resp.status_code == 404 and resp.mimetype == "application/problem+json"
    assert resp.get_json()["instance"] == "/api/matters/cases/案件-1"

    # the distributed tier: the gateway's prefix arrives as a header
    direct = Client(embedded.apps["matters"])
    resp = direct.get("/cases/案件-1", headers={**bearer(party),
                                                "X-Forwarded-Prefix": "/api/matters"})
    assert resp.status_code == 404
    assert resp.get_json()["instance"] == "/api/matters/cases/案件-1"
    # a prefix that is not a plain path is not echoed back
    resp = direct.get("/cases/x", headers={**bearer(party),
                                           "X-Forwarded-Prefix": "/api/matters <b>x</b>"})
    assert resp.get_json()["instance"] == "/cases/x"
    # called without the gateway, a service names its own path
    resp = direct.get("/cases/x", headers=bearer(party))
    assert resp.get_json()["instance"] == "/cases/x"

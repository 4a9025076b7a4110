"""The contracts are checked: OpenAPI files match the code, every event type has a JSON
Schema and a place in the AsyncAPI document, and the schemas themselves are valid."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from ecourt import registry
from ecourt.contracts import EVENTS, OPENAPI, ROOT, openapi_documents, render


def test_openapi_files_are_up_to_date() -> None:
    for name, doc in openapi_documents().items():
        path = OPENAPI / f"{name}.json"
        assert path.exists(), f"{path} missing: run `make openapi`"
        assert path.read_text(encoding="utf-8") == render(doc), (
            f"{path} is out of date with the code: run `make openapi` and commit it")


def test_every_event_schema_is_a_valid_json_schema_with_its_own_type() -> None:
    files = sorted(EVENTS.glob("*.json"))
    assert files
    for path in files:
        schema = json.loads(path.read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["properties"]["type"]["const"] == path.stem


def test_asyncapi_lists_every_event_type_and_points_at_its_schema() -> None:
    doc = yaml.safe_load((ROOT / "asyncapi.yaml").read_text(encoding="utf-8"))
    types = {p.stem for p in EVENTS.glob("*.json")}
    assert set(doc["channels"]) == types
    for type_ in types:
        ref = doc["components"]["messages"][type_]["payload"]["schema"]["$ref"]
        assert (ROOT / ref).resolve() == (EVENTS / f"{type_}.json").resolve()


def test_every_consumed_event_type_has_a_schema() -> None:
    consumed = {t for s in registry.SERVICES.values() for t in s.consumes}
    assert consumed <= {p.stem for p in EVENTS.glob("*.json")}


_ACCOUNT = "0b4e6c1a-5f7e-4c39-9a57-2f0c1d3b8e61"
_REGISTERED = {"specversion": "1.0", "id": "1", "source": "/identity",
               "type": "identity.account.registered", "time": "2026-01-01T00:00:00Z",
               "datacontenttype": "application/json",
               "data": {"account_id": _ACCOUNT, "kind": "individual",
                        "registered_at": "2026-01-01T00:00:00Z"}}


@pytest.mark.parametrize("bad", [
    {"data": {"account_id": _ACCOUNT, "kind": "individual"}},       # missing registered_at
    {"data": {"account_id": _ACCOUNT, "kind": "individual",
              "registered_at": "2026-01-01T00:00:00Z",
              "phone": "13800138000"}},                             # contact details leak
    {"data": {"account_id": _ACCOUNT, "kind": "individual",
              "registered_at": "yesterday"}},                       # not an RFC 3339 time
    {"data": {"account_id": "x", "kind": "individual",
              "registered_at": "2026-01-01T00:00:00Z"}},            # not a uuid
    {"time": "2026-01-01 00:00"},                                   # the envelope's too
])
def test_a_broken_event_fails_its_contract(bad: dict[str, object]) -> None:
    from ecourt.contracts import validate_event

    validate_event(_REGISTERED)  # the event the cases break is valid
    with pytest.raises(jsonschema.ValidationError):
        validate_event({**_REGISTERED, **bad})


def _specs() -> dict[str, dict]:  # type: ignore[type-arg]
    return {p.stem: json.loads(p.read_text()) for p in sorted(OPENAPI.glob("*.json"))}


def test_every_error_response_in_the_specs_is_problem_json() -> None:
    """The specs say what the services send: RFC 9457 problems (schemathesis found them
    documenting flask-smorest's own error shape as application/json)."""
    specs = _specs()
    assert specs
    for name, spec in specs.items():
        responses = spec.get("components", {}).get("responses", {})
        assert "DEFAULT_ERROR" in responses or not spec["paths"], name
        for key, response in responses.items():
            content = response.get("content", {})
            assert set(content) <= {"application/problem+json"}, (name, key)
            for media in content.values():
                assert media["schema"] == {"$ref": "#/components/schemas/Problem"}, (name, key)


def test_every_response_in_the_specs_has_its_required_description() -> None:
    """OpenAPI 3 requires a description on every response object; a route that documents
    extra media types with ``blp.doc`` replaces the one flask-smorest writes."""
    missing = [(name, path, method, status)
               for name, spec in _specs().items()
               for path, item in spec["paths"].items()
               for method, operation in item.items() if isinstance(operation, dict)
               for status, response in operation.get("responses", {}).items()
               if "$ref" not in response and not response.get("description")]
    assert not missing


def test_a_real_problem_matches_the_documented_schema(embedded) -> None:  # type: ignore[no-untyped-def]
    schema = _specs()["identity"]["components"]["schemas"]["Problem"]
    client = embedded.apps["identity"].test_client()
    for resp in (client.post("/accounts", json={}), client.get("/accounts/me"),
                 client.post("/healthz"), client.get("/nowhere")):
        assert resp.status_code >= 400
        assert resp.headers["Content-Type"].startswith("application/problem+json")
        jsonschema.validate(resp.get_json(force=True), schema)


def test_identity_spec_describes_what_its_routes_check() -> None:
    """What the routes refuse with a 422 is in the spec, so a client built from it can send a
    valid request (schemathesis found requests valid by the spec refused by the service)."""
    spec = _specs()["identity"]
    schemas = spec["components"]["schemas"]

    def schema_of(path: str, media: str) -> dict:  # type: ignore[type-arg]
        ref = spec["paths"][path]["post"]["requestBody"]["content"][media]["schema"]["$ref"]
        return schemas[ref.rsplit("/", 1)[1]]

    organization = schema_of("/organizations", "multipart/form-data")
    assert {"name", "uscc", "legal_representative", "court", "licence"} <= set(
        organization["required"])
    offline = schema_of("/lawyer-verifications", "multipart/form-data")
    assert {"certificate", "id_card"} <= set(offline["required"])
    for path in ("/sms-codes", "/accounts", "/staff"):
        phone = schema_of(path, "application/json")["properties"]["phone"]
        assert phone["pattern"] == r"^1[3-9]\d{9}$", path
    assert schemas["CreateStaff"]["properties"]["roles"]["minItems"] == 1

"""The suite's public contracts: each service's OpenAPI (generated from its marshmallow
schemas) and the event catalogue (one JSON Schema per event type, under contracts/events/)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import jsonschema

ROOT = Path(__file__).resolve().parent.parent / "contracts"
EVENTS = ROOT / "events"
OPENAPI = ROOT / "openapi"


def openapi_documents() -> dict[str, dict[str, Any]]:
    """Each API service's OpenAPI document, built from a throwaway embedded runtime."""
    import os

    from ecourt import registry
    from ecourt.runtime import make_runtime
    from servicekit.config import Settings
    from servicekit.tokens import TokenVerifier

    docs: dict[str, dict[str, Any]] = {}
    previous = os.environ.get("ECOURT_DATA_DIR")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ECOURT_DATA_DIR"] = tmp
        try:
            for name in registry.API_SERVICES:
                definition = registry.get(name)
                settings = Settings.from_env(name, database_url=f"sqlite:///{tmp}/{name}.db")
                rt = make_runtime(definition, settings, TokenVerifier(lambda: {"keys": []}))
                app = definition.build_app(rt)  # type: ignore[misc]
                docs[name] = app.extensions["ecourt.api"].spec.to_dict()
                rt.db.dispose()
        finally:
            if previous is None:
                os.environ.pop("ECOURT_DATA_DIR", None)
            else:
                os.environ["ECOURT_DATA_DIR"] = previous
    return docs


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def write_openapi() -> list[Path]:
    OPENAPI.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in openapi_documents().items():
        path = OPENAPI / f"{name}.json"
        path.write_text(render(doc), encoding="utf-8")
        written.append(path)
    return written


def event_schema(type_: str) -> dict[str, Any]:
    path = EVENTS / f"{type_}.json"
    if not path.exists():
        raise KeyError(f"no JSON Schema for event type {type_!r} in {EVENTS}")
    return json.loads(path.read_text(encoding="utf-8"))


#: checks the schemas' ``format``s too: date-time (RFC 3339), date, uuid and uri (the test
#: dependencies ``rfc3339-validator`` and ``rfc3986-validator`` give jsonschema the first and last)
FORMATS = jsonschema.FormatChecker()


def validate_event(envelope: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` (or KeyError) when an event breaks its contract,
    its fields' formats included."""
    jsonschema.validate(envelope, event_schema(envelope["type"]), format_checker=FORMATS)

"""Regenerate contracts/asyncapi.yaml from contracts/events/*.json and the registry's consumers.

Run: .venv/bin/python scripts/asyncapi.py  (tests/test_contracts.py fails when it is stale)
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ecourt import registry

ROOT = Path(__file__).resolve().parent.parent / "contracts"
EXCHANGE = {"name": "ecourt.events", "type": "topic", "durable": True, "autoDelete": False}


def build() -> dict[str, object]:
    doc = yaml.safe_load((ROOT / "asyncapi.yaml").read_text(encoding="utf-8"))
    doc["channels"], doc["operations"], doc["components"]["messages"] = {}, {}, {}
    consumers: dict[str, list[str]] = {}
    for service in registry.SERVICES.values():
        for type_ in service.consumes:
            consumers.setdefault(type_, []).append(service.name)
    for path in sorted((ROOT / "events").glob("*.json")):
        t = path.stem
        schema = json.loads(path.read_text(encoding="utf-8"))
        camel = "".join(p.capitalize() for p in t.replace(".", "_").split("_"))
        doc["channels"][t] = {"address": t,
                              "messages": {"event": {"$ref": f"#/components/messages/{t}"}},
                              "bindings": {"amqp": {"is": "routingKey", "exchange": EXCHANGE}}}
        doc["components"]["messages"][t] = {
            "name": t, "contentType": "application/cloudevents+json",
            "summary": schema["description"],
            "payload": {"schemaFormat": "application/schema+json;version=draft-07",
                        "schema": {"$ref": f"./events/{t}.json"}}}
        doc["operations"][f"publish{camel}"] = {
            "action": "send", "channel": {"$ref": f"#/channels/{t}"},
            "summary": f"{t.split('.')[0]} publishes {t}."}
        for consumer in consumers.get(t, []):
            doc["operations"][f"{consumer}Receives{camel}"] = {
                "action": "receive", "channel": {"$ref": f"#/channels/{t}"},
                "summary": f"{consumer} consumes {t}."}
    return doc


if __name__ == "__main__":
    (ROOT / "asyncapi.yaml").write_text(
        yaml.safe_dump(build(), allow_unicode=True, sort_keys=False, width=100),
        encoding="utf-8")

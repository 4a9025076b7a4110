"""The raw HTTP baseline: one trivial Flask JSON route, nothing else."""

from flask import Flask

app = Flask(__name__)


@app.get("/ping")
def ping():  # type: ignore[no-untyped-def]
    return {"status": "ok"}

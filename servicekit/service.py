"""A service's description: everything the composer (CLI, embedded runner, tests) needs to
build its app, migrate its database, run its relay and its consumer."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask, current_app
from sqlalchemy import MetaData

from servicekit.blobs import LocalBlobStore
from servicekit.config import Settings
from servicekit.consumer import Handler
from servicekit.db import Database
from servicekit.tokens import TokenVerifier


@dataclass
class Runtime:
    """What one running service holds: its settings, database and collaborators."""

    settings: Settings
    db: Database
    verifier: TokenVerifier | None
    clients: object = None  # servicekit.clients.InternalClient
    extras: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceDefinition:
    name: str
    metadata: MetaData
    migrations: Path
    build_app: Callable[[Runtime], Flask] | None  # None: no HTTP API (the notifier)
    #: the event types this service consumes (its queue's bindings)
    consumes: tuple[str, ...] = ()
    #: the event handlers, built with the running service's collaborators
    build_handlers: Callable[[Runtime], Mapping[str, Handler]] | None = None
    #: the service's blob store (uploads, issued PDFs), built with the running service's
    #: settings; None: the service keeps no blobs
    blob_store: Callable[[Runtime], LocalBlobStore] | None = None
    #: every column (``table.column``) that holds a blob's SHA-256: a blob none of them holds
    #: is garbage once old enough (``servicekit.blob_gc``). A column left out would have its
    #: blobs collected: ``tests/test_blob_columns.py`` fails for any ``*sha256`` column missing
    blob_columns: tuple[str, ...] = ()

    def handlers(self, rt: Runtime) -> Mapping[str, Handler]:
        return self.build_handlers(rt) if self.build_handlers else {}


def runtime() -> Runtime:
    """The running service's Runtime, from inside a request."""
    return current_app.extensions["ecourt.runtime"]


def db() -> Database:
    return runtime().db

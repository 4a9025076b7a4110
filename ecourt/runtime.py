"""Building a service's Runtime from settings: database, token verifier, clients."""

from __future__ import annotations

import os

from flask import Flask

from servicekit import migrations, workdays
from servicekit.clients import InternalClient
from servicekit.config import Settings
from servicekit.db import Database
from servicekit.service import Runtime, ServiceDefinition
from servicekit.tokens import TokenVerifier, http_jwks_source
from services.identity.keys import load_jwks


def distributed_verifier() -> TokenVerifier:
    url = os.environ.get("ECOURT_JWKS_URL", "http://127.0.0.1:8001/.well-known/jwks.json")
    return TokenVerifier(http_jwks_source(url))


def local_verifier() -> TokenVerifier:
    """Embedded tier (and identity's own routes): the identity keys are in this process; verify
    against the JWKS identity publishes, its previous keys included, so a token signed before
    a rotation is accepted by identity itself as by every other service."""
    jwks = load_jwks()
    return TokenVerifier(lambda: jwks)


def make_runtime(definition: ServiceDefinition, settings: Settings,
                 verifier: TokenVerifier | None,
                 apps: dict[str, Flask] | None = None, migrate: bool = True) -> Runtime:
    if settings.workday_calendar is not None:  # the process's calendar, read at its start
        workdays.use(settings.workday_calendar)
    if migrate:
        migrations.upgrade(definition.migrations, settings.database_url)
    db = Database(settings.database_url)
    clients = InternalClient(settings.service_secret, apps)
    return Runtime(settings=settings, db=db, verifier=verifier, clients=clients)

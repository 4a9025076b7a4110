"""identity's app factory and service definition.

Environment read here: ``IDENTITY_SIGNING_KEY_FILE`` and ``IDENTITY_PREVIOUS_KEY_FILES`` (see
``keys.py``) and
``IDENTITY_TRUST_FORWARDED=1`` (take the client address for login throttling from the last
``X-Forwarded-For`` hop; set it only when identity is reachable solely through the gateway).
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from servicekit.service import Runtime, ServiceDefinition
from servicekit.web import ServiceSpec, create_service_app
from services.identity import (
    api,
    directory_api,
    lawyers_api,
    organizations_api,
    signin_api,
    staff_api,
)
from services.identity.keys import load_previous_keys, load_signing_key
from services.identity.models import Base
from services.identity.organizations import blob_store


def create_app(rt: Runtime) -> Flask:
    rt.extras.setdefault("signing_key", load_signing_key())
    rt.extras.setdefault("previous_keys", load_previous_keys())  # published, not signing
    rt.extras.setdefault("trust_forwarded", api.trust_forwarded_from_env())
    spec = ServiceSpec("identity", "eCourt identity",
                       "Accounts, real-name details, court staff, sign-in and access tokens "
                       "(JWKS).", [api.blp, staff_api.blp,
                        organizations_api.blp, lawyers_api.blp,
                        signin_api.blp, directory_api.blp])
    return create_service_app(spec, rt)


SERVICE = ServiceDefinition(name="identity", metadata=Base.metadata,
                            migrations=Path(__file__).parent / "migrations",
                            build_app=create_app, blob_store=blob_store,
                            blob_columns=("organizations.licence_sha256",
                                          "lawyer_verifications.certificate_sha256",
                                          "lawyer_verifications.id_card_sha256"))

"""alembic environment of identity: its schema comes only from these migrations."""

from servicekit.migrations import run_env
from services.identity.models import Base

run_env(Base.metadata)

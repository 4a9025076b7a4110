"""alembic environment of matters: its schema comes only from these migrations."""

from servicekit.migrations import run_env
from services.matters.models import Base

run_env(Base.metadata)

"""alembic environment of bankruptcy: its schema comes only from these migrations."""

from servicekit.migrations import run_env
from services.bankruptcy.models import Base

run_env(Base.metadata)

"""alembic environment of filing: its schema comes only from these migrations."""

from servicekit.migrations import run_env
from services.filing.models import Base

run_env(Base.metadata)

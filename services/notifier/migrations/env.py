"""alembic environment of notifier: its schema comes only from these migrations."""

from servicekit.migrations import run_env
from services.notifier.models import Base

run_env(Base.metadata)

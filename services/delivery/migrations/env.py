"""alembic environment of delivery: its schema comes only from these migrations."""

from servicekit.migrations import run_env
from services.delivery.models import Base

run_env(Base.metadata)

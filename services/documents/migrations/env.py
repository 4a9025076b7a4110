"""alembic environment of documents: its schema comes only from these migrations."""

from servicekit.migrations import run_env
from services.documents.models import Base

run_env(Base.metadata)

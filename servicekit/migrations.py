"""Alembic, driven from code: each service's schema comes from its own migrations, in both
tiers (no ``create_all`` on any production path)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, pool


def config(script_location: Path, url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["url"] = url
    return cfg


def upgrade(script_location: Path, url: str, revision: str = "head") -> None:
    command.upgrade(config(script_location, url), revision)


def drift(metadata: MetaData, url: str) -> list[object]:
    """Differences between the models and a database migrated to head (empty = in step)."""
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "render_as_batch": True})
            return list(compare_metadata(ctx, metadata))
    finally:
        engine.dispose()


def _render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
    """Autogenerate writes the kit's UtcDateTime as the plain column type it stores."""
    from servicekit.db import UtcDateTime

    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_env(metadata: MetaData) -> None:
    """The body of every service's ``migrations/env.py``."""
    from alembic import context

    url = context.config.attributes.get("url")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True,
                          render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    # a data migration's failing statement must not write the rows it carried into a log
    engine = create_engine(url, poolclass=pool.NullPool, hide_parameters=True)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata,
                          render_as_batch=True, compare_type=True, render_item=_render_item)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()

"""Every column that holds a blob's hash is declared on its service's definition: the blob
collector (``servicekit.blob_gc``) removes an old blob no *declared* column holds, so a new
``*_sha256`` column left out would have its uploads deleted a day after they were made."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table

from ecourt import registry
from servicekit.blob_gc import sha256_columns
from servicekit.service import ServiceDefinition


def undeclared(definition: ServiceDefinition) -> set[str]:
    return sha256_columns(definition.metadata) - set(definition.blob_columns)


@pytest.mark.parametrize("name", list(registry.SERVICES))
def test_every_sha256_column_is_a_declared_blob_column(name: str) -> None:
    definition = registry.get(name)
    assert not undeclared(definition), (
        f"{name}: declare these in blob_columns on its ServiceDefinition (or rename them if "
        f"they hold no blob's hash)")


@pytest.mark.parametrize("name", list(registry.SERVICES))
def test_declared_blob_columns_exist_and_come_with_a_store(name: str) -> None:
    definition = registry.get(name)
    for declared in definition.blob_columns:
        table, column = declared.split(".", 1)
        assert column in definition.metadata.tables[table].c, declared
    assert bool(definition.blob_columns) == (definition.blob_store is not None)


def test_the_services_that_keep_blobs() -> None:
    assert {n for n, s in registry.SERVICES.items() if s.blob_store} == {
        "identity", "matters", "documents"}


def test_a_new_undeclared_sha256_column_is_caught() -> None:
    metadata = MetaData()
    Table("photos", metadata, Column("id", Integer, primary_key=True),
          Column("photo_sha256", String(64)), Column("thumb_SHA256", String(64)),
          Column("sha256_note", String(64)))
    definition = ServiceDefinition(name="x", metadata=metadata, migrations=None,  # type: ignore[arg-type]
                                   build_app=None, blob_columns=("photos.photo_sha256",))
    assert undeclared(definition) == {"photos.thumb_SHA256"}

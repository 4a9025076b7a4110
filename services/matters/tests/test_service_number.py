"""Service numbers carry the court's year, which is the year in Beijing time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from servicekit import migrations
from servicekit.db import Database
from services.matters.app import SERVICE
from services.matters.applications import next_service_number


def test_the_year_of_a_service_number_is_beijings_year(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrations.upgrade(SERVICE.migrations, url)
    db = Database(url)
    # 2026-01-01 01:00 in Beijing is still 2025-12-31 in UTC
    new_year = datetime(2025, 12, 31, 17, 0, tzinfo=UTC)
    with db.transaction() as s:
        assert next_service_number(s, "粤01", "effectiveness_certificate", new_year) \
            == "(2026)粤01文书第1号"
        # 2025-12-31 23:00 in Beijing: still the old year
        late = datetime(2025, 12, 31, 15, 0, tzinfo=UTC)
        assert next_service_number(s, "粤01", "effectiveness_certificate", late) \
            == "(2025)粤01文书第1号"
        assert next_service_number(s, "粤01", "lawyer_binding", new_year) \
            == "(2026)粤01绑定第1号"
    db.dispose()

"""S7 on the embedded tier (SQLite, in-memory bus): every service's OpenAPI, fuzzed through the
gateway as each caller.

What the fuzz checks, and why each check is on or off: ``tests/fuzzing.py``.
"""

from __future__ import annotations

import pytest

from ecourt import registry
from ecourt.embedded import Suite
from tests import fuzzing


@pytest.fixture(scope="module")
def tokens(embedded: Suite) -> dict[str, str | None]:
    return fuzzing.tokens_for(embedded)


@pytest.mark.parametrize("caller", fuzzing.CALLERS)
@pytest.mark.parametrize("service", registry.API_SERVICES)
def test_the_service_keeps_its_published_contract(embedded: Suite,
                                                   tokens: dict[str, str | None],
                                                   service: str, caller: str) -> None:
    fuzzing.check_contract(embedded, tokens[caller], service, caller)

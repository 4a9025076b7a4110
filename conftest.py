"""Settings for every test tier that make the suite faster and never change what it checks.

Password hashing is argon2id with the library's defaults in production (64 MiB, 3 passes,
~0.15 s a hash on these machines): the suite registers and signs in well over a thousand
accounts, and those seconds were minutes of every run. In-process tests hash with argon2-cffi's
own test profile (``argon2.profiles.CHEAPEST``) instead: the same algorithm and code path, the
same salted, self-describing hash strings, only cheap parameters. Processes a test starts (``ecourt
run``, ``ecourt serve``) keep the production defaults; a test about the hashing itself (how many
hashes a refused registration costs) counts calls, not time.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from argon2 import profiles


@pytest.fixture(autouse=True, scope="session")
def _cheap_password_hashing() -> Iterator[None]:
    from services.identity.usecases import accounts

    hasher, test = accounts.hasher, profiles.CHEAPEST
    production = (hasher.time_cost, hasher.memory_cost, hasher.parallelism, hasher.hash_len,
                  hasher.salt_len, hasher.encoding, hasher.type)
    # the one shared PasswordHasher, re-initialised in place: the modules that imported it by
    # name (sessions, staff, organizations, signin_codes) hash with it too
    hasher.__init__(time_cost=test.time_cost, memory_cost=test.memory_cost,  # type: ignore[misc]
                    parallelism=test.parallelism, hash_len=test.hash_len,
                    salt_len=test.salt_len, type=test.type)
    try:
        yield
    finally:
        hasher.__init__(*production)  # type: ignore[misc]

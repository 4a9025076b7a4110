"""bankruptcy's tables. The service's own aggregates arrive with the workflows that need them;
until then its database holds the kit's outbox, inbox and idempotency tables."""

from __future__ import annotations

from servicekit.db import new_base

Base = new_base()

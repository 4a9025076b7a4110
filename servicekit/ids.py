"""Ids for rows that are listed by the time they were made.

Times with legal weight are kept to the second (DESIGN), and the lists ordered by one — an
inbox, a case's applications, the documents issued, the reviews waiting — break a tie by id.
With random ids (UUID 4) the notices one event gave an account in one second came in any
order. A UUID 7 (RFC 9562) begins with its millisecond, and the library's are monotonic within
a process, so its text sorts as the rows were made: the tie-break is the order of arrival (to
the millisecond across processes). Ids made before (UUID 4) still sort, only not by arrival.

Not for anything that must be unguessable (a token, a captcha, a ticket): a UUID 7 tells when
it was made and has fewer random bits.
"""

from __future__ import annotations

from uuid6 import uuid7


def new_id() -> str:
    """A row id (36 characters, as the ``String(36)`` columns hold) that sorts by creation."""
    return str(uuid7())

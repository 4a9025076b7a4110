"""``Idempotency-Key`` on every unsafe request: a retried request gets the first answer.

The first request with a key reserves it (a row with status 0) before the view runs; a
concurrent duplicate gets ``409`` instead of running twice. When the view answers, the
response is stored; a later request with the same key and the same body replays it
(``Idempotent-Replayed: true``), and one with a different body is refused with ``422``. A
server error releases the key so the client can retry. A process that dies mid-request leaves
the key reserved (``409``) rather than risk applying the request twice.
"""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from servicekit.db import Database, utcnow
from servicekit.problems import Problem
from servicekit.tables import idempotency_keys as keys

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
MAX_KEY_LENGTH = 200
_STORED_HEADERS = ("Content-Type", "Location", "ETag")


def request_hash(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


class IdempotencyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def begin(self, key: str, principal: str, method: str, path: str,
              digest: str) -> Response | None:
        """Reserve ``key`` or return the stored answer; raise Problem on misuse."""
        if not key or len(key) > MAX_KEY_LENGTH:
            raise Problem(400, "invalid-idempotency-key",
                          f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
        try:
            with self.db.transaction() as session:
                session.execute(insert(keys).values(
                    key=key, principal=principal, method=method, path=path,
                    request_hash=digest, status=0, headers="{}", body=b"",
                    created_at=utcnow()))
            return None
        except IntegrityError:
            pass
        with self.db.transaction() as session:
            row = session.execute(select(keys).where(keys.c.key == key,
                                                     keys.c.principal == principal)).first()
        if row is None:  # released between our insert and our read: treat as in progress
            raise Problem(409, "request-in-progress", "a request with this key is in progress")
        if row.request_hash != digest:
            raise Problem(422, "idempotency-key-reused",
                          "this Idempotency-Key was used for a different request")
        if row.status == 0:
            raise Problem(409, "request-in-progress", "a request with this key is in progress")
        resp = Response(row.body, status=row.status)
        for name, value in json.loads(row.headers).items():
            resp.headers[name] = value
        resp.headers["Idempotent-Replayed"] = "true"
        return resp

    def finish(self, key: str, principal: str, response: Response) -> None:
        with self.db.transaction() as session:
            where = (keys.c.key == key) & (keys.c.principal == principal)
            if response.status_code >= 500:
                session.execute(delete(keys).where(where))
                return
            stored = {h: response.headers[h] for h in _STORED_HEADERS if h in response.headers}
            session.execute(update(keys).where(where).values(
                status=response.status_code, headers=json.dumps(stored),
                body=response.get_data()))

"""``Idempotency-Key`` on every unsafe request: a retried request gets the first answer.

The first request with a key reserves it (a row with status 0) before the view runs; a
concurrent duplicate gets ``409`` instead of running twice. When the view answers, the
response is stored; a later request with the same key that is the same request replays it
(``Idempotent-Replayed: true``), and a different one is refused with ``422`` (what is the same
request: ``request_hash``). A server error releases the key so the client can retry — unless
the request had already committed a change when it failed (a database that went away between
the change and the read of the answer, say): a retry would then apply it twice, so the key is
kept and a retry is told the outcome is unknown (``409 request-outcome-unknown``).

A refusal (a 4xx answer) that committed nothing releases the key too: nothing happened that a
retry could repeat, and the client that mends its request — adds the If-Match it forgot,
names an existing judge, fixes a field — sends it again with the same key and has it run,
instead of being handed the old refusal for a day (or told ``422 idempotency-key-reused`` for
the mended body). The audit entry the kit writes for a 401 or 403 is not a change of the
request's (``servicekit.db.uncounted``). A 4xx that did commit a change (a failed attempt
counted, say) is kept and replayed like any answer — except a 429, which says "try again
later": the same key later runs, whatever the refused attempt counted.

A process that dies mid-request leaves the key reserved rather than risk applying the request
twice: its view may have committed before the answer was stored. Once the reservation is older
than any request can run (``IN_PROGRESS_FOR``), a retry is told so plainly (``409
request-outcome-unknown``: check, then send a new request with a new key) instead of "in
progress". Every key expires after ``ttl`` (a day by default; ``servicekit.retention`` deletes
the rows): an older row is treated as absent, so the key may be used afresh.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from itertools import chain
from typing import Any, TypeVar

from sqlalchemy import Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData
from werkzeug.wrappers import Response

from servicekit.access import view_attribute
from servicekit.db import Database, utcnow
from servicekit.problems import Problem
from servicekit.tables import idempotency_keys as keys

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
MAX_KEY_LENGTH = 200
_STORED_HEADERS = ("Content-Type", "Location", "ETag")
#: how long a key is kept unless the store is told otherwise (``Retention.idempotency_keys``)
DEFAULT_TTL = timedelta(hours=24)
#: longer than any request runs (gunicorn stops a worker after 30 s): a reservation this old
#: belongs to a process that died
IN_PROGRESS_FOR = timedelta(minutes=5)
#: the status kept for a request that failed after it had committed a change (no HTTP status)
FAILED_AFTER_CHANGE = 1


F = TypeVar("F", bound=Callable[..., Any])
_NOT_STORED = "_ecourt_answer_not_stored"


def answer_not_stored(func: F) -> F:
    """Mark a route whose answer is a live credential (a token pair, a sign-in ticket): its
    ``Idempotency-Key`` is accepted and ignored, and no answer is kept — the store would hold
    the tokens in clear in ``idempotency_keys``. Such a route must be safe to simply run
    again: a retried login signs in again, a retried refresh presents a used token."""
    setattr(func, _NOT_STORED, True)
    return func


def stores_answers(view: Callable[..., Any], method: str) -> bool:
    """Whether ``Idempotency-Key`` applies to ``method`` on ``view``: every unsafe method
    except those marked ``answer_not_stored``."""
    return method.upper() in UNSAFE and not view_attribute(view, method, _NOT_STORED)


#: the media type whose body is fingerprinted by its parts
MULTIPART = "multipart/form-data"
#: how much of a multipart body the decoder is given at a time
_CHUNK = 64 * 1024


def request_hash(method: str, path: str, content_type: str, body: bytes) -> str:
    """The fingerprint kept with a key: a request under a used key is the same request (its
    answer replayed) when its fingerprint is the stored one, else a different one (``422
    idempotency-key-reused``).

    It is made of the method, the path with its query, the essence of the body's media type
    (type/subtype in lower case, without parameters) and the body. The media type is in it
    because the same bytes are another request under another type: a view reads a JSON body
    only when it is labelled JSON, a form only when it is a form. (A type the operation does
    not take at all is refused with a 415 before the key is looked at, neither replayed nor
    this 422: ``servicekit.media_types`` says why.)

    A ``multipart/form-data`` body counts by its parts, in order — each one's field name, file
    name, Content-Type and bytes — not by its raw bytes, which hold the boundary a client
    (python-requests, curl, a browser) draws afresh each time it builds the request: the same
    upload rebuilt to retry it was refused as a different request. One that does not parse
    as multipart with its boundary counts by its bytes. Any other body counts by its bytes
    (one pass of SHA-256, as before).

    The fingerprint changed with this rule (before, the method, the path and the raw body): a
    key used just before the upgrade, retried after it, may be refused once as
    ``idempotency-key-reused``; such rows expire with their keys (``ttl``, a day)."""
    essence, options = parse_options_header(content_type)
    essence = essence.lower()
    digest = hashlib.sha256(_framed(method, path, essence))
    parts = _parts_digest(body, options.get("boundary", "")) if essence == MULTIPART else None
    if parts is None:
        digest.update(b"bytes\n" + body)
    else:
        digest.update(b"parts\n" + parts)
    return digest.hexdigest()


def _framed(*fields: str) -> bytes:
    """The fields, each after its length: no two lists of fields give the same bytes."""
    return b"".join(len(raw).to_bytes(8, "big") + raw
                    for raw in (f.encode("utf-8", "surrogatepass") for f in fields))


def _parts_digest(body: bytes, boundary: str) -> bytes | None:
    """A digest of a multipart body's parts in order (each one's kind, name, file name,
    Content-Type and the digest of its bytes), by werkzeug's decoder over the body a chunk at a
    time (the view's form is parsed apart, from the same cached bytes); None when the body is
    not well-formed multipart with ``boundary``."""
    if not boundary or not boundary.isascii():
        return None
    decoder = MultipartDecoder(boundary.encode("ascii"))
    parts, content = hashlib.sha256(), hashlib.sha256()
    chunks = (body[start:start + _CHUNK] for start in range(0, len(body), _CHUNK))
    try:
        for chunk in chain(chunks, [None]):
            decoder.receive_data(chunk)
            event = decoder.next_event()
            while not isinstance(event, NeedData):
                if isinstance(event, Epilogue):
                    return parts.digest()
                if isinstance(event, Field | File):
                    content = hashlib.sha256()
                    filename = event.filename if isinstance(event, File) else None
                    parts.update(_framed("field" if filename is None else "file",
                                         event.name or "", filename or "",
                                         event.headers.get("Content-Type", "")))
                elif isinstance(event, Data):
                    content.update(event.data)
                    if not event.more_data:
                        parts.update(content.digest())
                event = decoder.next_event()
    except ValueError:  # not the multipart body it says it is
        return None
    return None


class IdempotencyStore:
    def __init__(self, db: Database, ttl: timedelta | None = DEFAULT_TTL) -> None:
        self.db = db
        self.ttl = ttl  # None: keys never expire

    def begin(self, key: str, principal: str, method: str, path: str,
              digest: str) -> Response | None:
        """Reserve ``key`` or return the stored answer; raise Problem on misuse."""
        if not key or len(key) > MAX_KEY_LENGTH:
            raise Problem(400, "invalid-idempotency-key",
                          f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
        now = utcnow()
        row = None
        for _ in range(2):  # the second try follows the removal of an expired row
            if self._reserve(key, principal, method, path, digest, now):
                return None
            row = self._stored(key, principal)
            if row is None or self.ttl is None or row.created_at > now - self.ttl:
                break
            self._forget(key, principal, row.created_at)
            row = None
        if row is None:  # released or expired between our insert and our read
            raise Problem(409, "request-in-progress", "a request with this key is in progress")
        if row.request_hash != digest:
            raise Problem(422, "idempotency-key-reused",
                          "this Idempotency-Key was used for a different request")
        if row.status == FAILED_AFTER_CHANGE:
            raise Problem(409, "request-outcome-unknown",
                          "the first request with this key failed after it had changed "
                          "something, so what it did is unknown: check, then send the "
                          "request again with a new key")
        if row.status == 0:
            if now - row.created_at > IN_PROGRESS_FOR:
                raise Problem(409, "request-outcome-unknown",
                              "the first request with this key never finished (its server "
                              "stopped while handling it), so whether it took effect is "
                              "unknown: check, then send the request again with a new key")
            raise Problem(409, "request-in-progress", "a request with this key is in progress")
        resp = Response(row.body, status=row.status)
        for name, value in json.loads(row.headers).items():
            resp.headers[name] = value
        resp.headers["Idempotent-Replayed"] = "true"
        return resp

    def _reserve(self, key: str, principal: str, method: str, path: str, digest: str,
                 now: datetime) -> bool:
        try:
            with self.db.transaction() as session:
                session.execute(insert(keys).values(
                    key=key, principal=principal, method=method, path=path,
                    request_hash=digest, status=0, headers="{}", body=b"", created_at=now))
            return True
        except IntegrityError:
            return False

    def _stored(self, key: str, principal: str) -> Row[Any] | None:
        with self.db.transaction() as session:
            return session.execute(select(keys).where(keys.c.key == key,
                                                      keys.c.principal == principal)).first()

    def _forget(self, key: str, principal: str, created_at: datetime) -> None:
        """Delete an expired row, unless another request has just replaced it."""
        with self.db.transaction() as session:
            session.execute(delete(keys).where(keys.c.key == key, keys.c.principal == principal,
                                               keys.c.created_at == created_at))

    def finish(self, key: str, principal: str, response: Response,
               changed: bool = False) -> None:
        """Keep the answer. ``changed``: the request committed a change of state (see
        ``servicekit.db.writes_committed``), which a server error must not release; a server
        error or a refusal that changed nothing releases the key."""
        with self.db.transaction() as session:
            where = (keys.c.key == key) & (keys.c.principal == principal)
            if (response.status_code >= 400 and not changed) or response.status_code == 429:
                # nothing to repeat, or "try again later" (whatever the attempt counted)
                session.execute(delete(keys).where(where))
                return
            if response.status_code >= 500:
                session.execute(update(keys).where(where).values(status=FAILED_AFTER_CHANGE))
                return
            stored = {h: response.headers[h] for h in _STORED_HEADERS if h in response.headers}
            session.execute(update(keys).where(where).values(
                status=response.status_code, headers=json.dumps(stored),
                body=response.get_data()))

"""Engines, sessions and the unit of work.

A service talks to exactly one database. ``Database.transaction()`` is the unit of work: the
state change and the outbox rows it adds commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

import sqlalchemy.exc
from sqlalchemy import BigInteger, DateTime, Engine, Integer, MetaData, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

#: An id column type that autoincrements on PostgreSQL (bigint) and SQLite (integer rowid).
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database.

    PostgreSQL keeps the zone; SQLite would hand back naive values. Times with legal weight
    are stored in UTC and must come back as UTC, so naive input is refused and naive output
    is read as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: times are stored in UTC and must carry a zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The server's clock, in UTC, to the microsecond: for expiries, ages and ordering."""
    return datetime.now(UTC)


def legal_now() -> datetime:
    """A time with legal weight — a submission, a decision, a service, a sign-off, an
    issuance — as DESIGN keeps it: the server's clock in UTC, **to the second**. A receipt or a
    document shows the second, so what is stored is exactly what a party can point to (a
    hidden fraction would make "23:59:59" on a receipt and the record disagree about which
    side of a deadline a filing fell)."""
    return datetime.now(UTC).replace(microsecond=0)


def new_base() -> type[DeclarativeBase]:
    """A declarative base with its own metadata, holding the kit's tables too.

    Each service calls this once in its ``models.py``; the outbox, inbox and idempotency tables
    then live in that service's database and migrations.
    """
    from servicekit import tables

    md = MetaData(naming_convention=NAMING)
    tables.define(md)

    class Base(DeclarativeBase):
        metadata = md
        type_annotation_map = {datetime: UtcDateTime}  # noqa: RUF012

    return Base


#: how many transactions that wrote something this context (a request's thread) committed
_WRITES_COMMITTED: ContextVar[int] = ContextVar("ecourt_writes_committed", default=0)
#: set in a connection's ``info`` when its transaction writes; statements SQLAlchemy runs
#: set it themselves, and so does anything writing past them (the outbox's queued rows)
WROTE = "ecourt.wrote"


def writes_committed() -> int:
    """A count that grows each time a transaction that wrote (an INSERT, UPDATE or DELETE)
    commits in this context. Compare two readings to learn whether something between them
    changed state: a request that fails after its change committed must not be answered as
    if nothing happened (``servicekit.idempotency``). A COMMIT that itself fails counts too,
    since whether it took effect is unknown."""
    return _WRITES_COMMITTED.get()


@contextmanager
def uncounted() -> Iterator[None]:
    """Writes committed inside are bookkeeping about a request, not its change of state (the
    audit entry of a refusal): ``writes_committed`` reads afterwards as before them, so the
    refused request's Idempotency-Key is released like that of any refusal."""
    before = _WRITES_COMMITTED.get()
    try:
        yield
    finally:
        _WRITES_COMMITTED.set(before)


def _track_writes(engine: Engine) -> None:
    @event.listens_for(engine, "after_cursor_execute")
    def _wrote(conn, _cursor, _statement, _params, context, _many):  # type: ignore[no-untyped-def]
        if context is not None and (context.isinsert or context.isupdate or context.isdelete):
            conn.info[WROTE] = True

    @event.listens_for(engine, "commit")
    def _committing(conn):  # type: ignore[no-untyped-def]
        if conn.info.pop(WROTE, False):
            _WRITES_COMMITTED.set(_WRITES_COMMITTED.get() + 1)

    @event.listens_for(engine, "begin")
    def _began(conn):  # type: ignore[no-untyped-def]
        conn.info.pop(WROTE, None)  # whatever a lost transaction left on the pooled record

    @event.listens_for(engine, "rollback")
    def _rolled_back(conn):  # type: ignore[no-untyped-def]
        if not conn.invalidated:  # ``info`` of a lost connection would try to reconnect
            conn.info.pop(WROTE, None)


#: the execution option of a transaction that only reads (``Database.transaction(reads_only=)``)
READS_ONLY = "ecourt_reads_only"
#: such a transaction on PostgreSQL: one snapshot for all its statements, and no writes
_ONE_SNAPSHOT = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}


def make_engine(url: str, **kwargs: object) -> Engine:
    """An engine for ``url``, its errors never quoting the statement's parameters: those are
    ID numbers, mobiles and password hashes, and an error's text reaches logs, tracebacks and
    dead-letter headers (RELIABILITY S6). Pass ``hide_parameters=False`` only to debug."""
    kwargs.setdefault("hide_parameters", True)
    engine = _make_engine(url, **kwargs)
    _track_writes(engine)
    return engine


def _make_engine(url: str, **kwargs: object) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # Let SQLAlchemy, not pysqlite, issue BEGIN: savepoints then work (the consumer
            # needs them), and BEGIN IMMEDIATE takes the write lock up front, so threads of
            # the embedded suite wait for each other instead of failing on a lock upgrade.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            reads = conn.get_execution_options().get(READS_ONLY, False)
            conn.exec_driver_sql("BEGIN" if reads else "BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("max_overflow", 10)
    engine = create_engine(url, **kwargs)
    from servicekit import outbox  # outbox imports this module

    outbox.install(engine)  # outbox rows travel with the next statement or with COMMIT
    return engine


class Database:
    """One service's database: an engine and a session factory.

    On PostgreSQL the outbox rows a unit of work emits last travel with its COMMIT in one
    round trip (``servicekit.outbox.install``).
    """

    def __init__(self, url: str, **engine_kwargs: object) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._after_commit: list[Callable[[], None]] = []

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` after each successful transaction that may have written (the
        relay's wake-up call): not after a ``reads_only`` one, which cannot have added an
        outbox row — every read would otherwise send the relay to look for rows."""
        self._after_commit.append(callback)

    @contextmanager
    def transaction(self, *, reads_only: bool = False) -> Iterator[Session]:
        """The unit of work: commit on success, roll back on any exception.

        ``reads_only``: the transaction writes nothing, and all it reads is one snapshot of
        the database: a list's total and its page (``servicekit.paging``), an inbox's page and
        its unread count agree even while writes go on (each statement of a default
        PostgreSQL transaction sees what committed before *it* began). It may also stay open a
        long time (an export streamed to a slow client). On PostgreSQL it is ``REPEATABLE
        READ, READ ONLY`` (a write fails at once); on SQLite it begins deferred instead of
        ``BEGIN IMMEDIATE``, so it takes no write lock: in WAL mode it reads its snapshot while
        the service's writes go on (with the write lock it would hold up every write of the
        service, and fail them after the busy timeout, for as long as the download lasts).

        Every route that only reads uses it, a single object's too (a case, a document, an
        account): with ``BEGIN IMMEDIATE`` each read of the embedded tier queued behind the
        service's writes and held them up while it ran. A read that ends in a refusal may use
        it: ``audit.note_denied`` only names the object, and the web layer writes the refusal's
        entry in a transaction of its own (``audit.record_alone``) once this one has ended. A
        route that writes while it answers (a verification logged, a QR sign-in ticket used
        up) keeps an ordinary transaction for its write."""
        session = self.sessions()
        if reads_only:
            session.connection(execution_options=(
                _ONE_SNAPSHOT if self.is_postgres else {READS_ONLY: True}))
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
        if not reads_only:
            for callback in self._after_commit:
                callback()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def dispose(self) -> None:
        self.engine.dispose()


#: SQLSTATEs of a statement that failed for its own sake on a server that is up: a
#: serialization failure, a deadlock, a statement timeout or cancel, a lock not available
STATEMENT_FAILURES = frozenset({"40001", "40P01", "57014", "55P03"})


def statement_failed(exc: BaseException) -> bool:
    """A transient failure of one statement (a deadlock, a serialization failure, a timeout),
    as against a database that cannot be reached. Both are worth trying again, and
    ``database_unreachable`` says yes to both; the difference matters where a failure is
    charged to someone: a handler that always times out is that event's fault, and waiting
    in place for the database to "come back" would wait for ever."""
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) in STATEMENT_FAILURES


def database_unreachable(exc: BaseException) -> bool:
    """The database could not be reached or could not serve (a restart, a failover, a cut
    line, the pool's wait, a busy SQLite file), as against a statement that was wrong.

    SQLAlchemy wraps the driver's connection failures in ``OperationalError`` and
    ``InterfaceError``; psycopg's ``OperationalError`` is SQLSTATE classes 08, 53, 57 and 58
    and deadlocks, all worth a retry. SQLite puts "no such table" in ``OperationalError`` too,
    so from SQLite only a locked or busy database counts: a schema bug stays a 500.
    """
    if isinstance(exc, sqlalchemy.exc.InterfaceError | sqlalchemy.exc.TimeoutError):
        return True
    if not isinstance(exc, sqlalchemy.exc.OperationalError):
        return False
    orig = exc.orig
    if type(orig).__module__ == "sqlite3":
        text = str(orig).lower()
        return "locked" in text or "busy" in text
    return True

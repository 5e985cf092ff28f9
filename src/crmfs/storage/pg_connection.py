"""One PostgreSQL connection with bounded retries: what every PostgreSQL adapter shares.

``PgConnection`` opens a connection lazily (with TCP keepalives and a connect timeout),
runs each piece of work on it, and when the *connection* is lost (refused, dropped,
timed out) reconnects and runs the work again, ``retries`` more times, waiting
``backoff_s``, then twice that, and so on. Errors of a statement are never retried. Work
that writes is not retried once its COMMIT was sent (``committing()``): whether it landed
is unknown, and :class:`~crmfs.errors.BackendUnavailable` says so. Messages name where
PostgreSQL was expected, never the password. See ``docs/postgres.md``.

>>> connection = PgConnection("postgresql://crmfs@db/features", what="the PostgreSQL registry",
...                           setting="registry", application_name="crmfs registry crmfs")
>>> connection.run(lambda conn: conn.execute("SELECT 1").fetchone(), write=False)
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from crmfs.errors import BackendUnavailable, ConfigError, CrmfsError, MissingExtra, StorageError

if TYPE_CHECKING:
    import psycopg

T = TypeVar("T")

# A server that vanishes without closing the connection is noticed in about 25 s (TCP
# keepalives), not hours, unless the dsn says otherwise.
KEEPALIVES: dict[str, str | int] = {
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def psycopg_module() -> Any:
    """psycopg, or ``MissingExtra`` naming the ``postgres`` extra."""
    try:
        import psycopg
    except ImportError as exc:
        raise MissingExtra("psycopg", "postgres") from exc
    return psycopg


def lock_key(name: str) -> int:
    """A 64-bit advisory lock key for ``name`` (stable across processes and versions)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def check_schema(schema: str, setting: str) -> None:
    """A schema name PostgreSQL keeps whole (1 to 63 bytes), or ``ConfigError``."""
    if not schema or len(schema.encode()) > 63:
        raise ConfigError(f"{setting} schema {schema!r}: give a name of 1 to 63 bytes")


def first_line(exc: BaseException | None) -> str:
    """The first line of an error's message (PostgreSQL's details follow on others)."""
    return str(exc).strip().splitlines()[0] if exc is not None and str(exc).strip() else "no reply"


class PgConnection:
    """A lazily opened PostgreSQL connection and the retry loop around work done on it.

    ``what`` names the adapter in messages ("the PostgreSQL registry"), ``setting`` its key
    in ``crmfs.yaml`` (for configuration errors). ``on_connect`` runs on every new
    connection (set a search path, take a session lock); a ``CrmfsError`` it raises is
    not retried. ``unknown_outcome`` ends the message of a write whose COMMIT was sent when
    the connection dropped. ``closed_error`` is raised by calls after ``close``.
    """

    def __init__(
        self,
        dsn: str,
        *,
        what: str,
        setting: str,
        application_name: str,
        retries: int = 3,
        backoff_s: float = 0.2,
        password: str | None = None,
        connect_timeout_s: int = 5,
        on_connect: Callable[[psycopg.Connection[Any]], None] | None = None,
        unknown_outcome: str = "whether it was recorded is unknown",
        closed_error: Callable[[str], CrmfsError] = StorageError,
    ) -> None:
        self._pg = psycopg_module()
        if retries < 0 or backoff_s < 0:
            raise ConfigError(f"{setting} retries and backoff_s must not be negative")
        try:
            parts = self._pg.conninfo.conninfo_to_dict(dsn)
        except self._pg.ProgrammingError as exc:
            raise ConfigError(f"{setting} dsn is not a valid connection string: {exc}") from exc
        # Where, for messages: never the password.
        self.where = (
            f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"
        )
        self.what = what
        extra = {k: v for k, v in KEEPALIVES.items() if k not in parts}
        if password is not None:
            extra["password"] = password
        self._conninfo: str = self._pg.conninfo.make_conninfo(
            dsn,
            connect_timeout=max(2, connect_timeout_s),
            application_name=application_name[:63],
            **extra,
        )
        self.retries = retries
        self.backoff_s = backoff_s
        self._on_connect = on_connect
        self._unknown_outcome = unknown_outcome
        self._closed_error = closed_error
        self._conn: psycopg.Connection[Any] | None = None
        self._closed = False
        self._committing = False

    @property
    def errors(self) -> Any:
        """psycopg's error classes (``errors.OperationalError``, ...)."""
        return self._pg

    def quoted(self, name: str) -> str:
        """``name`` as a quoted SQL identifier."""
        return str(self._pg.sql.Identifier(name).as_string())

    def committing(self) -> None:
        """Say, inside a write, that its work is done and COMMIT is about to be sent."""
        self._committing = True

    def run(self, attempt: Callable[[psycopg.Connection[Any]], T], *, write: bool) -> T:
        """``attempt`` on a live connection; a lost connection is retried with backoff."""
        if self._closed:
            raise self._closed_error(f"{self.what} is closed")
        started = time.monotonic()
        lost: Exception | None = None
        for number in range(self.retries + 1):
            if number:
                time.sleep(self.backoff_s * 2 ** (number - 1))
            self._committing = False
            try:
                return attempt(self._connection())
            except self._pg.OperationalError as exc:
                if not self._connection_lost():
                    raise StorageError(f"{self.what} at {self.where}: {exc}") from exc
                self._forget_connection()
                if write and self._committing:
                    raise BackendUnavailable(
                        f"{self.what} at {self.where} dropped the connection while"
                        f" committing ({first_line(exc)}); {self._unknown_outcome}"
                    ) from exc
                lost = exc
            except self._pg.Error as exc:
                raise StorageError(f"{self.what} at {self.where}: {exc}") from exc
        attempts = self.retries + 1
        written = "nothing was written: " if write else ""
        raise BackendUnavailable(
            f"{self.what} at {self.where} is unavailable ({first_line(lost)};"
            f" {attempts} attempt{'s' if attempts > 1 else ''} over"
            f" {time.monotonic() - started:.1f} s); {written}retry when it is back"
        ) from lost

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            conn = self._pg.connect(self._conninfo, autocommit=True)
            try:
                if self._on_connect is not None:
                    self._on_connect(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _connection_lost(self) -> bool:
        """After an OperationalError: is it the connection (retry) or the statement (not)?"""
        return self._conn is None or self._conn.closed or self._conn.broken

    def _forget_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def live(self) -> psycopg.Connection[Any] | None:
        """The open connection, if there is one (none is opened)."""
        return None if self._conn is None or self._conn.closed else self._conn

    def close(self) -> None:
        self._closed = True
        self._forget_connection()

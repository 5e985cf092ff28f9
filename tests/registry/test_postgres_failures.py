"""PostgreSQL unreachable, dropping connections, failing statements: clear errors, bounded
retries with backoff, no partial apply, recovery when the service returns.

Connections are killed with ``pg_terminate_backend``, outages are a relay taken down in
front of the real server (never the shared server itself), and pauses inside an apply are
triggers in the test's own schema.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from crmfs.errors import BackendUnavailable, RegistryError, StorageError
from crmfs.registry.changes import ChangeKind
from crmfs.registry.postgres_registry import PostgresRegistry
from crmfs.registry.sql_registry import SqlRegistry
from tests.registry.backends import Registries, RegistryAt
from tests.registry.catalogs import catalog, view, windowed
from tests.registry.relay import Relay

ACTIVITY = ("FeatureView", "activity")


def _admin(at: RegistryAt) -> psycopg.Connection[Any]:
    return psycopg.connect(at.dsn, autocommit=True)


def _backends_of(at: RegistryAt, conn: psycopg.Connection[Any], waiting: bool = False) -> list[int]:
    """The server processes of the test's registries (optionally: those in a pg_sleep)."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
        " AND (NOT %s OR wait_event = 'PgSleep')",
        (f"crmfs registry {at.schema}"[:63], waiting),
    ).fetchall()
    return [pid for (pid,) in rows]


def _terminate(at: RegistryAt, waiting: bool = False) -> int:
    """Kill the test's registry connections (those asleep in a trigger, if ``waiting``)."""
    with _admin(at) as conn:
        deadline = time.monotonic() + 10
        while not (pids := _backends_of(at, conn, waiting)) and time.monotonic() < deadline:
            time.sleep(0.02)
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        return len(pids)


def _trigger(at: RegistryAt, table: str, action: str, deferred: bool = False) -> None:
    """On each row written to ``table``: count the attempt, then ``action`` on the first
    (``pause``: sleep until killed) or on every one (``refuse``: raise an error)."""
    body = {
        "pause": "IF nextval(format('%I.attempts', TG_TABLE_SCHEMA)) = 1 THEN"
        " PERFORM pg_sleep(30); END IF;",
        "refuse": "PERFORM nextval(format('%I.attempts', TG_TABLE_SCHEMA));"
        " RAISE EXCEPTION 'refused by the test trigger';",
    }[action]
    timing = "DEFERRABLE INITIALLY DEFERRED" if deferred else ""
    schema = sql.Identifier(at.schema)
    with _admin(at) as conn:
        conn.execute(sql.SQL("CREATE SEQUENCE {}.attempts").format(schema))
        conn.execute(
            sql.SQL(
                "CREATE FUNCTION {}.interfere() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                + body
                + " RETURN NULL; END $$"
            ).format(schema)
        )
        conn.execute(
            sql.SQL(
                "CREATE CONSTRAINT TRIGGER interfere AFTER INSERT OR UPDATE ON {}.{} "
                + timing
                + " FOR EACH ROW EXECUTE FUNCTION {}.interfere()"
            ).format(schema, sql.Identifier(table), schema)
        )


def _attempts(at: RegistryAt) -> int:
    with _admin(at) as conn:
        row = conn.execute(
            sql.SQL(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {}.attempts"
            ).format(sql.Identifier(at.schema))
        ).fetchone()
        assert row is not None
        return int(row[0])


def _state(registry: SqlRegistry) -> tuple[Any, ...]:
    return registry.generation(), registry.applied(), registry.history(*ACTIVITY)


def _in_thread(call: Callable[[], Any]) -> Callable[[], Any]:
    """Start ``call`` in a thread; the returned function waits and returns or raises."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(("ok", call()))
        except Exception as exc:
            outcome.append(("error", exc))

    thread = threading.Thread(target=run)
    thread.start()

    def result() -> Any:
        thread.join(timeout=30)
        kind, value = outcome[0]
        if kind == "error":
            raise value
        return value

    return result


@pytest.fixture
def relay() -> Iterator[Relay]:
    running = Relay()
    running.start()
    yield running
    running.stop()


def test_a_closed_port_is_a_retryable_error_after_bounded_backoff(pg_dsn: str) -> None:
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as raised:
        PostgresRegistry("postgresql://postgres:s3cret@127.0.0.1:1/test", retries=2, backoff_s=0.1)
    elapsed = time.monotonic() - started
    assert isinstance(raised.value, StorageError)
    message = str(raised.value)
    assert "the PostgreSQL registry at 127.0.0.1:1/test is unavailable" in message
    assert "Connection refused" in message
    assert "3 attempts" in message
    assert "nothing was written: retry when it is back" in message
    assert "s3cret" not in message
    assert isinstance(raised.value.__cause__, psycopg.OperationalError)
    assert 0.3 <= elapsed < 3  # waited 0.1 then 0.2 s between the three attempts


def test_no_retries_means_one_attempt(pg_dsn: str) -> None:
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="1 attempt over"):
        PostgresRegistry("postgresql://postgres@127.0.0.1:1/test", retries=0, backoff_s=5)
    assert time.monotonic() - started < 2


def test_a_killed_connection_is_reopened_by_the_next_call(pg_registries: Registries) -> None:
    registry = pg_registries.open(retries=1)
    registry.apply(catalog(view()), now=1)
    assert _terminate(pg_registries.at) == 1
    assert registry.generation() == 1  # reconnected, no error
    assert registry.apply(catalog(windowed(7)), now=2)[0].version == 2


def test_an_outage_shorter_than_the_retries_is_ridden_out(
    pg_registry_at: RegistryAt, relay: Relay
) -> None:
    at = RegistryAt("postgres", dsn=relay.dsn(), schema=pg_registry_at.schema)
    registries = Registries(at)
    try:
        registry = registries.open(retries=6, backoff_s=0.05)  # waits up to 3.15 s in all
        registry.apply(catalog(view()), now=1)
        relay.stop()
        threading.Timer(0.4, relay.start).start()
        changes = registry.apply(catalog(windowed(7)), now=2)
        assert [(c.change, c.version) for c in changes] == [(ChangeKind.VALUES, 2)]
        assert registry.generation() == 2
    finally:
        registries.close_all()


def test_an_outage_longer_than_the_retries_fails_clearly_then_recovers(
    pg_registry_at: RegistryAt, relay: Relay
) -> None:
    at = RegistryAt("postgres", dsn=relay.dsn(), schema=pg_registry_at.schema)
    registries = Registries(at)
    try:
        registry = registries.open(retries=2, backoff_s=0.02)
        registry.apply(catalog(view()), now=1)
        before = _state(registry)
        relay.stop()
        with pytest.raises(BackendUnavailable, match="nothing was written"):
            registry.apply(catalog(windowed(7)), now=2)
        with pytest.raises(BackendUnavailable, match=f"127.0.0.1:{relay.port}/test"):
            registry.applied()
        relay.start()
        # The service is back: the same registry reconnects; the failed apply left no trace.
        assert _state(registry) == before
        assert registry.apply(catalog(windowed(7)), now=3)[0].version == 2
    finally:
        registries.close_all()


def test_a_connection_killed_mid_apply_keeps_nothing_of_it(pg_registries: Registries) -> None:
    registry = pg_registries.open(retries=0)
    registry.apply(catalog(view()), now=1)
    before = _state(registry)
    # The apply writes version 2, then pauses on its ``current`` row, holding the lock.
    _trigger(pg_registries.at, "current", "pause")
    result = _in_thread(lambda: registry.apply(catalog(windowed(7)), now=2))
    assert _terminate(pg_registries.at, waiting=True) == 1
    with pytest.raises(BackendUnavailable, match="nothing was written"):
        result()
    assert _state(pg_registries.open()) == before  # version 2's row went with the transaction
    # Recovery: the same registry reconnects and the apply goes through whole.
    assert registry.apply(catalog(windowed(7)), now=3)[0].version == 2
    assert [v for v, _, _ in registry.history(*ACTIVITY)] == [1, 2]


def test_an_apply_whose_connection_drops_is_retried_whole(pg_registries: Registries) -> None:
    registry = pg_registries.open(retries=2)
    registry.apply(catalog(view()), now=1)
    _trigger(pg_registries.at, "current", "pause")
    result = _in_thread(lambda: registry.apply(catalog(windowed(7)), now=2))
    assert _terminate(pg_registries.at, waiting=True) == 1
    changes = result()
    assert [(c.change, c.version) for c in changes] == [(ChangeKind.VALUES, 2)]
    assert _attempts(pg_registries.at) == 2
    assert registry.generation() == 2
    assert [v for v, _, _ in registry.history(*ACTIVITY)] == [1, 2]


def test_a_connection_lost_while_committing_is_not_retried(pg_registries: Registries) -> None:
    registry = pg_registries.open(retries=3)
    registry.apply(catalog(view()), now=1)
    before = _state(registry)
    # A deferred trigger runs inside COMMIT: the connection drops while committing.
    _trigger(pg_registries.at, "applies", "pause", deferred=True)
    result = _in_thread(lambda: registry.apply(catalog(windowed(7)), now=2))
    assert _terminate(pg_registries.at, waiting=True) == 1
    with pytest.raises(BackendUnavailable, match="whether the apply was recorded is unknown"):
        result()
    assert _attempts(pg_registries.at) == 1  # an apply that may have landed is not repeated
    assert _state(registry) == before  # here it had not: the commit never finished


def test_a_statement_error_is_not_retried(pg_registries: Registries) -> None:
    registry = pg_registries.open(retries=3, backoff_s=5.0)
    registry.apply(catalog(view()), now=1)
    before = _state(registry)
    _trigger(pg_registries.at, "versions", "refuse")
    with pytest.raises(StorageError, match="refused by the test trigger") as raised:
        registry.apply(catalog(windowed(7)), now=2)
    assert not isinstance(raised.value, BackendUnavailable)
    assert _attempts(pg_registries.at) == 1
    assert _state(registry) == before


def test_a_closed_registry_refuses_calls(pg_registries: Registries) -> None:
    registry = pg_registries.open()
    registry.close()
    with pytest.raises(RegistryError, match="closed"):
        registry.generation()

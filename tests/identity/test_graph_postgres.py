"""The identity graph in PostgreSQL with real processes and real failures: one writer at a
time, readers that catch up, connections killed part-way through a step (no partial
writes), an outage (bounded retries, then ``BackendUnavailable``), and the same golden ids
as SQLite on the synthetic CRM.

Connections are killed with ``pg_terminate_backend`` from a second connection, while a
trigger in the test's own schema holds the step in a ``pg_sleep``; outages are a relay in
front of the real server taken down (never the shared server itself)."""

from __future__ import annotations

import multiprocessing
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest
from psycopg import sql

from crmfs.definitions import IdentifierKind
from crmfs.errors import BackendUnavailable, IdentityError, StorageError
from crmfs.identity.deterministic import ChangeKind, IdentityRecord
from crmfs.identity.graph import IdentityGraph
from crmfs.identity.graph_postgres import writer_lock_key
from crmfs.synthetic import generate_crm, identity_records
from tests.identity import graph_workers
from tests.identity.graph_places import GraphAt, Schemas
from tests.registry.relay import Relay

EMAIL, PHONE = IdentifierKind.EMAIL, IdentifierKind.PHONE


def rec(rid: str, seen: int, *keys: tuple[IdentifierKind, str]) -> IdentityRecord:
    return IdentityRecord(rid, seen, frozenset(keys))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def at(pg_dsn: str, pg_schemas: Schemas) -> GraphAt:
    return GraphAt("postgres", schema=pg_schemas.new(), dsn=pg_dsn)


def _admin(at: GraphAt) -> psycopg.Connection[Any]:
    return psycopg.connect(at.dsn, autocommit=True)


def _state(graph: IdentityGraph) -> tuple[Any, ...]:
    """Everything a graph shows: clusters now, every interval, the audit trail."""
    intervals = {
        axis: sorted(graph.intervals(axis).to_pylist(), key=lambda r: tuple(r.values()))
        for axis in ("recorded", "effective", "current")
    }
    return graph.clusters(), intervals, graph.changes_after(0)


def _seed(graph: IdentityGraph, clock: Clock) -> None:
    clock.now = 100
    graph.add(rec("a", 1, (EMAIL, "a@x.com")))
    clock.now = 200
    graph.add(rec("b", 2, (PHONE, "+1")))


BRIDGE = rec("bridge", 3, (EMAIL, "a@x.com"), (PHONE, "+1"))  # merges a's and b's clusters


def _spawn(target: Callable[..., None], *args: Any) -> tuple[Any, queue.Queue[Any]]:
    context = multiprocessing.get_context("spawn")
    outcomes: Any = context.Queue()
    process = context.Process(target=target, args=(*args, outcomes))
    process.start()
    return process, outcomes


def _next(outcomes: queue.Queue[Any]) -> tuple[str, Any]:
    kind, value = outcomes.get(timeout=60)
    assert kind != "error", value
    return kind, value


# -- one writer, readers ------------------------------------------------------------------


def test_a_second_writer_is_refused_naming_the_first_then_may_wait_for_it(at: GraphAt) -> None:
    context = multiprocessing.get_context("spawn")
    release = context.Event()
    holder, outcomes = _spawn(graph_workers.hold_writer, at, release)
    try:
        _, holder_pid = _next(outcomes)
        with pytest.raises(IdentityError) as refused:
            at.open(Clock(), writers="one")
        message = str(refused.value)
        assert (
            f"identity graph {at.schema!r} at 127.0.0.1:5432/test has a writer already" in message
        )
        # The holder's application name: its host and process id (cut at 63 bytes).
        assert (
            f"crmfs identity {at.schema} writer {socket.gethostname()}:{holder_pid}"[:63] in message
        )
        assert "server pid" in message
        # A reader needs no lock.
        at.open(Clock(), read_only=True).close()
        # A writer that may wait gets the graph once the first one closes it.
        threading.Timer(0.5, release.set).start()
        started = time.monotonic()
        graph = at.open(Clock(), writers="one", wait_s=20)
        assert 0.4 < time.monotonic() - started < 15
        assert _next(outcomes) == ("closed", holder_pid)
        graph.add(rec("a", 1, (EMAIL, "a@x.com")))
        graph.close()
    finally:
        release.set()
        holder.join(timeout=30)


def test_writers_of_several_processes_take_turns_step_by_step(at: GraphAt, tmp_path: Path) -> None:
    """Two processes add interleaved records that link across them (shared emails and
    phones): the graph ends with the clusters of one process adding them all."""
    people = 12
    records = [
        rec(f"r{i}", i, (EMAIL, f"p{i % people}@x.com"), (PHONE, f"+1555{i % (people // 2)}"))
        for i in range(48)
    ]
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    spawned = [_spawn(graph_workers.add_one_by_one, at, records[k::2], go) for k in range(2)]
    try:
        for _, outcomes in spawned:
            assert _next(outcomes)[0] == "ready"
        go.set()
        for _, outcomes in spawned:
            assert _next(outcomes) == ("done", 24)
    finally:
        go.set()
        for process, _ in spawned:
            process.join(timeout=60)
    alone = GraphAt("sqlite", folder=tmp_path).open(Clock())
    alone.add_all(records)
    shared = at.open(Clock(), read_only=True)
    assert sorted(map(sorted, shared.clusters().values())) == sorted(
        map(sorted, alone.clusters().values())
    )
    assert len(shared.changes_after(0)) >= 48
    shared.close()
    alone.close()


def test_a_reader_process_sees_the_writers_merge_after_refresh(at: GraphAt) -> None:
    clock = Clock()
    writer = at.open(clock)
    _seed(writer, clock)
    ga, gb = writer.golden_id("a"), writer.golden_id("b")
    assert ga != gb
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    reader, outcomes = _spawn(graph_workers.read_before_and_after, at, ("a", "b"), 300, go)
    try:
        assert _next(outcomes) == ("opened", [ga, gb])
        clock.now = 300
        merge = writer.add(BRIDGE)
        assert merge[0].kind is ChangeKind.MERGED
        go.set()
        _, (stale, as_of, kinds, changed, fresh, again, refused) = _next(outcomes)
    finally:
        go.set()
        reader.join(timeout=30)
        writer.close()
    assert stale == [ga, gb]  # "now" reads answer from the reader's memory until refresh
    assert as_of == [ga, ga]  # reads as of a time read the tables: the merge is there
    assert kinds == ["new", "new", "merged"]  # so does the audit trail a follower reads
    assert changed is True
    assert fresh == [ga, ga]
    assert again is False  # nothing new since
    assert "opened read-only" in refused


def test_a_reader_in_this_process_follows_operator_decisions(at: GraphAt) -> None:
    clock = Clock()
    writer = at.open(clock)
    _seed(writer, clock)
    clock.now = 300
    writer.add(BRIDGE)
    reader = at.open(clock, read_only=True)
    assert reader.clusters() == writer.clusters()
    clock.now = 400
    writer.do_not_link("a", "bridge", "checked: two people")
    assert reader.refresh()
    assert _state(reader) == _state(writer)
    assert reader.linker.operator_links() == writer.linker.operator_links()
    assert reader.golden_id_of(EMAIL, "a@x.com") is None  # shared by the do-not-link
    reader.close()
    writer.close()


# -- failures: killed connections, an outage --------------------------------------------------


def _pause_on(at: GraphAt, table: str, deferred: bool = False) -> None:
    """A trigger on ``table`` in the graph's schema: the first row written sleeps (until
    its connection is killed); every write is counted in the sequence ``attempts``."""
    schema = sql.Identifier(at.schema)
    timing = sql.SQL("DEFERRABLE INITIALLY DEFERRED" if deferred else "")
    with _admin(at) as conn:
        conn.execute(sql.SQL("CREATE SEQUENCE {}.attempts").format(schema))
        conn.execute(
            sql.SQL(
                "CREATE FUNCTION {}.pause() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                " IF nextval(format('%I.attempts', TG_TABLE_SCHEMA)) = 1 THEN"
                " PERFORM pg_sleep(30); END IF; RETURN NULL; END $$"
            ).format(schema)
        )
        conn.execute(
            sql.SQL(
                "CREATE CONSTRAINT TRIGGER pause AFTER INSERT OR UPDATE ON {}.{} {}"
                " FOR EACH ROW EXECUTE FUNCTION {}.pause()"
            ).format(schema, sql.Identifier(table), timing, schema)
        )


def _attempts(at: GraphAt) -> int:
    with _admin(at) as conn:
        row = conn.execute(
            sql.SQL(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {}.attempts"
            ).format(sql.Identifier(at.schema))
        ).fetchone()
    assert row is not None
    return int(row[0])


def _kill_writer_when_paused(at: GraphAt) -> None:
    """Kill the writer's connection (the holder of the writer lock) once it sleeps."""
    with _admin(at) as conn:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.objsubid = 1"
                " AND ((l.classid::bigint << 32) | l.objid::bigint) = %s"
                " AND a.wait_event = 'PgSleep'",
                (writer_lock_key(at.schema),),
            ).fetchone()
            if row is not None:
                conn.execute("SELECT pg_terminate_backend(%s)", row)
                return
            time.sleep(0.02)
    raise AssertionError("the writer never paused in the trigger")


def _in_thread(call: Callable[[], Any]) -> Callable[[], Any]:
    """Start ``call`` in a thread; the returned function waits and returns or raises."""
    outcome: list[tuple[str, Any]] = []

    def run() -> None:
        try:
            outcome.append(("ok", call()))
        except Exception as exc:
            outcome.append(("error", exc))

    thread = threading.Thread(target=run)
    thread.start()

    def result() -> Any:
        thread.join(timeout=60)
        kind, value = outcome[0]
        if kind == "error":
            raise value
        return value

    return result


def test_a_connection_killed_mid_step_leaves_the_graph_as_before_the_step(at: GraphAt) -> None:
    clock = Clock()
    graph = at.open(clock, retries=0)
    _seed(graph, clock)
    before = _state(graph)
    _pause_on(at, "changes")  # the merge's change row: after its record, keys and clusters
    clock.now = 300
    step = _in_thread(lambda: graph.add(BRIDGE))
    _kill_writer_when_paused(at)
    with pytest.raises(BackendUnavailable, match="nothing was written"):
        step()
    reader = at.open(clock, read_only=True)
    assert _state(reader) == before  # on disk: nothing of the step
    assert reader.golden_id("bridge") is None
    assert _state(graph) == before  # in the writer's memory: read again from the tables
    # The writer reconnects (taking the writer lock again) and the step goes through whole.
    assert graph.add(BRIDGE)[0].kind is ChangeKind.MERGED
    assert reader.refresh()
    assert _state(reader) == _state(graph)
    assert [e.seq for e in graph.changes_after(0)] == [1, 2, 3]
    reader.close()
    graph.close()


def test_a_step_whose_connection_drops_is_retried_whole(at: GraphAt) -> None:
    clock = Clock()
    graph = at.open(clock, retries=2)
    _seed(graph, clock)
    _pause_on(at, "changes")
    clock.now = 300
    step = _in_thread(lambda: graph.add(BRIDGE))
    _kill_writer_when_paused(at)
    assert [c.kind for c in step()] == [ChangeKind.MERGED]
    assert _attempts(at) == 2  # the change row of the first attempt went with it
    assert [e.kind for e in graph.changes_after(0)] == [ChangeKind.NEW] * 2 + [ChangeKind.MERGED]
    assert graph.members(graph.golden_id("a") or "") == {"a", "b", "bridge"}
    graph.close()


def test_a_connection_lost_while_committing_is_not_retried(at: GraphAt) -> None:
    clock = Clock()
    graph = at.open(clock, retries=3)
    _seed(graph, clock)
    before = _state(graph)
    _pause_on(at, "graph_state", deferred=True)  # runs inside COMMIT
    clock.now = 300
    step = _in_thread(lambda: graph.add(BRIDGE))
    _kill_writer_when_paused(at)
    with pytest.raises(BackendUnavailable, match="whether the step was recorded is unknown"):
        step()
    assert _attempts(at) == 1  # a step that may have landed is not repeated
    assert _state(graph) == before  # here it had not: memory reads the tables again
    graph.close()


@pytest.fixture
def relay() -> Iterator[Relay]:
    running = Relay()
    running.start()
    yield running
    running.stop()


def test_an_outage_fails_clearly_keeps_memory_reads_and_recovers(at: GraphAt, relay: Relay) -> None:
    clock = Clock()
    through_relay = GraphAt("postgres", schema=at.schema, dsn=relay.dsn())
    graph = through_relay.open(clock, retries=2, backoff_s=0.02)
    _seed(graph, clock)
    before = _state(graph)
    ga = graph.golden_id("a")
    relay.stop()
    clock.now = 300
    with pytest.raises(BackendUnavailable) as raised:
        graph.add(BRIDGE)
    message = str(raised.value)
    assert f"identity graph {at.schema!r} at 127.0.0.1:{relay.port}/test is unavailable" in message
    assert "3 attempts" in message
    assert "nothing was written: retry when it is back" in message
    # "Now" reads answer from memory (the step failed before it changed anything) ...
    assert graph.golden_id("a") == ga
    assert graph.golden_id("bridge") is None
    # ... reads of the tables wait for PostgreSQL.
    with pytest.raises(BackendUnavailable):
        graph.golden_id("a", at_us=150)
    relay.start()
    assert _state(graph) == before
    assert graph.add(BRIDGE)[0].kind is ChangeKind.MERGED
    graph.close()


def test_an_unreachable_server_is_a_retryable_error_after_bounded_backoff() -> None:
    at = GraphAt(
        "postgres", schema="never_made", dsn="postgresql://postgres:s3cret@127.0.0.1:1/test"
    )
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as raised:
        at.open(Clock(), retries=2, backoff_s=0.1)
    assert 0.3 <= time.monotonic() - started < 5
    message = str(raised.value)
    assert (
        "the PostgreSQL identity graph 'never_made' at 127.0.0.1:1/test is unavailable" in message
    )
    assert "Connection refused" in message
    assert "s3cret" not in message
    assert isinstance(raised.value, StorageError)


# -- the same golden ids as SQLite ------------------------------------------------------------


@pytest.fixture(scope="module")
def crm_300(tmp_path_factory: pytest.TempPathFactory) -> list[IdentityRecord]:
    folder = tmp_path_factory.mktemp("crm300")
    generated = generate_crm(folder, scale=300, seed=5, progress=None)
    records, _ = identity_records(generated.files["ground_truth"].parent)
    return records


def test_the_synthetic_crm_gets_the_same_golden_ids_on_both_backends(
    at: GraphAt, tmp_path: Path, crm_300: list[IdentityRecord]
) -> None:
    clock = Clock()
    graphs = [GraphAt("sqlite", folder=tmp_path).open(clock), at.open(clock)]
    half = len(crm_300) // 2
    for graph in graphs:
        graph.add_all(crm_300[:half])  # one batch
    assert _state(graphs[0]) == _state(graphs[1])
    for graph in graphs:
        graph.fit_matcher()
    assert _state(graphs[0]) == _state(graphs[1])
    clock.now = 2_000
    for graph in graphs:
        for record in crm_300[half : half + 100]:  # one at a time, each scored on arrival
            graph.add(record)
        graph.add_all(crm_300[half + 100 :])
    sqlite_state, postgres_state = _state(graphs[0]), _state(graphs[1])
    assert sqlite_state == postgres_state
    assert len(sqlite_state[0]) > 100
    assert graphs[0].review_pairs(0.02) == graphs[1].review_pairs(0.02)
    for graph in graphs:
        graph.close()
    reopened = at.open(clock, read_only=True)
    assert _state(reopened) == postgres_state
    assert isinstance(reopened.intervals("effective"), pa.Table)
    reopened.close()


def test_a_step_that_waits_too_long_for_another_writers_step_names_it(at: GraphAt) -> None:
    clock = Clock()
    first = at.open(clock, retries=0)
    _seed(first, clock)
    second = at.open(Clock(), wait_s=0.3)  # writers take turns: both open
    _pause_on(at, "changes")
    clock.now = 300
    step = _in_thread(lambda: first.add(BRIDGE))  # sleeps inside its step, holding the turn
    deadline = time.monotonic() + 20
    while _attempts(at) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    with pytest.raises(IdentityError, match=r"write step held it for more than 0\.3 s") as late:
        second.add(rec("c", 4, (EMAIL, "c@x.com")))
    assert time.monotonic() - started < 10
    assert f"crmfs identity {at.schema} writer" in str(late.value)
    _kill_writer_when_paused(at)
    with pytest.raises(BackendUnavailable):
        step()
    # The turn is free again: the second writer's step goes through.
    assert second.add(rec("c", 4, (EMAIL, "c@x.com")))[0].kind is ChangeKind.NEW
    first.close()
    second.close()

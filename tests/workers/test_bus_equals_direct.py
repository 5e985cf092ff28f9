"""Events published to the Redis Streams bus and processed by two worker processes leave
exactly what the direct path (``FeatureStore.ingest``) leaves: the event log (but its seqs),
the quarantine, every table of the identity graph, the marks, every online value."""

from __future__ import annotations

from pathlib import Path

from crmfs.storage.redis_streams import RedisStreamBus
from tests.workers.crm_project import batches, snapshot
from tests.workers.harness import Workers, publish, wait_drained
from tests.workers.reference import MESSAGE_ROWS, direct_snapshot


def test_two_workers_leave_what_the_direct_path_leaves(
    project: Path, transport: RedisStreamBus, workers: Workers
) -> None:
    messages = publish(project, batches(), MESSAGE_ROWS)
    assert messages > 50
    workers.start("w1")
    workers.start("w2")
    wait_drained(transport, workers, restart=False)
    assert workers.stop_all() == {"w1": 0, "w2": 0}
    found = snapshot(project)
    expected = direct_snapshot()
    assert found["log"].keys() == expected["log"].keys()
    for part in ("quarantine", "graph", "marks", "log", "online"):
        assert found[part] == expected[part], part
    assert transport.dead_letters() == []
    assert not any(transport.pending()[p] for p in transport.names)

"""Two workers folding the same entities at once (a view keyed by another field than the
partition key: stores, while orders are partitioned by customer) still leave exactly what
the direct path leaves: a batch whose entities were written after its fold read them is
folded again at its turn. The workers report how often that happened: here, often."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from crmfs.storage.redis_streams import RedisStreamBus
from crmfs.store import FeatureStore
from tests.storage.redis_servers import delete_prefix, unique_prefix
from tests.workers.crm_project import NOW_US, batches, make_project, snapshot
from tests.workers.harness import Workers, publish, wait_drained

ORDERS = [records for source, records in batches(seed=5, orders_count=3_000) if source == "orders"]


def _direct() -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="crmfs-direct-orders-"))
    prefix = unique_prefix("direct-orders")
    try:
        make_project(folder / "project", prefix)
        store = FeatureStore(folder / "project", clock=lambda: NOW_US)
        for records in ORDERS:
            store.ingest("orders", records)
        store.close()
        return snapshot(folder / "project")
    finally:
        delete_prefix(prefix)
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_folding_the_same_stores_at_once_leave_what_the_direct_path_leaves(
    project: Path, transport: RedisStreamBus, workers: Workers
) -> None:
    publish(project, [("orders", records) for records in ORDERS], message_rows=15)
    # A pause between each fold and its write: the other worker folds the same stores meanwhile.
    workers.start("w1", "--batch", "2", "--fold-delay-ms", "15")
    workers.start("w2", "--batch", "2", "--fold-delay-ms", "15")
    wait_drained(transport, workers, restart=False)
    assert workers.stop_all() == {"w1": 0, "w2": 0}
    refolds = sum(int(n) for n in re.findall(r"refolds (\d+)", workers.output()))
    assert refolds > 0, workers.output()
    found, expected = snapshot(project), _direct()
    for part in ("marks", "quarantine", "log", "online"):
        assert found[part] == expected[part], part

"""A process killed with SIGKILL mid-ingest loses no acknowledged record, and a retry of the
same input double-counts nothing (log, quarantine and online state)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crmfs.store import FeatureStore

EVENTS = 120_000
CUSTOMERS = 500

DEFINITIONS = textwrap.dedent(
    """
    from crmfs import Aggregation, Entity, EventSource, FeatureView, Latest

    customer = Entity("customer", join_key="customer_id")
    events = EventSource(
        "events",
        schema={"event_id": "string", "ts": "timestamp", "customer_id": "string", "qty": "int"},
        event_id="event_id",
        event_time="ts",
    )
    activity = FeatureView(
        "activity",
        entity=customer,
        source=events,
        features=[
            Aggregation("events", "count", windows=["400d"]),
            Aggregation("qty", "sum", field="qty", windows=["400d"]),
            Latest("last_qty", field="qty"),
        ],
    )
    """
)

CHILD = textwrap.dedent(
    """
    import sys
    from crmfs.store import FeatureStore

    store = FeatureStore(sys.argv[1])

    def ack(chunk, report):
        print(f"acked {report.accepted}", flush=True)

    store.ingest_file("events", sys.argv[2], chunk_rows=4000, progress=ack)
    print("done", flush=True)
    """
)


def _write_input(path: Path) -> None:
    rng = random.Random(3)
    start = datetime.now(UTC) - timedelta(days=300)
    rows = {
        "event_id": [f"e{i}" for i in range(EVENTS)],
        "ts": [start + timedelta(seconds=rng.randrange(250 * 86400)) for _ in range(EVENTS)],
        "customer_id": [f"c{rng.randrange(CUSTOMERS)}" for _ in range(EVENTS)],
        "qty": [rng.randrange(1, 10) if i % 1000 else "bad" for i in range(EVENTS)],
    }
    rows["qty"] = [str(v) for v in rows["qty"]]  # text, so one record in 1,000 is rejected
    pq.write_table(pa.table(rows), path)


def _run_child(project: Path, data: Path, kill_after_acks: int | None) -> int:
    """Run an ingest in a child; SIGKILL it after some acks. Returns the last acked count."""
    script = project / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(project), str(data)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    acked = 0
    acks = 0
    for line in proc.stdout:
        if line.startswith("acked"):
            acked = int(line.split()[1])
            acks += 1
            if kill_after_acks is not None and acks >= kill_after_acks:
                time.sleep(random.random() * 0.05)  # land anywhere in the next chunk
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait(timeout=300)
    proc.stdout.close()
    if kill_after_acks is None:
        assert proc.returncode == 0
    else:
        assert proc.returncode == -signal.SIGKILL
    return acked


@pytest.mark.slow
def test_sigkill_mid_ingest_loses_nothing_and_retry_double_counts_nothing(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "crmfs.yaml").write_text("project: crash\ndefinitions: definitions.py\n")
    (project / "definitions.py").write_text(DEFINITIONS)
    data = tmp_path / "events.parquet"
    _write_input(data)
    setup = FeatureStore(project)
    setup.apply()
    setup.close()

    acked_total = 0
    for kill_after in (2, 5, 9):
        # Each attempt re-sends the whole file, as a retrying client would.
        probe = FeatureStore(project)
        acked_before = probe.log.counts().get("events", 0)
        probe.close()
        acked = _run_child(project, data, kill_after)
        store = FeatureStore(project)
        in_log = store.log.counts().get("events", 0)
        assert in_log >= acked_before + acked  # every acknowledged record is durable
        acked_total = in_log
        store.close()
    _run_child(project, data, None)

    store = FeatureStore(project)
    store.catch_up()
    valid = EVENTS - EVENTS // 1000
    assert store.log.counts()["events"] == valid >= acked_total
    table = store.log.read("events")
    assert table is not None
    assert len(set(table["event_id"].to_pylist())) == valid  # no event stored twice
    bad_ids = {r.record["event_id"] for r in store.quarantine(limit=100_000)}
    assert bad_ids == {f"e{i}" for i in range(0, EVENTS, 1000)}

    # Online state equals the batch runtime over the log: nothing applied twice or lost.
    keys = [f"c{i}" for i in range(CUSTOMERS)]
    now = datetime.now(UTC)
    refs = ["activity:events_400d", "activity:qty_400d"]
    online = store.get_online_features(refs, [{"customer_id": k} for k in keys], now=now)
    import pandas as pd

    offline = store.get_historical_features(
        pd.DataFrame({"customer_id": keys, "event_timestamp": [now] * len(keys)}), refs
    ).to_df()
    assert online.values["activity:events_400d"] == offline["events_400d"].tolist()
    assert online.values["activity:qty_400d"] == offline["qty_400d"].tolist()
    assert sum(online.values["activity:events_400d"]) == valid

"""Large batches folded on two cores give the same states as one process, even if the worker dies."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pyarrow as pa
import pytest

from crmfs import Aggregation, Entity, EventSource, FeatureView, Latest
from crmfs.runtimes.streaming.processor import PARALLEL_FOLD_MIN_ROWS, StreamProcessor
from crmfs.storage.event_log import EVENT_TIME, INGESTED_AT, SEQ
from crmfs.storage.ports import Watermark
from crmfs.storage.sqlite_online import SqliteOnlineStore
from crmfs.transform.plan import plan_view

S = 1_000_000
BASE = 1_780_000_000 * S
customer = Entity("customer", join_key="customer_id")
clicks = EventSource(
    "clicks",
    schema={"event_id": "string", "ts": "timestamp", "customer_id": "string", "item": "string"},
    event_id="event_id",
    event_time="ts",
)
VIEW = FeatureView(
    "clicks_view",
    customer,
    clicks,
    [
        Aggregation("clicks", "count", ["1h", "1d"]),
        Aggregation("items", "count_distinct", ["1d"], field="item"),
        Aggregation("recent", "last_n", ["1d"], field="item", n=3),
        Latest("last_item", "item"),
    ],
)
PLAN = plan_view(VIEW)


def _batch(start: int, rows: int) -> pa.Table:
    """Log rows (meta columns included) spread over 700 customers, out of time order."""
    seqs = range(start, start + rows)
    return pa.table(
        {
            "event_id": [f"e{i}" for i in seqs],
            "customer_id": [None if i % 97 == 0 else f"c{i % 700}" for i in seqs],
            "item": [None if i % 13 == 0 else f"i{i % 37}" for i in seqs],
            EVENT_TIME: pa.array([BASE + ((i * 7919) % 86_400) * S for i in seqs], pa.int64()),
            INGESTED_AT: pa.array([BASE + 86_400 * S] * rows, pa.int64()),
            SEQ: pa.array(list(seqs), pa.int64()),
        }
    )


def _fold_all(processor: StreamProcessor, online: SqliteOnlineStore) -> dict[str, bytes]:
    seq = 0
    for rows in (PARALLEL_FOLD_MIN_ROWS + 500, 300, PARALLEL_FOLD_MIN_ROWS * 2):
        batch = _batch(seq + 1, rows)
        now = BASE + 86_400 * S
        updates = processor.fold("clicks", batch, now)
        seq += rows
        online.write(updates, Watermark(seq, now))
    keys = [f"c{i}" for i in range(700)]
    blobs = online.read(PLAN.table, keys)
    assert all(blob is not None for blob in blobs)
    return dict(zip(keys, blobs, strict=True))  # type: ignore[arg-type]


def test_two_cores_fold_what_one_folds(tmp_path: Path) -> None:
    single_store = SqliteOnlineStore(tmp_path / "single.db")
    single = _fold_all(StreamProcessor(single_store, [PLAN]), single_store)
    shared_store = SqliteOnlineStore(tmp_path / "shared.db")
    processor = StreamProcessor(
        shared_store, [PLAN], worker_online=partial(SqliteOnlineStore, shared_store.path)
    )
    try:
        shared = _fold_all(processor, shared_store)
        assert processor._worker is not None  # the worker really took part
    finally:
        processor.close()
    assert shared == single


def test_a_dead_worker_leaves_the_fold_to_the_process(tmp_path: Path) -> None:
    single_store = SqliteOnlineStore(tmp_path / "single.db")
    single = _fold_all(StreamProcessor(single_store, [PLAN]), single_store)
    store = SqliteOnlineStore(tmp_path / "shared.db")
    processor = StreamProcessor(store, [PLAN], worker_online=partial(SqliteOnlineStore, store.path))
    worker = processor._fold_worker()
    assert worker is not None
    os.kill(worker.pid, signal.SIGKILL)
    os.waitpid(worker.pid, 0)
    try:
        assert _fold_all(processor, store) == single
        assert processor._worker is None  # dropped after it failed
    finally:
        processor.close()


def test_a_worker_that_cannot_open_the_store_leaves_the_fold_to_the_process(
    tmp_path: Path,
) -> None:
    single_store = SqliteOnlineStore(tmp_path / "single.db")
    single = _fold_all(StreamProcessor(single_store, [PLAN]), single_store)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    store = SqliteOnlineStore(tmp_path / "shared.db")
    broken = partial(SqliteOnlineStore, blocker / "online.db")  # fails in the worker
    processor = StreamProcessor(store, [PLAN], worker_online=broken)
    try:
        assert _fold_all(processor, store) == single
        assert processor._worker is None
    finally:
        processor.close()


def test_an_error_in_the_process_share_stops_the_worker_and_later_folds_stay_right(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fold that fails while the worker's reply is pending must not leave that reply to be
    taken for the next share's."""
    single_store = SqliteOnlineStore(tmp_path / "single.db")
    single = _fold_all(StreamProcessor(single_store, [PLAN]), single_store)
    store = SqliteOnlineStore(tmp_path / "shared.db")
    processor = StreamProcessor(store, [PLAN], worker_online=partial(SqliteOnlineStore, store.path))
    own = processor._folds[0]
    real_fold = own.fold
    calls = {"n": 0}

    def fail_once(*args: object, **kwargs: object) -> dict[object, bytes]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt  # anything, even a BaseException, between submit and result
        return real_fold(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(own, "fold", fail_once)
    try:
        with pytest.raises(KeyboardInterrupt):
            processor.fold("clicks", _batch(1, PARALLEL_FOLD_MIN_ROWS), BASE + 86_400 * S)
        assert processor._worker is None  # stopped, with its reply
        assert _fold_all(processor, store) == single
    finally:
        processor.close()


def test_threads_sharing_a_processor_get_their_own_results(tmp_path: Path) -> None:
    now = BASE + 86_400 * S
    batches = [_batch(1, PARALLEL_FOLD_MIN_ROWS + 700), _batch(50_001, PARALLEL_FOLD_MIN_ROWS * 2)]
    alone = StreamProcessor(SqliteOnlineStore(tmp_path / "alone.db"), [PLAN])
    expected = [alone.fold("clicks", batch, now) for batch in batches]
    store = SqliteOnlineStore(tmp_path / "shared.db")
    processor = StreamProcessor(store, [PLAN], worker_online=partial(SqliteOnlineStore, store.path))
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            jobs = [pool.submit(processor.fold, "clicks", batches[i % 2], now) for i in range(8)]
            results = [job.result() for job in jobs]
        assert processor._worker is not None
        for i, result in enumerate(results):
            assert result == expected[i % 2]
    finally:
        processor.close()

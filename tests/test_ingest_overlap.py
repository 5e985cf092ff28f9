"""Large batches are folded while they are appended; the fold is used only if it fits.

The fold works on the batch as the log is predicted to accept it. These tests make the log
accept something else (redelivered events, a prediction that is off) and check the online
values are those of the events the log really holds, each counted once.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from crmfs.ingestion.pipeline import OVERLAP_MIN_ROWS
from crmfs.runtimes.streaming.processor import StreamProcessor
from crmfs.storage.event_log import INGESTED_AT
from tests.orders_project import NOW, orders_store

CUSTOMERS = 7


def _records(first: int, count: int) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"o{i}",
            "ts": NOW - timedelta(minutes=i % 500),
            "customer_id": f"c{i % CUSTOMERS}",
            "qty": i % 5 + 1,
            "price": float(i),
        }
        for i in range(first, first + count)
    ]


def _expected_qty(ids: range) -> list[int]:
    totals = [0] * CUSTOMERS
    for i in ids:
        totals[i % CUSTOMERS] += i % 5 + 1
    return totals


def _online_qty(store: Any) -> list[int]:
    rows = [{"customer_id": f"c{c}"} for c in range(CUSTOMERS)]
    result = store.get_online_features(["orders_view:qty_30d"], rows).to_dict()
    values: list[int] = result["orders_view:qty_30d"]
    return values


def test_a_large_batch_with_redelivered_events_counts_each_event_once(tmp_path: Path) -> None:
    store = orders_store(tmp_path)
    size = OVERLAP_MIN_ROWS + 200
    store.ingest("orders", _records(0, size))
    # A third of the next batch was delivered before: the log accepts fewer rows than folded.
    report = store.ingest("orders", _records(size - size // 3, size))
    assert report.duplicates == size // 3
    assert _online_qty(store) == _expected_qty(range(0, 2 * size - size // 3))
    store.close()


def test_a_fold_on_a_mispredicted_batch_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = orders_store(tmp_path)
    size = OVERLAP_MIN_ROWS + 100
    store.ingest("orders", _records(0, size))
    real_predict = store.log.predict
    folded: list[int] = []
    real_fold = StreamProcessor.fold

    def off_by_one(events: pa.Table, now: int) -> pa.Table:
        # As if another process's append had moved the log's ingestion time on meanwhile.
        predicted = real_predict(events, now)
        times = pa.array([t + 1 for t in predicted[INGESTED_AT].to_pylist()], type=pa.int64())
        return predicted.set_column(
            predicted.schema.get_field_index(INGESTED_AT), INGESTED_AT, times
        )

    def counting_fold(
        self: StreamProcessor, source: str, events: pa.Table, now: int, staged: Any = None
    ) -> Any:
        folded.append(events.num_rows)
        return real_fold(self, source, events, now, staged)

    monkeypatch.setattr(store.log, "predict", off_by_one)
    monkeypatch.setattr(StreamProcessor, "fold", counting_fold)
    store.ingest("orders", _records(size, size))
    assert folded == [size, size]  # the prediction's fold, then the committed batch's
    assert _online_qty(store) == _expected_qty(range(2 * size))
    store.close()


def test_a_failed_append_drops_the_states_folded_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fold writes its states into an open online write while the append runs: when the
    append fails, none of them lands, and the store is free for the next batch."""
    store = orders_store(tmp_path)
    size = OVERLAP_MIN_ROWS + 100
    store.ingest("orders", _records(0, size))
    before = store.online.watermark()
    real_append = store.log.append

    def failing_append(*args: Any, **kwargs: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr(store.log, "append", failing_append)
    with pytest.raises(OSError, match="disk full"):
        store.ingest("orders", _records(size, size))
    assert store.online.watermark() == before
    assert _online_qty(store) == _expected_qty(range(size))
    monkeypatch.setattr(store.log, "append", real_append)
    store.ingest("orders", _records(size, size))
    assert _online_qty(store) == _expected_qty(range(2 * size))
    store.close()


def test_threads_ingesting_into_one_store_count_each_event_once(tmp_path: Path) -> None:
    """Each thread's large batches are folded and written ahead while another thread's are
    appended and applied: every event is counted once, whichever batch commits first."""
    store = orders_store(tmp_path)
    size = 4_500  # folded on two cores, with the states written ahead
    errors: list[BaseException] = []

    def ingest(first: int) -> None:
        try:
            for start in range(first, first + 3 * size, size):
                store.ingest("orders", _records(start, size))
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=ingest, args=(n * 3 * size,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    assert _online_qty(store) == _expected_qty(range(6 * size))
    store.close()

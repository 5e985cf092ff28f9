"""A backfill encodes online states column-wise: they must decode to what streaming built."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgpack
import pyarrow as pa
import pytest

from crmfs import Aggregation, Entity, EventSource, FeatureView, Latest
from crmfs.definitions import Function
from crmfs.runtimes.batch.msgpack_columns import encode
from crmfs.runtimes.streaming.state import compacted, decode, expanded, merge_states
from crmfs.store import FeatureStore
from crmfs.timestamps import to_micros
from crmfs.transform.plan import ViewPlan, plan_view

START = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "column",
    [
        pa.array([1, None, -5, 2**62, -(2**63)], pa.int64()),
        pa.array([7, 8, 9, 10], pa.int32()).slice(1, 2),
        pa.array([2**64 - 1, 0], pa.uint64()),
        pa.array([1.5, None, -0.0, float("inf"), 1e-300]),
        pa.array([True, None, False]),
        pa.array(["a", None, "", "x\x00y", "é" * 300]),
        pa.array([b"\x00\xff", None, b""], pa.binary()),
        pa.array([[1, None], None, [], [3]]),
        pa.array([["a"], ["b", "c"], ["d", None, "e"]]).slice(1),
        pa.chunked_array([pa.array(["a"]), pa.array(["b", None])]),
        pa.array(["a", "b", "a", None]).dictionary_encode(),
        pa.array([None, None]),
        pa.array([], pa.string()),
    ],
)
def test_each_element_decodes_to_its_value(column: pa.Array | pa.ChunkedArray) -> None:
    documents = encode(column).to_pylist()
    assert [msgpack.unpackb(d, raw=False) for d in documents] == column.to_pylist()


def test_lengths_and_small_ints_take_the_packers_shortest_forms() -> None:
    ints = [0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1]
    strings = ["x" * n for n in (0, 31, 32, 255, 256, 65535, 65536)]
    lists = [list(range(n)) for n in (0, 15, 16, 65535, 65536)]
    for values in (ints, strings, lists):
        expected = [msgpack.packb(v, use_bin_type=True) for v in values]
        assert encode(pa.array(values)).to_pylist() == expected


def test_structs_decode_to_arrays_of_their_fields_and_nil_where_null() -> None:
    entries = pa.array(
        [{"t": 1, "s": 2, "v": "a"}, None, {"t": 3, "s": None, "v": None}],
        pa.struct([("t", pa.int64()), ("s", pa.int64()), ("v", pa.string())]),
    )
    assert [msgpack.unpackb(d) for d in encode(entries).to_pylist()] == [
        [1, 2, "a"],
        None,
        [3, None, None],
    ]
    lists = pa.array([[{"t": 1, "v": 2.5}], [], None])
    assert [msgpack.unpackb(d) for d in encode(lists).to_pylist()] == [[[1, 2.5]], [], None]


def test_nan_stays_nan_and_unknown_types_are_refused() -> None:
    (document,) = encode(pa.array([float("nan")])).to_pylist()
    value = msgpack.unpackb(document)
    assert value != value
    with pytest.raises(TypeError, match="date32"):
        encode(pa.array([1], pa.date32()))


account = Entity("account", join_key="account_id", dtype="int")
orders = EventSource(
    "orders",
    schema={
        "order_id": "string",
        "ts": "timestamp",
        "account_id": "int",
        "qty": "int",
        "price": "float",
        "gift": "bool",
        "shipped": "timestamp",
        "sku": "string",
    },
    event_id="order_id",
    event_time="ts",
)
VIEW = FeatureView(
    "orders_by_account",
    account,
    orders,
    features=[
        Aggregation("orders", "count", ["2h", "2d"]),
        Aggregation("units", "sum", ["2d"], field="qty"),
        Aggregation("revenue", "sum", ["2d"], field="price"),
        Aggregation("avg_qty", "mean", ["2d"], field="qty"),
        Aggregation("avg_price", "mean", ["2d"], field="price"),
        Aggregation("first_ship", "min", ["2d"], field="shipped"),
        Aggregation("top_sku", "max", ["2d"], field="sku"),
        Aggregation("skus", "count_distinct", ["2d"], field="sku"),
        Aggregation("qtys", "count_distinct", ["2h"], field="qty"),
        Aggregation("last_ship", "last", ["2d"], field="shipped"),
        Aggregation("recent_skus", "last_n", ["2d"], field="sku", n=3),
        Latest("gift_now", "gift"),
        Latest("shipped_now", "shipped"),
        Latest("price_now", "price"),
    ],
    ttl="3d",
)


def _order(i: int) -> dict[str, Any]:
    return {
        "order_id": f"o{i}",
        "ts": START + timedelta(minutes=37 * i),
        "account_id": i % 4,
        "qty": None if i % 5 == 0 else i % 3,
        "price": None if i % 7 == 0 else i * 0.25,
        "gift": None if i % 6 == 0 else i % 2 == 0,
        "shipped": None if i % 4 == 1 else START + timedelta(hours=i),
        "sku": None if i % 9 == 0 else f"s{i % 5}\x00" if i % 8 == 0 else f"s{i % 5}",
    }


def _states(store: FeatureStore, plan: ViewPlan, keys: list[int]) -> list[Any]:
    """The decoded online states, with distinct-value lists (unordered sets) sorted."""
    out = []
    for blob in store.online.read(plan.table, keys):
        assert blob is not None
        tiles, latest = expanded(decode(blob))
        for g, group in enumerate(plan.hop_groups):
            for k, partials in tiles[g].items():
                tiles[g][k] = [
                    sorted(p) if w.feature.function is Function.COUNT_DISTINCT else p
                    for w, p in zip(group.features, partials, strict=True)
                ]
        out.append([tiles, latest])
    return out


def _part_of_view(name: str, kind: type[Aggregation] | type[Latest]) -> FeatureView:
    """A view of ``VIEW``'s features of one kind only."""
    features = [f for f in VIEW.features if isinstance(f, kind)]
    return FeatureView(name, account, orders, features=features, ttl="3d")


WINDOWS_ONLY = _part_of_view("orders_windows", Aggregation)
LATEST_ONLY = _part_of_view("orders_latest", Latest)


@pytest.mark.parametrize("view", [VIEW, WINDOWS_ONLY, LATEST_ONLY], ids=lambda v: v.name)
def test_backfilled_states_equal_the_streamed_ones(tmp_path: Path, view: FeatureView) -> None:
    clock = [to_micros(START + timedelta(days=3))]
    store = FeatureStore(tmp_path, definitions=[view], clock=lambda: clock[0])
    store.apply()
    store.ingest("orders", [_order(i) for i in range(150)])
    # A late event, and a key whose only events are older than every tile (kept, tiles empty).
    store.ingest("orders", [_order(3) | {"order_id": "late", "ts": START + timedelta(hours=1)}])
    store.ingest("orders", [_order(0) | {"order_id": "old", "account_id": 99, "ts": START}])
    plan = store.plans()[view.name]
    keys = [0, 1, 2, 3, 99]
    streamed = _states(store, plan, keys)
    reports = store.materialize()
    assert reports[0].entities == len(keys)
    assert _states(store, plan, keys) == streamed
    store.close()


def _format_1(blob: bytes) -> bytes:
    """``blob`` as states were written before each tile was encoded on its own (inline)."""
    tiles, latest = expanded(decode(blob))
    return msgpack.packb([tiles, latest], use_bin_type=True)


def test_states_of_format_1_read_and_fold_as_the_current_ones(tmp_path: Path) -> None:
    """A store written before tiles were encoded one by one: reads give the same values, and
    the fold takes such states, writing the tiles it reaches in the current layout (the
    others stay as they were: a state may mix both)."""
    clock = [to_micros(START + timedelta(days=3))]
    stores = {}
    for name in ("current", "format_1"):
        stores[name] = FeatureStore(tmp_path / name, definitions=[VIEW], clock=lambda: clock[0])
        stores[name].apply()
        stores[name].ingest("orders", [_order(i) for i in range(150)])
    plan = stores["current"].plans()[VIEW.name]
    keys = [0, 1, 2, 3]
    old = stores["format_1"].online
    blobs = old.read(plan.table, keys)
    old.write({plan.table: {k: _format_1(b or b"") for k, b in zip(keys, blobs, strict=True)}})
    refs = [f"{VIEW.name}:{name}" for name in plan.output_names]
    rows = [{"account_id": k} for k in keys]
    values = {n: s.get_online_features(refs, rows).values for n, s in stores.items()}
    assert values["format_1"] == values["current"]
    clock[0] = to_micros(START + timedelta(days=4))
    for store in stores.values():
        report = store.ingest(
            "orders", [_order(i) | {"order_id": f"n{i}"} for i in range(110, 150)]
        )
        assert report.accepted == 40
    values = {n: s.get_online_features(refs, rows).values for n, s in stores.items()}
    assert values["format_1"] == values["current"]
    for blob in old.read(plan.table, keys):
        assert blob is not None
        tiles = [t for group in decode(blob)[0] for t in group.values()]
        assert any(type(t) is bytes for t in tiles)
    for store in stores.values():
        store.close()


def test_merged_states_combine_each_tile_and_keep_the_latest_values() -> None:
    """``merge_states`` (for identity merges) works on encoded tiles: tiles of one index are
    merged by the aggregators, the others kept, and the newer latest values win."""
    view = FeatureView(
        "recent_orders",
        account,
        orders,
        features=[
            Aggregation("orders", "count", ["2d"]),
            Aggregation("recent", "last_n", ["2d"], field="sku", n=2),
            Latest("sku_now", "sku"),
        ],
    )
    plan = plan_view(view)
    slots = {w.feature.name: w.slot for w in plan.hop_groups[0].features}

    def tile(count: int, entries: list[list[Any]]) -> list[Any]:
        partials: list[Any] = [None, None]
        partials[slots["orders_2d"]], partials[slots["recent_2d"]] = count, entries
        return partials

    a = compacted([[{7: tile(2, [[10, 1, "x"], [9, 0, "w"]])}], [[10, 1, "x"]]])
    b = compacted([[{7: tile(1, [[12, 2, "y"]]), 8: tile(1, [[20, 3, "z"]])}], [[20, 3, "z"]]])
    merged = merge_states(plan, a, b)
    assert all(type(t) is bytes for t in merged[0][0].values())
    as_lists = msgpack.unpackb(msgpack.packb(expanded(merged)), strict_map_key=False)
    assert as_lists == [
        [{7: tile(3, [[12, 2, "y"], [10, 1, "x"]]), 8: tile(1, [[20, 3, "z"]])}],
        [[20, 3, "z"]],
    ]

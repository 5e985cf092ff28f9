"""The project the stream-worker tests run: a plain source, identity sources and a roll-up.

- ``orders`` (no identifiers): partitioned by ``customer_id``; one record in 97 has a bad
  quantity (quarantined). A second view sums them per store: two workers fold the same
  stores at once, so their writes conflict and are folded again at their turn.
- ``contacts`` (email, phone, CRM id; the account a person works at): the identity
  partition. Contacts that share a phone merge people known by different emails; a
  household phone on too many records stops linking (a split); later contacts move people
  to other accounts.
- ``touches`` (email): counted per golden id and rolled up to the person's account; some
  have no email (quarantined: no strong identifier).

Events are dated before ``NOW``, the fixed clock of every process, so runs are comparable
value for value (ingestion times included).
"""

from __future__ import annotations

import json
import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crmfs import Aggregation, Entity, EventSource, FeatureView, Latest, Relation
from crmfs.definitions import GOLDEN_ID
from crmfs.store import FeatureStore
from crmfs.timestamps import to_micros

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
NOW_US = to_micros(NOW)
CUSTOMERS = [f"c{n}" for n in range(60)]
STORES = [f"s{n}" for n in range(5)]
ACCOUNTS = ["acme", "globex", "initech", "umbrella"]

customer = Entity("customer", join_key="customer_id")
person = Entity("person", join_key="golden_id", identity=True)
account = Entity("account", join_key="account_id")
orders = EventSource(
    "orders",
    schema={
        "event_id": "string",
        "ts": "timestamp",
        "customer_id": "string",
        "store_id": "string",
        "qty": "int",
        "price": "float",
    },
    event_id="event_id",
    event_time="ts",
    required=("customer_id",),
)
store = Entity("store", join_key="store_id")
contacts = EventSource(
    "contacts",
    schema={
        "event_id": "string",
        "ts": "timestamp",
        "email": "string",
        "phone": "string",
        "crm_id": "string",
        "account_id": "string",
    },
    event_id="event_id",
    event_time="ts",
    identifiers={"email": "email", "phone": "phone", "crm_id": "crm_contact_id"},
)
touches = EventSource(
    "touches",
    schema={"event_id": "string", "ts": "timestamp", "email": "string", "amount": "float"},
    event_id="event_id",
    event_time="ts",
    identifiers={"email": "email"},
)
works_at = Relation(
    "works_at", child=person, parent=account, source=contacts, parent_field="account_id"
)
orders_view = FeatureView(
    "orders_view",
    customer,
    orders,
    [
        Aggregation("qty", "sum", ["30d"], field="qty"),
        Aggregation("orders", "count", ["7d", "90d"]),
        Latest("price", "price"),
    ],
)
store_sales = FeatureView(
    "store_sales",
    store,
    orders,
    [
        Aggregation("qty", "sum", ["30d"], field="qty"),
        Aggregation("orders", "count", ["1d", "30d"]),
        Latest("last_price", "price"),
    ],
)
engagement = FeatureView(
    "engagement",
    person,
    touches,
    [
        Aggregation("touches", "count", ["1d", "30d"]),
        Aggregation("spend", "sum", ["30d"], field="amount"),
        Latest("last_amount", "amount"),
    ],
)
account_engagement = FeatureView(
    "account_engagement",
    account,
    touches,
    [
        Aggregation("touches", "count", ["30d"]),
        Aggregation("spend", "sum", ["30d"], field="amount"),
    ],
    via=works_at,
)
VIEWS = {view.name: view for view in (orders_view, store_sales, engagement, account_engagement)}
DEFINITIONS = (
    "from tests.workers.crm_project import orders_view, store_sales, engagement,"
    " account_engagement\n"
)

Batch = tuple[str, list[dict[str, Any]]]


def make_project(folder: Path, prefix: str) -> None:
    """A project folder whose online store (and bus) live under ``prefix`` on the shared
    Redis; applied."""
    folder.mkdir(parents=True)
    (folder / "crmfs.yaml").write_text(
        f"project: workers\nonline_store: {{type: redis, key_prefix: {prefix}}}\n"
    )
    (folder / "definitions.py").write_text(DEFINITIONS)
    store = FeatureStore(folder, clock=lambda: NOW_US)
    store.apply()
    store.close()


def batches(seed: int = 11, orders_count: int = 1_500, people: int = 40) -> list[Batch]:
    """Publish calls, in order: sources interleaved, identities merging as contacts arrive,
    accounts changing, duplicates sent again."""
    rng = random.Random(seed)

    def when() -> str:
        return (NOW - timedelta(minutes=rng.randrange(1, 40 * 24 * 60))).isoformat()

    emails = {p: [f"p{p}.a@x.org", f"p{p}.b@x.org"] for p in range(people)}
    phones = {
        p: f"+1415555{1000 + p // 2 if p % 5 == 0 else 1000 + p + 100}" for p in range(people)
    }
    order_events = [
        {
            "event_id": f"o{n}",
            "ts": when(),
            "customer_id": rng.choice(CUSTOMERS),
            "store_id": rng.choice(STORES),
            "qty": "bad" if n % 97 == 0 else rng.randrange(1, 9),
            "price": round(rng.uniform(1, 100), 2),
        }
        for n in range(orders_count)
    ]
    touch_events = [
        {
            "event_id": f"t{n}",
            "ts": when(),
            "email": None if n % 53 == 0 else rng.choice(emails[rng.randrange(people)]),
            "amount": round(rng.uniform(0, 20), 2),
        }
        for n in range(600)
    ]
    first_contacts = [
        {
            "event_id": f"k{p}",
            "ts": when(),
            "email": emails[p][0],
            "phone": None,
            "crm_id": f"crm{p}",
            "account_id": ACCOUNTS[p % len(ACCOUNTS)],
        }
        for p in range(people)
    ]
    # Second emails with the person's phone (joins), phones shared by pairs (merges), moves.
    later_contacts = (
        [
            {
                "event_id": f"m{p}",
                "ts": when(),
                "email": emails[p][1],
                "phone": phones[p],
                "crm_id": None,
                "account_id": ACCOUNTS[(p + 1 + p % 3) % len(ACCOUNTS)],
            }
            for p in range(people)
        ]
        + [
            {
                "event_id": f"j{p}",
                "ts": when(),
                "email": emails[p][0],
                "phone": phones[p],
                "crm_id": f"crm{p}",
                "account_id": ACCOUNTS[(p + 2) % len(ACCOUNTS)],
            }
            for p in range(0, people, 3)
        ]
        + [  # a household phone: shared by too many records, it stops linking (a split)
            {
                "event_id": f"h{p}",
                "ts": when(),
                "email": emails[p][0],
                "phone": "+14155559999",
                "crm_id": None,
                "account_id": ACCOUNTS[p % len(ACCOUNTS)],
            }
            for p in range(1, 25, 2)
        ]
    )
    rng.shuffle(later_contacts)
    thirds = [order_events[i::3] for i in range(3)]
    return [
        ("orders", thirds[0]),
        ("contacts", first_contacts),
        ("touches", touch_events[:250]),
        ("orders", thirds[1]),
        ("contacts", later_contacts[: len(later_contacts) // 2]),
        ("touches", touch_events[250:450]),
        ("orders", thirds[2] + order_events[:40]),  # ... with 40 sent again
        ("contacts", later_contacts[len(later_contacts) // 2 :]),
        ("touches", touch_events[450:] + touch_events[:20]),  # ... with 20 sent again
    ]


def snapshot(folder: Path) -> dict[str, Any]:
    """Everything the workers leave: the event log (but seqs, which follow the order
    partitions happened to be appended in), the quarantine, every table of the identity
    graph, the marks, and every online value and status."""
    store = FeatureStore(folder, clock=lambda: NOW_US)
    try:
        log = {}
        for source in sorted(store.log.sources()):
            table = store.log.read(source)
            assert table is not None
            rows = table.drop_columns(["_seq"]).to_pylist()
            log[source] = sorted(rows, key=lambda row: row["event_id"])
        quarantine = sorted(
            (q.source, q.field, q.reason, json.dumps(q.record, sort_keys=True), q.quarantined_at)
            for q in store.quarantine(limit=100_000)
        )
        golden_ids = sorted({g for row in log.get("touches", []) for g in [row[GOLDEN_ID]]})
        golden_ids = sorted(set(golden_ids) | set(store.identity_graph.clusters()))
        keys = {
            "orders_view": [{"customer_id": c} for c in CUSTOMERS],
            "store_sales": [{"store_id": s} for s in STORES],
            "engagement": [{"golden_id": g} for g in golden_ids],
            "account_engagement": [{"account_id": a} for a in ACCOUNTS],
        }
        online = {}
        for name, rows in keys.items():
            refs = [f"{name}:{feature}" for feature in VIEWS[name].feature_names]
            response = store.get_online_features(refs, rows, now=NOW)
            online[name] = (response.to_dict(), response.statuses)
        watermark = store.online.watermark()
        marks = (watermark.seq, watermark.ingested_at, store.online.identity_mark())
        return {
            "log": log,
            "quarantine": quarantine,
            "graph": graph_tables(folder / "data" / "identity.db"),
            "online": online,
            "marks": marks,
        }
    finally:
        store.close()


def graph_tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of an identity graph's database, rows sorted. The golden ids a split
    created are sorted too: the graph lists them in set order, which varies from process to
    process (``PYTHONHASHSEED``), with or without the bus."""
    db = sqlite3.connect(path)
    try:
        names = [
            row[0]
            for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        tables = {
            name: sorted(db.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr)
            for name in names
        }
        tables["changes"] = [
            (*row[:6], json.dumps(sorted(json.loads(row[6]))), *row[7:])
            for row in tables["changes"]
        ]
        return tables
    finally:
        db.close()

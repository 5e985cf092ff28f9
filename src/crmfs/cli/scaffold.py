"""``crmfs init``: a project that works out of the box."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crmfs.errors import ConfigError

PROJECT_YAML = """\
# crmfs project file. Every backend is chosen by a typed tag; the embedded defaults need no servers.
project: {name}
definitions: definitions.py
data_dir: data
online_store: {{type: sqlite}}
registry: {{type: sqlite}}
batch_engine: {{type: duckdb}}
# Production backends (docs/configuration.md); passwords only through environment variables:
# online_store: {{type: redis, url: "redis://127.0.0.1:6379/0", password_env: CRMFS_REDIS_PASSWORD}}
# registry: {{type: postgres, dsn: "postgresql://crmfs@127.0.0.1:5432/crmfs", password_env: CRMFS_PG_PASSWORD}}
"""

DEFINITIONS = '''\
"""Feature definitions of this project: edit, then run `crmfs plan` and `crmfs apply`."""

from crmfs import Aggregation, Entity, EventSource, FeatureService, FeatureView, Latest, col

customer = Entity("customer", join_key="customer_id", description="A person who buys from us")

web_events = EventSource(
    "web_events",
    schema={
        "event_id": "string",
        "event_time": "timestamp",
        "customer_id": "string",
        "event_type": "string",
        "item_id": "string",
        "amount": "float",
    },
    event_id="event_id",
    event_time="event_time",
    timezone="UTC",  # naive timestamps in this source are UTC
    description="Page views, product views and purchases from the web shop",
)

activity = FeatureView(
    "customer_activity",
    entity=customer,
    source=web_events,
    features=[
        Aggregation("events", "count", windows=["1h", "7d", "30d"]),
        Aggregation("recent_items", "last_n", field="item_id", n=5, windows=["30d"]),
        Aggregation("distinct_items", "count_distinct", field="item_id", windows=["7d"]),
        Latest("last_event_type", field="event_type"),
    ],
    ttl="90d",
    freshness_sla="1h",
    owner="recsys@example.com",
    description="What a customer did on the web shop",
)

purchases = FeatureView(
    "customer_purchases",
    entity=customer,
    source=web_events,
    features=[
        Aggregation("spend", "sum", field="amount", windows=["30d"]),
        Aggregation("order_value", "mean", field="amount", windows=["30d"]),
    ],
    filter=col("event_type") == "purchase",
    freshness_sla="1h",
    owner="recsys@example.com",
)

ranker = FeatureService("ranker", features=[activity, purchases], description="Features of the ranking model")
'''

README = """\
# {name}

```
crmfs apply
crmfs ingest web_events data/sample_web_events.csv
crmfs get customer_activity:events_7d customer_activity:recent_items_30d --entity customer_id=c1
```
"""


def scaffold(folder: Path) -> list[Path]:
    """Write a new project into ``folder`` (which must not hold a project yet)."""
    if (folder / "crmfs.yaml").exists():
        raise ConfigError(f"{folder} already holds a crmfs project")
    folder.mkdir(parents=True, exist_ok=True)
    name = folder.resolve().name.replace("-", "_") or "crmfs_project"
    written = {
        folder / "crmfs.yaml": PROJECT_YAML.format(name=name),
        folder / "definitions.py": DEFINITIONS,
        folder / "README.md": README.format(name=name),
    }
    for path, text in written.items():
        path.write_text(text)
    sample = folder / "data" / "sample_web_events.csv"
    sample.parent.mkdir(exist_ok=True)
    _write_sample(sample)
    return [*written, sample]


def _write_sample(path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    kinds = ["page_view", "product_view", "purchase"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["event_id", "event_time", "customer_id", "event_type", "item_id", "amount"]
        )
        for i in range(60):
            kind = kinds[i % 3]
            writer.writerow(
                [
                    f"e{i}",
                    (now - timedelta(hours=i * 3)).isoformat(),
                    f"c{i % 4 + 1}",
                    kind,
                    f"sku-{(i * 7) % 11}",
                    f"{10 + i % 5 * 2.5:.2f}" if kind == "purchase" else "",
                ]
            )

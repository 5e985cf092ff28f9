"""The demo's serving step: the HTTP feature server on loopback, with keys, masking,
consent and its latency (needs ``crmfs[server]``)."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from crmfs.store import FeatureStore

SINGLE_REQUESTS = 1_000
BATCH_REQUESTS = 100


def show_serving(
    store: FeatureStore, customers: list[str], now: Any, console: Console
) -> tuple[list[tuple[str, str]], bool]:
    """Serve the demo project over HTTP and show what a model gets; the figures, and
    whether a consent revocation was honoured by the next read."""
    try:
        from crmfs.api.app import create_app
        from crmfs.api.runner import serving_in_thread
    except ImportError:
        console.print("skipped: install crmfs[server] to serve over HTTP")
        return [], True
    from crmfs.api.settings import ServerSettings
    from crmfs.serving.access import KEYS_FILE, ApiKeys

    settings = ServerSettings.of(store.config.server)
    keys = ApiKeys(store.config.data_dir / KEYS_FILE, settings.roles)
    ranker = keys.add("ranker", ["reader"])  # public and internal features only
    loader = keys.add("consent-loader", ["ingester"])
    app = create_app(store, settings)
    with serving_in_thread(app) as port:
        client = _Client(port)
        rows = [{"customer_id": c} for c in customers[:3]]
        status, _ = client.post(
            "/v1/features", {"feature_service": "recommender", "entities": rows}, None
        )
        console.print(f"without an API key: HTTP {status}")
        sample = customers[:3]
        grants = [_consent(c, True, now, n) for n, c in enumerate(sample)]
        status, report = client.post("/v1/sources/consents/events", grants, loader)
        console.print(f"consents ingested over HTTP: {report['accepted']} accepted (HTTP {status})")
        body = {"feature_service": "personalized", "entities": [{"customer_id": c} for c in sample]}
        _, answer = client.post("/v1/features", body, ranker)
        _print(console, answer, "as the 'ranker' key (role reader) sees it")
        revoke = [_consent(sample[0], False, now, 99)]
        t = time.perf_counter()
        client.post("/v1/sources/consents/events", revoke, loader)
        _, after = client.post("/v1/features", {**body, "entities": body["entities"][:1]}, ranker)
        revoked_ms = (time.perf_counter() - t) * 1e3
        statuses = {c["statuses"][0] for c in after["features"].values()}
        console.print(
            f"{sample[0]} revokes personalization: next read {sorted(statuses)}"
            f" ({revoked_ms:.1f} ms from the revocation's POST to the read's answer)"
        )
        single = _latencies(client, customers, ranker, 1)
        batch = _latencies(client, customers, ranker, 100, BATCH_REQUESTS)
        hit_ratio = _hit_ratio(client)
    figures = [
        (
            "HTTP read, 1 entity, p50 / p99 (ms, in-process server, no workers)",
            f"{single[len(single) // 2]:.2f} / {single[int(len(single) * 0.99)]:.2f}",
        ),
        ("HTTP read, 100 entities, p99 (ms)", f"{batch[int(len(batch) * 0.99)]:.2f}"),
        ("statuses of the next read after a consent revocation", ", ".join(sorted(statuses))),
    ]
    if hit_ratio is not None:
        figures.append(("server cache hit rate", f"{hit_ratio:.0%}"))
    # Every value withheld (or masked for this key anyway): none of the person's is shown.
    honoured = "consent_withheld" in statuses and statuses <= {"consent_withheld", "masked"}
    return figures, honoured


class _Client:
    """One keep-alive connection."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, path: str, body: Any, key: str | None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        self.connection.request("POST", path, json.dumps(body, default=str), headers)
        response = self.connection.getresponse()
        return response.status, json.loads(response.read())

    def get(self, path: str) -> str:
        self.connection.request("GET", path)
        return self.connection.getresponse().read().decode()


def _consent(customer: str, given: bool, now: Any, n: int) -> dict[str, Any]:
    return {
        "event_id": f"consent-{customer}-{n}",
        "given_at": now.isoformat(),
        "customer_id": customer,
        "personalization": given,
        "marketing": False,
    }


def _latencies(
    client: _Client, customers: list[str], key: str, size: int, calls: int = SINGLE_REQUESTS
) -> list[float]:
    times = []
    for n in range(calls):
        start = (n * size) % max(1, len(customers) - size)
        rows = [{"customer_id": c} for c in customers[start : start + size]]
        t = time.perf_counter()
        status, _ = client.post(
            "/v1/features", {"feature_service": "recommender", "entities": rows}, key
        )
        times.append((time.perf_counter() - t) * 1e3)
        if status != 200:
            raise RuntimeError(f"the demo's server answered HTTP {status}")
    return sorted(times)


def _hit_ratio(client: _Client) -> float | None:
    """Hits over lookups of the server's read cache; None when it is off (over SQLite, by
    default: the store's own blob cache serves there)."""
    counts = {"crmfs_cache_hits_total": 0.0, "crmfs_cache_misses_total": 0.0}
    for line in client.get("/metrics").splitlines():
        name, _, value = line.partition(" ")
        if name in counts:
            counts[name] = float(value)
    lookups = sum(counts.values())
    return counts["crmfs_cache_hits_total"] / lookups if lookups else None


def _print(console: Console, answer: dict[str, Any], title: str) -> None:
    table = Table("customer", "feature", "value", "status", title=title)
    features = list(answer["features"].items())
    for i, row in enumerate(answer["entities"]):
        for ref, column in features[:3] + features[-2:]:
            value = str(column["values"][i])[:30]
            table.add_row(row["customer_id"], ref, value, column["statuses"][i])
    console.print(table)

"""Feast repo for the HTTP serving bench (``bench/http_bench.py``), prepared INSIDE the Feast venv.

Usage::

    bench/.feast-venv/bin/python bench/feast_http_bench.py SCENARIO_DIR REPO_DIR

makes REPO_DIR afresh: a ``feature_store.yaml`` (Redis online store on database
``feast_bench.REDIS_DB``, flushed first; the file registry of the Feast bench's Redis run), the
bench's objects applied (``feast_bench.apply_objects``) and the scenario's 1M events
materialized, so ``feast -c REPO_DIR serve`` serves what ``feast_bench.run_redis`` reads in
process. It prints one JSON object on stdout: the features to request and how long the
materialization took; Feast's own output goes to stderr.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path

import pandas as pd
import redis
from feast import FeatureStore

from feast_bench import (
    ANCHOR,
    FEATURES,
    HISTORY_DAYS,
    PROJECT,
    REDIS_DB,
    _stdout_for_json,
    apply_objects,
)

log = logging.getLogger("feast_http_bench")

FEATURE_STORE_YAML = """\
project: {project}
provider: local
registry:
  path: {registry}
  cache_ttl_seconds: 600
online_store:
  type: redis
  connection_string: "127.0.0.1:6379,db={db}"
offline_store:
  type: duckdb
entity_key_serialization_version: 3
"""


def prepare(scenario_dir: Path, repo_dir: Path) -> dict[str, object]:
    if repo_dir.exists():
        shutil.rmtree(repo_dir)
    repo_dir.mkdir(parents=True)
    (repo_dir / "feature_store.yaml").write_text(
        FEATURE_STORE_YAML.format(
            project=PROJECT, registry=json.dumps(str(repo_dir / "registry.db")), db=REDIS_DB
        )
    )
    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()
    store = FeatureStore(repo_path=str(repo_dir))
    apply_objects(store, scenario_dir / "events.parquet")
    start = time.perf_counter()
    store.materialize(start_date=ANCHOR - timedelta(days=HISTORY_DAYS + 1), end_date=ANCHOR)
    seconds = time.perf_counter() - start
    log.info("materialized into Redis db %d in %.1f s", REDIS_DB, seconds)

    # A served value, checked here so a repo that reads nothing fails before any timing.
    events = pd.read_parquet(scenario_dir / "events.parquet", columns=["customer_id"])
    customer = str(events["customer_id"].iloc[0])
    got = store.get_online_features(FEATURES, [{"customer_id": customer}]).to_dict()
    if all(got[ref.split(":")[1]][0] is None for ref in FEATURES):
        raise RuntimeError(f"Feast serves no value for customer {customer!r} after materialize")
    return {"features": FEATURES, "materialize_s": round(seconds, 3)}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: feast_http_bench.py SCENARIO_DIR REPO_DIR", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    warnings.simplefilter("ignore")  # Feast's preview and deprecation warnings, on every call
    json_out = _stdout_for_json()
    result = prepare(Path(args[0]).resolve(), Path(args[1]).resolve())
    json_out.write(json.dumps(result) + "\n")
    json_out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

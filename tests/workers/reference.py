"""What the project holds after the test batches went through the direct path
(``FeatureStore.ingest``, no bus, nothing killed): the reference every worker run is compared
with. Identity sources are ingested message by message, as the identity partition's worker
commits them; other sources a publish call at a time (batching does not change their result).
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any

from crmfs.ingestion.bus_routes import routes
from crmfs.store import FeatureStore
from tests.storage.redis_servers import delete_prefix, unique_prefix
from tests.workers.crm_project import NOW_US, batches, make_project, snapshot

MESSAGE_ROWS = 40


@functools.cache
def direct_snapshot(seed: int = 11) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="crmfs-direct-"))
    prefix = unique_prefix("direct-reference")
    try:
        make_project(folder / "project", prefix)
        store = FeatureStore(folder / "project", clock=lambda: NOW_US)
        by_source = routes(store.catalog)
        for source, records in batches(seed):
            if by_source[source].key is None:  # the identity partition: message by message
                for start in range(0, len(records), MESSAGE_ROWS):
                    store.ingest(source, records[start : start + MESSAGE_ROWS])
            else:
                store.ingest(source, records)
        store.close()
        return snapshot(folder / "project")
    finally:
        delete_prefix(prefix)
        shutil.rmtree(folder, ignore_errors=True)

"""crmfs.yaml's event_bus section: which bus publishers get, and the stream settings
workers and `crmfs bus` take from it (command-line options over it)."""

from __future__ import annotations

from pathlib import Path

from crmfs.cli.worker_cmd import bus_prefix, open_event_bus, stream_settings
from crmfs.ingestion.bus import EmbeddedBus, StreamBus
from crmfs.store import FeatureStore
from tests.workers.crm_project import NOW_US


def _configure(project: Path, event_bus: str) -> None:
    text = (project / "crmfs.yaml").read_text()
    (project / "crmfs.yaml").write_text(text + f"event_bus: {event_bus}\n")


def test_the_default_bus_is_the_direct_path(project: Path) -> None:
    store = FeatureStore(project, clock=lambda: NOW_US)
    bus, close = open_event_bus(store)
    assert isinstance(bus, EmbeddedBus)
    close()
    store.close()


def test_a_redis_streams_bus_takes_its_settings_from_crmfs_yaml(project: Path, prefix: str) -> None:
    _configure(
        project,
        f"{{type: redis_streams, key_prefix: {prefix}, partitions: 4, max_backlog: 50,"
        " lease_s: 3, max_deliveries: 2}",
    )
    store = FeatureStore(project, clock=lambda: NOW_US)
    settings = stream_settings(store)
    assert (settings.partitions, settings.max_backlog, settings.lease_s) == (4, 50, 3)
    assert settings.max_deliveries == 2
    assert stream_settings(store, partitions=6, lease_s=None).partitions == 6  # a CLI option
    assert bus_prefix(store) == prefix
    bus, close = open_event_bus(store)
    assert isinstance(bus, StreamBus)
    published = bus.publish("orders", [])
    assert published.messages == 0
    close()
    store.close()

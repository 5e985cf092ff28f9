"""``crmfs worker`` runs until SIGTERM, prints progress, and leaves the bus cleanly; ``crmfs
bus status`` and ``crmfs bus dead-letters`` show the bus."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from crmfs.storage.redis_streams import RedisStreamBus
from tests.storage.redis_servers import SHARED_URL
from tests.workers.crm_project import batches
from tests.workers.harness import REPO, publish

CRMFS = str(Path(sys.executable).parent / "crmfs")
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def test_crmfs_worker_processes_the_bus_and_stops_cleanly_on_sigterm(
    project: Path, prefix: str, transport: RedisStreamBus, tmp_path: Path
) -> None:
    errors = (tmp_path / "worker.err").open("w+")
    worker = subprocess.Popen(
        [
            CRMFS,
            "worker",
            "--repo",
            str(project),
            "--partitions",
            "4",
            "--lease",
            "1",
            "--report-every",
            "0.2",
            "--consumer",
            "cli1",
            "--block-ms",
            "100",
        ],
        stderr=errors,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 30
        while "worker cli1: partitions" not in Path(errors.name).read_text():
            assert worker.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.05)
        publish(project, batches()[:3])
        while any(transport.backlog().values()):
            assert time.monotonic() < deadline, Path(errors.name).read_text()
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
        errors.close()
    output = Path(errors.name).read_text()
    assert "worker cli1: partitions identity,0,1,2,3 | records" in output
    assert "worker cli1 stopped:" in output
    assert "dead letters 0" in output
    client = redis.Redis.from_url(SHARED_URL)
    try:  # its leases let go and itself gone from the workers: others take over at once
        assert list(client.scan_iter(match=f"{{{prefix}}}:bus:lease:*")) == []
        assert client.zcard(transport.keys.workers) == 0
    finally:
        client.close()

    status = subprocess.run(
        [CRMFS, "bus", "status", "--repo", str(project), "--partitions", "4"],
        capture_output=True,
        text=True,
        env=ENV,
        check=True,
    )
    assert "identity" in status.stdout
    assert "dead letters: 0" in status.stdout


def test_a_worker_and_a_bus_of_another_partition_count_refuse_to_run(
    project: Path, prefix: str, transport: RedisStreamBus
) -> None:
    transport.ensure()  # 4 partitions
    run = subprocess.run(
        [CRMFS, "worker", "--repo", str(project), "--partitions", "6"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert run.returncode == 2
    assert "has 4 partitions, not 6" in " ".join(run.stderr.split())

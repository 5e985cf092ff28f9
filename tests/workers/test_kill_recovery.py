"""Stream workers killed with SIGKILL (real processes, real kills) and restarted leave the
online store, the event log, the quarantine and the identity graph exactly as the direct
path leaves them, as if nobody had died.

- At chosen points: the worker kills itself right after one step of its commit (messages
  fetched; identity graph committed, log not; log committed, online store not; online
  applied, identity changes not followed; followed; committed, not acknowledged).
- At random moments: two workers, one of them killed every few hundred milliseconds and
  started again (with its name, or as a new worker). ``CRMFS_WORKER_KILL_ROUNDS`` sets how
  many runs (default 6) for a longer soak.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from crmfs.storage.redis_streams import RedisStreamBus
from tests.storage.redis_servers import delete_prefix, require_shared_redis, unique_prefix
from tests.workers.crm_project import batches, make_project, snapshot
from tests.workers.harness import Workers, open_transport, publish, wait_drained
from tests.workers.reference import MESSAGE_ROWS, direct_snapshot

KILL_ROUNDS = int(os.environ.get("CRMFS_WORKER_KILL_ROUNDS", "6"))
KILLS_PER_ROUND = 3


def _assert_as_if_nobody_died(project: Path, transport: RedisStreamBus, workers: Workers) -> None:
    found = snapshot(project)
    expected = direct_snapshot()
    context = workers.output()
    for part in ("marks", "quarantine", "graph", "log", "online"):
        assert found[part] == expected[part], f"{part} differs\n{context}"
    assert transport.dead_letters() == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "crash",
    ["fetched:3", "identity:2", "append:4", "online:3", "follow:2", "committed:4", "append:1"],
)
def test_a_worker_killed_at_a_chosen_point_recovers_exactly(
    crash: str, project: Path, transport: RedisStreamBus, workers: Workers
) -> None:
    publish(project, batches(), MESSAGE_ROWS)
    crashing = workers.start("w1", "--crash", crash)
    workers.start("w2")
    wait_drained(transport, workers)  # w1 is started again (without the crash) once it died
    assert crashing.returncode == -9, f"the crash point {crash} was never reached"
    assert set(workers.stop_all().values()) == {0}
    _assert_as_if_nobody_died(project, transport, workers)


@pytest.mark.slow
def test_workers_killed_at_random_moments_recover_exactly(tmp_path: Path) -> None:
    require_shared_redis()
    seed = int(os.environ.get("CRMFS_WORKER_KILL_SEED", str(time.time_ns() % 1_000_000)))
    rng = random.Random(seed)
    for round_ in range(KILL_ROUNDS):
        prefix = unique_prefix(f"random-kills-{round_}")
        folder = tmp_path / f"round{round_}"
        try:
            _kill_round(folder, prefix, rng, f"seed {seed}, round {round_}")
        finally:
            delete_prefix(prefix)


def _kill_round(folder: Path, prefix: str, rng: random.Random, label: str) -> None:
    project = folder / "project"
    make_project(project, prefix)
    transport = open_transport(prefix)
    workers = Workers(project, folder)
    names = ["w1", "w2"]
    try:
        publish(project, batches(), MESSAGE_ROWS)
        for name in names:
            workers.start(name)
        kills: list[dict[str, Any]] = []
        for _ in range(KILLS_PER_ROUND):
            time.sleep(rng.uniform(0.15, 0.9))
            victim = rng.choice(sorted(workers.running))
            backlog = sum(transport.backlog().values())
            workers.kill(victim)
            # Back under its own name (it finds its unacknowledged messages at once) or as
            # a new worker (the old name's messages are claimed once idle).
            again = victim if rng.random() < 0.5 else f"{victim}x"
            names[names.index(victim)] = again
            workers.start(again)
            kills.append({"victim": victim, "restarted as": again, "backlog": backlog})
        wait_drained(transport, workers)
        assert set(workers.stop_all().values()) == {0}, label
        try:
            _assert_as_if_nobody_died(project, transport, workers)
        except AssertionError as exc:
            raise AssertionError(f"{label}, kills {kills}: {exc}") from None
    finally:
        workers.kill_all()
        transport.close()

"""A stream worker's side of the Redis Streams bus: partition leases, reads, acks, takeovers.

**Ownership.** Each partition is read by one worker at a time, so one entity's events are
processed in order. A worker holds a partition by a lease (``{p}:bus:lease:<part>``, its
token with a TTL of ``lease_s``), renewed by a heartbeat thread every third of it while the
process lives. Workers announce themselves in ``{p}:bus:workers`` (by heartbeat expiry);
``rebalance`` deals the partitions round-robin over the live workers, sorted by name, and
each worker takes the free ones dealt to it and lets go of the others. A killed worker's
leases expire after ``lease_s`` and its partitions go to the others.

**Takeover.** A partition just taken is *recovering*: first the entries this consumer name
left unacknowledged (a former process of the same name, or a reply lost to a connection
error) are read again (``XREADGROUP ... 0``), then those of other consumers are claimed once
idle for ``claim_idle_s`` (``XAUTOCLAIM``). Until no other consumer holds entries of the
partition, no new entry of it is read, so its order holds across a takeover. Every such
delivery counts (Redis's delivery counter), and the worker dead-letters a message delivered
``max_deliveries`` times instead of processing it again.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any, cast

from crmfs.errors import BackendUnavailable, StorageError
from crmfs.storage.bus import Delivery
from crmfs.storage.redis_stream_scripts import (
    ACK,
    DEAD_LETTER,
    HEARTBEAT,
    LEAVE,
    RELEASE_LEASE,
    RENEW_LEASES,
)
from crmfs.storage.redis_streams import GROUP, RedisStreamBus

_log = logging.getLogger(__name__)
_IDLE_PAUSE_S = 0.05  # a worker owning no partition ready to read looks again after this


class RedisStreamConsumer:
    """One worker of a project's bus; ``name`` must be unique among its live workers."""

    def __init__(self, bus: RedisStreamBus, name: str) -> None:
        if not name or ":" in name:
            raise ValueError(f"consumer name {name!r} must be non-empty and without ':'")
        self.bus = bus
        self.name = name
        self.keys = bus.keys
        self.settings = bus.settings
        self.max_deliveries = bus.settings.max_deliveries
        self._redis = bus.redis
        self._token = f"{name}/{uuid.uuid4().hex[:12]}"
        self._owned: set[str] = set()
        self._recovering: set[str] = set()
        self._cursors: dict[str, str] = {}
        self._live: list[str] = [name]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        script = self._redis.script
        self._ack, self._dead = script(ACK), script(DEAD_LETTER)
        self._heartbeat, self._leave = script(HEARTBEAT), script(LEAVE)
        self._renew, self._release = script(RENEW_LEASES), script(RELEASE_LEASE)

    # -- membership and ownership --------------------------------------------------------

    def start(self) -> None:
        """Join the workers and start the heartbeat (again: nothing)."""
        if self._thread is not None:
            return
        self.bus.ensure()
        self._beat()
        self._thread = threading.Thread(
            target=self._beating, name=f"bus-heartbeat-{self.name}", daemon=True
        )
        self._thread.start()

    def _beating(self) -> None:
        while not self._stop.wait(self.settings.lease_s / 3):
            try:
                self._beat()
            except StorageError as exc:  # leases may lapse; the partitions then move on
                _log.warning("event bus heartbeat of %s failed: %s", self.name, exc)

    def _beat(self) -> None:
        """Say this worker is alive, renew its leases, learn who else is."""
        live = self._redis.run(
            "event bus heartbeat",
            self._heartbeat,
            [self.keys.workers],
            [self.name, self.settings.lease_ms],
        )
        with self._lock:
            owned = sorted(self._owned)
        if owned:
            held = self._redis.run(
                "event bus lease renewal",
                self._renew,
                [self.keys.lease(p) for p in owned],
                [self._token, self.settings.lease_ms],
            )
            lost = {p for p, still in zip(owned, held, strict=True) if not still}
            if lost:
                _log.warning("%s lost partitions %s (leases lapsed)", self.name, sorted(lost))
                with self._lock:
                    self._owned -= lost
                    self._recovering -= lost
        self._live = sorted({member.decode() for member in live} | {self.name})

    def rebalance(self) -> set[str]:
        self._beat()
        live = self._live
        mine = {p for i, p in enumerate(self.bus.names) if live[i % len(live)] == self.name}
        with self._lock:
            extra = self._owned - mine
            wanted = mine - self._owned
        for partition in sorted(extra):
            self._let_go(partition)
        client = self._redis.client
        for partition in sorted(wanted):
            taken = self._redis.call(
                "event bus lease",
                lambda p=partition: client.set(  # type: ignore[misc]
                    self.keys.lease(p), self._token, nx=True, px=self.settings.lease_ms
                ),
            )
            if taken:
                with self._lock:
                    self._owned.add(partition)
                    self._recovering.add(partition)
                self._cursors[partition] = "0-0"
        return self.owned()

    def owned(self) -> set[str]:
        with self._lock:
            return set(self._owned)

    def owns(self, partition: str) -> bool:
        with self._lock:
            return partition in self._owned

    def live_workers(self) -> list[str]:
        return list(self._live)

    def _let_go(self, partition: str) -> None:
        with self._lock:
            self._owned.discard(partition)
            self._recovering.discard(partition)
        self._redis.run(
            "event bus lease", self._release, [self.keys.lease(partition)], [self._token]
        )

    # -- reading ---------------------------------------------------------------------------

    def fetch(self, max_messages: int, block_ms: int) -> list[Delivery]:
        with self._lock:
            owned = sorted(self._owned)
            recovering = sorted(self._recovering)
        claimed: list[Delivery] = []
        for partition in recovering:
            found, done = self._recover(partition, max_messages)
            claimed += found
            if done:
                with self._lock:
                    self._recovering.discard(partition)
        if claimed:
            return claimed
        with self._lock:
            ready = [p for p in owned if p in self._owned and p not in self._recovering]
        if not ready:
            time.sleep(min(block_ms / 1000, _IDLE_PAUSE_S) if recovering else block_ms / 1000)
            return []
        count = max(1, max_messages // len(ready))
        streams = {self.keys.stream(p): b">" for p in ready}
        reply = self._read(streams, count, block_ms if block_ms > 0 else None)
        return self._deliveries(reply, {})

    def _read(self, streams: dict[bytes, bytes], count: int, block: int | None) -> Any:
        """One XREADGROUP, not retried: a reply lost to a connection error leaves entries
        pending for this consumer, which ``_recover`` reads again, so every owned partition
        is marked recovering."""
        import redis

        try:
            return self._redis.client.xreadgroup(
                GROUP, self.name, cast(Any, streams), count=count, block=block
            )
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            with self._lock:
                self._recovering |= self._owned
            raise BackendUnavailable(
                f"Redis at {self._redis.settings.where()} is unavailable ({exc}): the event"
                " bus read failed; the worker reads again once it is back"
            ) from exc
        except redis.RedisError as exc:
            raise StorageError(f"event bus read failed: {exc}") from exc

    def _recover(self, partition: str, limit: int) -> tuple[list[Delivery], bool]:
        """Entries of ``partition`` left unacknowledged: this consumer's, then others' idle
        ones (claimed); whether none are left to other consumers."""
        stream = self.keys.stream(partition)
        own = self._read({stream: b"0"}, limit, None)
        entries = [(i, f) for _, found in own or [] for i, f in found]
        if entries:
            return self._deliveries([(stream, entries)], self._counts(stream, entries)), False
        client = self._redis.client
        cursor = self._cursors.get(partition, "0-0")
        reply = self._redis.call(
            "event bus takeover",
            lambda: client.xautoclaim(
                stream, GROUP, self.name, self.settings.claim_idle_ms, cursor, count=limit
            ),
        )
        self._cursors[partition] = _text(reply[0])
        entries = [(i, f) for i, f in reply[1] if f is not None]
        if entries:
            return self._deliveries([(stream, entries)], self._counts(stream, entries)), False
        summary = self._redis.call("event bus takeover", lambda: client.xpending(stream, GROUP))
        others = [c for c in summary.get("consumers") or [] if _text(c["name"]) != self.name]
        return [], not any(int(c["pending"]) for c in others)

    def _counts(self, stream: bytes, entries: list[tuple[Any, Any]]) -> dict[str, int]:
        """How often each of ``entries`` (pending for this consumer) was delivered."""
        client = self._redis.client
        ids = [_text(i) for i, _ in entries]
        rows = self._redis.call(
            "event bus takeover",
            lambda: client.xpending_range(
                stream,
                GROUP,
                min=ids[0],
                max=ids[-1],
                count=len(ids) + 1,
                consumername=self.name,
            ),
        )
        return {_text(r["message_id"]): int(r["times_delivered"]) for r in rows}

    def _deliveries(self, reply: Any, counts: dict[str, int]) -> list[Delivery]:
        found = []
        for stream, entries in reply or []:
            partition = self.keys.partition_of(stream)
            for entry_id, fields in entries:
                if not fields:
                    continue  # deleted while pending (the stream was trimmed by hand)
                key = _text(entry_id)
                found.append(
                    Delivery(
                        partition,
                        key,
                        _text(fields.get(b"source", b"")),
                        int(fields.get(b"rows", 0)),
                        bytes(fields.get(b"data", b"")),
                        counts.get(key, 1),
                    )
                )
        return found

    # -- outcomes --------------------------------------------------------------------------

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        by_partition: dict[str, list[str]] = {}
        for d in deliveries:
            by_partition.setdefault(d.partition, []).append(d.entry_id)
        if not by_partition:
            return
        client = self._redis.client

        def acknowledge() -> None:
            pipe = client.pipeline(transaction=False)
            for partition, ids in by_partition.items():
                self._ack(
                    keys=[self.keys.stream(partition), self.keys.errors],
                    args=[GROUP, partition, *ids],
                    client=pipe,
                )
            pipe.execute()

        self._redis.call("event bus ack", acknowledge)

    def retry(self, delivery: Delivery, error: str) -> Delivery | None:
        client = self._redis.client
        stream = self.keys.stream(delivery.partition)
        field = f"{delivery.partition}:{delivery.entry_id}"

        def claim_again() -> Any:
            client.hset(self.keys.errors, field, error[:2000])
            return client.xclaim(stream, GROUP, self.name, 0, [delivery.entry_id])

        claimed = self._redis.call("event bus retry", claim_again)
        if not claimed or not claimed[0][1]:
            return None
        return Delivery(
            delivery.partition,
            delivery.entry_id,
            delivery.source,
            delivery.rows,
            delivery.payload,
            delivery.deliveries + 1,
        )

    def noted_error(self, delivery: Delivery) -> str | None:
        """The last error a worker noted for a message it retried, if any."""
        client = self._redis.client
        field = f"{delivery.partition}:{delivery.entry_id}"
        value = self._redis.call("event bus errors", lambda: client.hget(self.keys.errors, field))
        return None if value is None else _text(value)

    def dead_letter(self, delivery: Delivery, reason: str) -> bool:
        answer = self._redis.run(
            "event bus dead letter",
            self._dead,
            [self.keys.stream(delivery.partition), self.keys.dead, self.keys.errors],
            [
                GROUP,
                delivery.entry_id,
                self.settings.dead_letter_max,
                delivery.partition,
                delivery.source,
                delivery.rows,
                delivery.payload,
                reason[:4000],
                delivery.deliveries,
            ],
        )
        return bool(answer)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            for partition in sorted(self.owned()):
                self._let_go(partition)
            self._redis.run("event bus leave", self._leave, [self.keys.workers], [self.name])
        except StorageError as exc:  # the leases expire by themselves
            _log.warning("%s could not leave the event bus cleanly: %s", self.name, exc)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

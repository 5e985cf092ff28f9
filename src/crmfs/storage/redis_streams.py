"""The event bus on Redis Streams: one stream per partition, one consumer group of workers.

Keys (``p`` is the key prefix, the project name unless set; every key shares the hash tag
``{p}``, so the scripts may touch several of them, also on Redis Cluster)::

    {p}:bus:meta          hash    partitions: the number of entity partitions (fixed once set)
    {p}:bus:identity      stream  messages of sources resolved by the identity graph
    {p}:bus:0 ... N-1     stream  messages of the other sources, by entity key
    {p}:bus:dead          stream  dead letters: messages that could not be processed, with why
    {p}:bus:lease:<part>  string  the lease of the worker owning a partition (token, with a TTL)
    {p}:bus:workers       zset    live workers by heartbeat expiry (server time, ms)
    {p}:bus:errors        hash    <partition>:<entry id> -> the last error of a message retried

Every partition stream has the consumer group ``workers`` (created at id 0, so nothing
published before a worker starts is missed). Acknowledged entries are trimmed away, so a
stream's length (``XLEN``) is its backlog: delivered but unacknowledged entries and entries
not yet delivered. A publish checks the lengths of the streams it writes to and appends its
messages in one script: all of them, or none if a stream holds ``max_backlog`` entries or
more (``BusFull``, after waiting up to ``publish_timeout_s`` if ``block`` is set).

The consumer side is ``RedisStreamConsumer`` (``redis_stream_consumer``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from crmfs.errors import BusFull, ConfigError
from crmfs.storage.bus import OutgoingMessage, partition_names
from crmfs.storage.redis_connection import RedisConnection, RedisSettings
from crmfs.storage.redis_stream_scripts import PUBLISH

GROUP = "workers"
# One publish script carries at most this many messages or payload bytes; a larger publish
# is several scripts (each all or nothing).
_SCRIPT_MESSAGES = 256
_SCRIPT_BYTES = 8 << 20


@dataclass(frozen=True)
class StreamSettings:
    """How a project's bus is laid out and how hard publishers and workers push.

    ``partitions``: entity partitions (the identity partition comes on top); fixed for a
    bus once a publisher or worker has used it. ``max_backlog``: messages a partition may
    hold before publishers wait (``block``) or fail at once (``BusFull``); 0 for no bound.
    ``lease_s``: how long a partition stays with a worker that stopped renewing it;
    ``claim_idle_s`` (default: ``lease_s``): how long a message must have been idle before
    the partition's new owner takes it over from a dead worker. ``max_deliveries``: a
    message delivered this many times without being acknowledged goes to the dead letters.
    """

    partitions: int = 8
    max_backlog: int = 10_000
    block: bool = True
    publish_timeout_s: float = 30.0
    lease_s: float = 10.0
    claim_idle_s: float | None = None
    max_deliveries: int = 5
    dead_letter_max: int = 100_000

    def __post_init__(self) -> None:
        if not 1 <= self.partitions <= 1024:
            raise ConfigError(f"event bus partitions must be 1 to 1024, not {self.partitions}")
        if self.max_backlog < 0 or self.max_deliveries < 1:
            raise ConfigError("event bus max_backlog must be 0 or more, max_deliveries 1 or more")
        if self.lease_s <= 0 or (self.claim_idle_s is not None and self.claim_idle_s < 0):
            raise ConfigError("event bus lease_s must be positive, claim_idle_s 0 or more")

    @property
    def claim_idle_ms(self) -> int:
        return int(1000 * (self.lease_s if self.claim_idle_s is None else self.claim_idle_s))

    @property
    def lease_ms(self) -> int:
        return max(1, int(self.lease_s * 1000))


class BusKeys:
    """The keys of one project's bus, under the hash tag ``{prefix}``."""

    def __init__(self, prefix: str) -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            raise ConfigError(
                f"event bus key prefix {prefix!r} must be a non-empty string without braces"
            )
        self.prefix = prefix
        base = b"{" + prefix.encode() + b"}:bus:"
        self.meta = base + b"meta"
        self.dead = base + b"dead"
        self.workers = base + b"workers"
        self.errors = base + b"errors"
        self._base = base

    def stream(self, partition: str) -> bytes:
        return self._base + partition.encode()

    def lease(self, partition: str) -> bytes:
        return self._base + b"lease:" + partition.encode()

    def partition_of(self, stream: bytes | str) -> str:
        """The partition a stream key is of."""
        name = stream if isinstance(stream, bytes) else stream.encode()
        return name.rsplit(b":", 1)[1].decode()


class RedisStreamBus:
    """A project's bus on Redis: its layout, publishing and the figures of its streams."""

    def __init__(self, redis: RedisSettings, prefix: str, settings: StreamSettings) -> None:
        self.settings = settings
        self.partitions = settings.partitions
        self.keys = BusKeys(prefix)
        self.redis = RedisConnection(redis)
        self.names = partition_names(settings.partitions)
        self._publish = self.redis.script(PUBLISH)
        self._ready = False

    def ensure(self) -> None:
        """Check (or set) the number of partitions and create the streams' consumer group."""
        if self._ready:
            return
        stored = int(self.redis.call("event bus setup", self._stored_partitions))
        if stored != self.partitions:
            raise ConfigError(
                f"the event bus under {self.keys.prefix!r} has {stored} partitions, not"
                f" {self.partitions}: publishers and workers of a bus must agree (drain the"
                " bus and delete its keys to change the number)"
            )
        self.redis.call("event bus setup", self._create_groups)
        self._ready = True

    def _stored_partitions(self) -> Any:
        client = self.redis.client
        client.hsetnx(self.keys.meta, "partitions", self.partitions)
        return client.hget(self.keys.meta, "partitions")

    def _create_groups(self) -> None:
        for name in self.names:
            self._create_group(name)

    def _create_group(self, partition: str) -> None:
        import redis

        try:
            self.redis.client.xgroup_create(self.keys.stream(partition), GROUP, "0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # -- publishing --------------------------------------------------------------------

    def publish(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Append ``messages`` (each to its partition's stream, in order); their ids.

        A batch larger than one script (``_SCRIPT_MESSAGES`` messages or ``_SCRIPT_BYTES``)
        is appended in several steps: if one raises, the steps before it stand (a retry
        of the whole publish is safe: events are deduplicated by id).
        """
        self.ensure()
        ids: list[str] = []
        for chunk in _script_chunks(messages):
            ids += self._publish_chunk(chunk)
        return ids

    def _publish_chunk(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        streams = sorted({self.keys.stream(m.partition) for m in messages})
        index = {stream: i + 1 for i, stream in enumerate(streams)}
        args: list[Any] = [self.settings.max_backlog, len(messages)]
        for m in messages:
            args += [index[self.keys.stream(m.partition)], m.source, m.rows, m.payload]
        started = time.monotonic()
        pause = 0.005
        while True:
            answer = self.redis.run("event bus publish", self._publish, streams, args)
            if answer[0] == b"ok":
                return [entry.decode() for entry in answer[1]]
            waited = time.monotonic() - started
            if not self.settings.block or waited >= self.settings.publish_timeout_s:
                partition = self.keys.partition_of(answer[1])
                raise BusFull(partition, int(answer[2]), self.settings.max_backlog, waited)
            time.sleep(pause)
            pause = min(pause * 2, 0.2)

    # -- figures ---------------------------------------------------------------------------

    def backlog(self) -> dict[str, int]:
        """Messages each partition holds (not yet acknowledged)."""
        self.ensure()
        client = self.redis.client

        def lengths() -> list[int]:
            pipe = client.pipeline(transaction=False)
            for name in self.names:
                pipe.xlen(self.keys.stream(name))
            return [int(n) for n in pipe.execute()]

        return dict(zip(self.names, self.redis.call("event bus backlog", lengths), strict=True))

    def pending(self) -> dict[str, dict[str, int]]:
        """Per partition, each consumer's delivered and unacknowledged messages."""
        self.ensure()
        found: dict[str, dict[str, int]] = {}
        for name in self.names:
            summary = self.redis.call("event bus pending", partial(self._summary, name))
            found[name] = {
                _text(c["name"]): int(c["pending"]) for c in summary.get("consumers") or []
            }
        return found

    def _summary(self, partition: str) -> Any:
        return self.redis.client.xpending(self.keys.stream(partition), GROUP)

    def dead_letters(self, count: int = 100) -> list[dict[str, Any]]:
        """The latest dead letters, newest first: each one's fields (``data`` left out) and
        its ``dead_id``."""
        client = self.redis.client
        entries: Any = self.redis.call(
            "event bus dead letters", lambda: client.xrevrange(self.keys.dead, count=count)
        )
        letters = []
        for entry_id, fields in entries:
            letter: dict[str, Any] = {_text(k): _text(v) for k, v in fields.items() if k != b"data"}
            letter["dead_id"] = _text(entry_id)
            letters.append(letter)
        return letters

    def requeue_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        """Publish dead letters again (all, or those with these ``dead_id``s) to their
        partitions, and delete them from the dead letters; how many."""
        client = self.redis.client
        entries: Any = self.redis.call(
            "event bus dead letters", lambda: client.xrange(self.keys.dead, count=1_000_000)
        )
        wanted = None if ids is None else set(ids)
        moved = 0
        for entry_id, fields in entries:
            if wanted is not None and _text(entry_id) not in wanted:
                continue
            message = OutgoingMessage(
                _text(fields[b"partition"]),
                _text(fields[b"source"]),
                int(fields[b"rows"]),
                fields[b"data"],
            )
            self.publish([message])
            self._delete_dead_letter(entry_id)
            moved += 1
        return moved

    def _delete_dead_letter(self, entry_id: bytes) -> None:
        client = self.redis.client
        self.redis.call("event bus dead letters", lambda: client.xdel(self.keys.dead, entry_id))

    def close(self) -> None:
        self.redis.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _script_chunks(messages: Sequence[OutgoingMessage]) -> list[list[OutgoingMessage]]:
    chunks: list[list[OutgoingMessage]] = [[]]
    size = 0
    for message in messages:
        if chunks[-1] and (
            len(chunks[-1]) >= _SCRIPT_MESSAGES or size + len(message.payload) > _SCRIPT_BYTES
        ):
            chunks.append([])
            size = 0
        chunks[-1].append(message)
        size += len(message.payload)
    return [chunk for chunk in chunks if chunk]

"""The Redis online store's change feed: Redis's own notices of changed keys.

Redis tracks keys for client-side caches (``CLIENT TRACKING``). In broadcasting mode
(``BCAST``) it tells of every change to a key under the given prefixes, whoever made it,
without the client having read the key: here, every key under the store's hash tag
``{p}:``. The feed holds two connections of its own, in RESP2:

- the *notice* connection subscribes to ``__redis__:invalidate``, where notices arrive;
- the *tracking* connection turns tracking on, redirecting notices to the first. It is
  idle afterwards but must stay open: tracking belongs to it.

Why RESP2 and two connections rather than RESP3 pushes on one: redis-py 8 hands RESP3
invalidation pushes only to a handler set on a connection's private parser (as its own
client-side cache does), whereas RESP2 notices are ordinary Pub/Sub replies that the public
``Connection.read_response`` returns. The price is that in RESP2 Redis tells nobody when
either connection goes, so the feed watches both: a read of the notice connection fails
once it is closed; the tracking connection, which never receives anything, is checked for
a closed socket after every wait; and both get a PING when quiet for ``heartbeat_s``.

What a notice means (keys in ``redis_keys``):

- ``{p}:<space>:<key>``: the state of ``key`` in the table pointing at ``<space>`` in
  ``{p}:t`` (read on connecting and after each change of it); spaces no table points at
  (a replacement being filled, an old space being deleted) are nobody's concern;
- ``{p}:m``: the marks (every write sets one of them);
- ``{p}:t``: a table was created, replaced or dropped: ``None``, drop everything;
- a null notice (``FLUSHDB``, ``FLUSHALL``): ``None``;
- the other keys (lease, counter, garbage, spaces being filled): nothing to a reader.

Redis sends the notices of one prefix once per turn of its event loop, so the keys of one
write (one script, one MULTI/EXEC) arrive in one message; messages that are waiting
together are passed on as one ``ChangeNotice``. Redis tracks key names whatever the
database: a write to a key of the same name in another database gives a needless notice,
never a missed one.

If a connection is lost, the feed becomes not ``connected`` and says ``None`` at once,
then reconnects, waiting ``backoff_s`` (then twice that, up to 2 s) between attempts, and
says ``None`` again once connected.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from crmfs.errors import StorageError
from crmfs.storage.ports import ChangeListener, ChangeNotice, EntityKey
from crmfs.storage.redis_connection import RedisSettings
from crmfs.storage.redis_keys import RedisKeys

_CHANNEL = b"__redis__:invalidate"
_MAX_BACKOFF_S = 2.0
_MAX_MESSAGES = 1_000  # messages merged into one notice at most
_log = logging.getLogger(__name__)
# A connection of redis-py's (its ConnectionInterface declares no types to check against).
Connection = Any


class RedisChangeFeed:
    """Notices of the writes to one Redis online store, from Redis (see the module).

    The feed's thread waits up to ``poll_s`` for notices at a time, then checks that the
    tracking connection is still open (so a closed one is seen within ``poll_s``), and
    sends both connections a PING when the notice connection was quiet for
    ``heartbeat_s``: no answer within ``settings.timeout_s`` counts as a lost connection.
    """

    def __init__(
        self,
        settings: RedisSettings,
        keys: RedisKeys,
        *,
        poll_s: float = 0.05,
        heartbeat_s: float = 1.0,
    ) -> None:
        self._settings = settings
        self._keys = keys
        self._start = keys.tag + b":"
        self._poll_s = poll_s
        self._heartbeat_s = heartbeat_s
        self._pool = redis.ConnectionPool.from_url(
            settings.url,
            password=settings.password,
            socket_timeout=settings.timeout_s,
            socket_connect_timeout=settings.timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,  # PINGs are sent here, the Pub/Sub way
            protocol=2,
            client_name="crmfs-feed:" + re.sub(r"[^!-~]", "_", keys.prefix),
        )
        self._notices: Connection | None = None
        self._tracking: Connection | None = None
        self._tables: dict[bytes, str] = {}  # key space -> table
        self._listener: ChangeListener | None = None
        self._connected = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._heard = 0.0  # when the notice connection last said anything
        self._pinged: float | None = None  # when a PING was sent that is not answered yet

    @property
    def connected(self) -> bool:
        return self._connected

    def start(self, listener: ChangeListener) -> None:
        """Connect now (if Redis does not answer, the feed keeps trying in the background)
        and begin noticing; ``listener(None)`` once connected."""
        if self._listener is not None:
            raise StorageError("a change feed is started once; make another with change_feed()")
        self._listener = listener
        try:
            self._connect()
        except (redis.RedisError, OSError) as exc:
            _log.warning("change feed of %s: cannot connect yet (%s)", self._where(), exc)
            self._disconnect()
        self._thread = threading.Thread(
            target=self._run, name=f"crmfs-change-feed-{self._keys.prefix}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self._settings.timeout_s + 1)
        self._connected = False
        self._disconnect()

    # -- the feed's thread -------------------------------------------------------------

    def _run(self) -> None:
        backoff = self._settings.backoff_s
        while not self._stop.is_set():
            if not self._connected:
                try:
                    self._connect()
                except (redis.RedisError, OSError) as exc:
                    _log.debug("change feed of %s: reconnecting failed: %s", self._where(), exc)
                    self._disconnect()
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, _MAX_BACKOFF_S)
                    continue
                backoff = self._settings.backoff_s
                _log.info("change feed of %s: connected again", self._where())
            try:
                self._pump()
            except (redis.RedisError, OSError) as exc:
                if self._stop.is_set():
                    break
                _log.warning("change feed of %s: connection lost (%s)", self._where(), exc)
                self._lose()
            except Exception:  # a bug here must not leave caches trusting a dead feed
                _log.exception("change feed of %s failed; starting again", self._where())
                self._lose()

    def _connect(self) -> None:
        """Both connections, tracking on, the tables' spaces; then ``connected``."""
        notices: Connection = self._pool.make_connection()
        self._notices = notices
        notices.connect()
        notices.send_command("CLIENT", "ID")
        notices_id = notices.read_response()
        notices.send_command("SUBSCRIBE", _CHANNEL)
        notices.read_response()
        tracking: Connection = self._pool.make_connection()
        self._tracking = tracking
        tracking.connect()
        tracking.send_command(
            "CLIENT", "TRACKING", "ON", "REDIRECT", notices_id, "BCAST", "PREFIX", self._start
        )
        tracking.read_response()
        # Read after tracking is on: a table switched meanwhile gives a notice, read later.
        self._read_tables()
        self._heard = time.monotonic()
        self._pinged = None
        self._connected = True
        self._tell(None)

    def _lose(self) -> None:
        self._connected = False  # first: see ``ChangeFeed``
        self._tell(None)
        self._disconnect()

    def _disconnect(self) -> None:
        for connection in (self._notices, self._tracking):
            if connection is not None:
                connection.disconnect()
        self._notices = self._tracking = None

    def _pump(self) -> None:
        """Wait up to ``poll_s`` for notices and pass on those that came; check both
        connections are alive."""
        notices, tracking = self._notices, self._tracking
        if notices is None or tracking is None:  # closed meanwhile
            raise redis.ConnectionError("the change feed is closed")
        if notices.can_read(self._poll_s):
            messages = [notices.read_response()]
            while len(messages) < _MAX_MESSAGES and notices.can_read(0):
                messages.append(notices.read_response())
            self._heard = time.monotonic()
            self._pinged = None
            self._pass_on(messages)
        if tracking.can_read(0):  # raises if closed; and it is never sent anything
            raise redis.ConnectionError("the tracking connection received something unexpected")
        now = time.monotonic()
        if self._pinged is not None and now - self._pinged > self._settings.timeout_s:
            raise redis.TimeoutError(f"no answer to a PING in {self._settings.timeout_s} s")
        if self._pinged is None and now - self._heard > self._heartbeat_s:
            tracking.send_command("PING")
            tracking.read_response()
            notices.send_command("PING")  # answered by a ``pong`` message
            self._pinged = now

    def _pass_on(self, messages: list[Any]) -> None:
        states: list[tuple[str, EntityKey]] = []
        marks = everything = tables_changed = False
        skip = len(self._start)  # every name starts with it: the tracked prefix
        tables = self._tables
        for message in messages:
            if message[0] != b"message":  # pong
                continue
            names = message[2]
            if names is None:  # the database was flushed
                everything = True
                continue
            for name in names:
                rest = name[skip:]
                space, colon, entity = rest.partition(b":")
                if colon:
                    table = tables.get(space)
                    if table is None:
                        continue
                    try:
                        key = entity_key(entity)
                    except ValueError:  # not a key the store wrote: be safe
                        everything = True
                        continue
                    states.append((table, key))
                elif rest == b"m":
                    marks = True
                elif rest == b"t":
                    everything = tables_changed = True
        if tables_changed:
            self._read_tables()
        if everything:
            self._tell(None)
        elif states or marks:
            self._tell(ChangeNotice(tuple(states), marks))

    def _read_tables(self) -> None:
        tracking = self._tracking
        if tracking is None:
            raise redis.ConnectionError("the change feed is closed")
        tracking.send_command("HGETALL", self._keys.tables)
        flat = tracking.read_response()
        self._tables = {
            space: table.decode("utf-8", "surrogatepass")
            for table, space in zip(flat[::2], flat[1::2], strict=True)
        }

    def _tell(self, notice: ChangeNotice | None) -> None:
        listener = self._listener
        if listener is None:
            return
        try:
            listener(notice)
        except Exception:  # a listener's bug must not end the notices of every other write
            _log.exception("change feed of %s: the listener failed", self._where())

    def _where(self) -> str:
        return f"{self._settings.where()} {self._keys.tag.decode(errors='replace')}"


def entity_key(entity: bytes) -> EntityKey:
    """The entity key that ends a Redis key (the inverse of ``redis_keys.entity_bytes``);
    ValueError if ``entity`` is not one."""
    kind, text = entity[:1], entity[1:]
    if kind == b"i":
        return int(text)
    if kind == b"s":
        return text.decode("utf-8", "surrogatepass")
    raise ValueError(f"not an entity key: {entity!r}")

"""A Redis connection with bounded retries: an outage becomes ``BackendUnavailable``.

redis-py's own retries are turned off: a call is retried here, as a whole (a pipeline, a
script), after a connection error or a timeout, waiting ``backoff_s``, then twice that, and
so on, ``retries`` times. Then ``BackendUnavailable`` says what was tried; other Redis
errors become ``StorageError``. The connection pool reconnects by itself once the server is
back, so the next call after an outage needs nothing special (scripts the server forgot in a
restart are loaded again by redis-py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from crmfs.errors import BackendUnavailable, MissingExtra, StorageError

if TYPE_CHECKING:
    import redis
    from redis.commands.core import Script

T = TypeVar("T")


@dataclass(frozen=True)
class RedisSettings:
    """How to reach Redis and how hard to try. ``password`` comes from the environment,
    never from ``crmfs.yaml`` (see ``crmfs.config``)."""

    url: str = "redis://127.0.0.1:6379/0"
    password: str | None = None
    retries: int = 3
    backoff_s: float = 0.05
    timeout_s: float = 5.0

    def where(self) -> str:
        """The server, for messages: the URL without user or password."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"


def _redis_module() -> Any:
    try:
        import redis
    except ImportError:
        raise MissingExtra("redis", "redis") from None
    return redis


class RedisConnection:
    """One client (a connection pool, shared by threads) and the retry policy."""

    def __init__(self, settings: RedisSettings) -> None:
        module = _redis_module()
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.settings = settings
        self._errors = module.exceptions
        try:
            self.client: redis.Redis = module.Redis.from_url(
                settings.url,
                password=settings.password,
                socket_timeout=settings.timeout_s,
                socket_connect_timeout=settings.timeout_s,
                retry=Retry(NoBackoff(), 0),
                health_check_interval=30,
            )
        except ValueError as exc:
            raise StorageError(f"cannot use Redis URL {settings.where()}: {exc}") from exc

    def script(self, source: str) -> Script:
        return self.client.register_script(source)

    def call(self, what: str, operation: Callable[[], T]) -> T:
        """Run ``operation``, retried on connection errors; ``what`` names it in errors."""
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                return operation()
            except (self._errors.AuthenticationError, self._errors.AuthorizationError) as exc:
                raise StorageError(
                    f"Redis at {self.settings.where()} refused the credentials ({exc}): check"
                    " the user in the URL and the password in the environment variable named"
                    " by online_store.password_env"
                ) from exc
            except (self._errors.ConnectionError, self._errors.TimeoutError) as exc:
                if attempt >= self.settings.retries:
                    raise BackendUnavailable(
                        f"Redis at {self.settings.where()} is unavailable ({exc}): {what} gave"
                        f" up after {attempt + 1} attempts in"
                        f" {time.monotonic() - started:.2f} s. Writes are atomic: nothing"
                        " of a write that failed was stored, unless its reply alone was lost"
                        " (then all of it was, and the watermark shows it). Retry later."
                    ) from exc
                time.sleep(self.settings.backoff_s * 2**attempt)
                attempt += 1
            except self._errors.RedisError as exc:
                raise StorageError(
                    f"Redis at {self.settings.where()}: {what} failed: {exc}"
                ) from exc

    def run(self, what: str, script: Script, keys: Sequence[bytes], args: Sequence[Any]) -> Any:
        """Run a Lua script (with retries)."""
        return self.call(what, lambda: script(keys=keys, args=args))

    def close(self) -> None:
        self.client.close()

"""HTTP load generator of the serving bench (``bench/http_bench.py``): the same client for every
server, standard library only (uvloop when it is installed).

Requests are prepared beforehand as whole HTTP/1.1 messages (``post_request``), one per entity
set, so sending one is a single ``write`` of ready bytes. Responses are parsed only as far as
needed to find where they end: the status line, then ``Content-Length`` (or the last chunk of a
chunked body); the body is never decoded here. Every connection is keep-alive and has at most
one request in flight (closed loop: a client sends its next request when the last one's answer
is complete).

- ``sequential``: one blocking socket, requests one after the other, each one's latency kept.
- ``throughput``: N connections on one asyncio event loop (cheaper per request than threads or
  streams: one wake-up may serve several connections, and ``asyncio.Protocol`` hands bytes over
  without the streams' buffering), a warm-up, then responses counted over a fixed window.

Both count responses whose status is not 200, so a server that fails fast cannot post fast
figures: the caller refuses figures with errors (``LoadResult.check``). A keep-alive connection
the server closes between responses (a worker recycled, say) is reopened and the request sent
again, as HTTP clients do when no byte of the answer arrived; those are counted as reconnects.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np

RECV_BYTES = 1 << 16
# Cumulative CPU seconds by part (server, redis, ...), read at the window's edges.
CpuProbe = Callable[[], dict[str, float]]


class LoadError(RuntimeError):
    """The server answered with errors, broke a response off, or could not be reached."""


def post_request(host: str, port: int, path: str, body: bytes) -> bytes:
    """A complete keep-alive HTTP/1.1 POST of a JSON body, ready to write."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


def response_end(buf: bytes | bytearray) -> tuple[int, int, bool] | None:
    """(status, length of the whole response, server closes after it) once ``buf`` holds a
    complete response, else None. Only Content-Length and chunked bodies are understood."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = bytes(buf[:head_end]).lower()
    status = int(head[9:12])
    close = b"\r\nconnection: close" in head
    at = head.find(b"\r\ncontent-length:")
    if at >= 0:
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : stop if stop >= 0 else None])
        end = head_end + 4 + length
        return (status, end, close) if len(buf) >= end else None
    if b"\r\ntransfer-encoding: chunked" in head:
        # The terminating chunk with no trailers; a chunk whose data holds these bytes would
        # end the body early, which JSON bodies (no raw CR/LF) never do.
        end = buf.find(b"\r\n0\r\n\r\n", head_end + 2)
        return None if end < 0 else (status, end + 7, close)
    if status in (204, 304) or 100 <= status < 200:
        return status, head_end + 4, close
    raise LoadError(f"response without Content-Length or chunked body: {bytes(buf[:200])!r}")


@dataclass
class LoadResult:
    """What one run measured. ``latencies_s`` holds the measured requests only."""

    clients: int
    latencies_s: np.ndarray
    seconds: float  # wall time of the measured window
    errors: int = 0  # responses with a status other than 200, and answers broken off
    first_error: str = ""
    reconnects: int = 0
    client_cpu_s: float = 0.0  # this process's CPU time over the measured window
    # The probe's parts, same window; "machine" (if there) is every core's busy time.
    cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return len(self.latencies_s)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q) * 1e3)

    @property
    def other_cpu_s(self) -> float | None:
        """CPU seconds of the machine's other processes over the window (if probed)."""
        if "machine" not in self.cpu_s:
            return None
        ours = sum(v for k, v in self.cpu_s.items() if k != "machine") + self.client_cpu_s
        return max(0.0, self.cpu_s["machine"] - ours)

    def check(self, label: str) -> None:
        """Refuse a run in which any request failed."""
        if self.errors:
            raise LoadError(
                f"{label}: {self.errors} of {self.requests + self.errors} requests failed;"
                f" first: {self.first_error}"
            )
        if not self.requests:
            raise LoadError(f"{label}: no request completed")

    def summary(self) -> str:
        parts = [
            f"{self.clients} client(s): {self.requests:,} requests in {self.seconds:.2f} s,"
            f" {self.rps:,.0f} rps, p50 {self.percentile_ms(50):.2f} ms,"
            f" p99 {self.percentile_ms(99):.2f} ms",
            f"client CPU {self.client_cpu_s / self.seconds:.0%} of a core"
            f" ({self.client_cpu_s / self.requests * 1e6:.0f} us/request)",
        ]
        parts += [
            f"{name} {seconds / self.seconds:.0%}"
            for name, seconds in self.cpu_s.items()
            if name != "machine"
        ]
        if (other := self.other_cpu_s) is not None:
            parts.append(f"other processes {other / self.seconds:.0%}")
        if self.reconnects:
            parts.append(f"{self.reconnects} reconnects")
        return "; ".join(parts)


def _describe(buf: bytes | bytearray, status: int) -> str:
    body = bytes(buf[bytes(buf).find(b"\r\n\r\n") + 4 :][:300])
    return f"HTTP {status}: {body!r}"


def _connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def sequential(
    host: str,
    port: int,
    requests: Sequence[bytes],
    warmup: int,
    probe: CpuProbe | None = None,
) -> LoadResult:
    """One keep-alive connection, one request after the other; the first ``warmup`` requests
    are not measured. Each latency is from the first byte written to the last byte read."""
    out = np.empty(len(requests) - warmup)
    result = LoadResult(1, out, 0.0)
    sock = _connect(host, port)
    buf = bytearray()
    before: dict[str, float] = {}
    try:
        started = time.perf_counter()
        cpu = time.process_time()
        for i, request in enumerate(requests):
            if i == warmup:
                before = probe() if probe else {}
                started, cpu = time.perf_counter(), time.process_time()
            t0 = time.perf_counter()
            try:
                sock.sendall(request)
                while (parsed := response_end(buf)) is None:
                    chunk = sock.recv(RECV_BYTES)
                    if not chunk:
                        raise ConnectionResetError("closed by the server")
                    buf += chunk
            except (ConnectionResetError, BrokenPipeError) as exc:
                if buf:
                    raise LoadError(f"connection lost mid-response: {bytes(buf[:200])!r}") from exc
                # A keep-alive connection the server closed (a recycled worker): as HTTP
                # clients do when no byte of the answer came, reopen and send again, once.
                result.reconnects += 1
                sock.close()
                sock = _connect(host, port)
                sock.sendall(request)
                while (parsed := response_end(buf)) is None:
                    chunk = sock.recv(RECV_BYTES)
                    if not chunk:
                        raise LoadError("connection closed twice in a row") from exc
                    buf += chunk
            elapsed = time.perf_counter() - t0
            status, end, close = parsed
            if status != 200:
                result.errors += 1
                result.first_error = result.first_error or _describe(buf[:end], status)
            del buf[:end]
            if i >= warmup:
                out[i - warmup] = elapsed
            if close:
                sock.close()
                sock = _connect(host, port)
        result.seconds = time.perf_counter() - started
        result.client_cpu_s = time.process_time() - cpu
        after = probe() if probe else {}
        result.cpu_s = {name: after[name] - before[name] for name in after}
    finally:
        sock.close()
    return result


class _Window:
    """Shared state of one throughput run: which request goes next, and what was measured."""

    def __init__(self, requests: Sequence[bytes]) -> None:
        self.next_request: Iterator[bytes] = itertools.cycle(requests)
        self.measuring = False
        self.stopping = False
        self.latencies: list[float] = []
        self.errors = 0
        self.first_error = ""
        self.reconnects = 0
        self.broken: BaseException | None = None


class _Connection(asyncio.Protocol):
    """One keep-alive client: sends a request, waits for the whole answer, sends the next."""

    def __init__(self, window: _Window, reopen: Callable[[bytes], None], first: bytes) -> None:
        self.window, self.reopen = window, reopen
        self.buf = bytearray()
        self.request = first
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None
        self.done = False  # the current request was answered (or none is outstanding)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._send(self.request)

    def _send(self, request: bytes) -> None:
        assert self.transport is not None
        self.request, self.done = request, False
        self.sent_at = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            parsed = response_end(self.buf)
        except LoadError as exc:
            self._fail(exc)
            return
        if parsed is None:
            return
        now = time.perf_counter()
        status, end, close = parsed
        window = self.window
        if window.measuring:
            if status == 200:
                window.latencies.append(now - self.sent_at)
            else:
                window.errors += 1
                window.first_error = window.first_error or _describe(self.buf[:end], status)
        del self.buf[:end]
        self.done = True
        assert self.transport is not None
        if window.stopping:
            self.transport.close()
        elif close:
            self.transport.close()
            self.reopen(next(window.next_request))
        else:
            self._send(next(window.next_request))

    def connection_lost(self, exc: Exception | None) -> None:
        window = self.window
        if window.stopping or self.done:
            return
        if self.buf:
            window.errors += 1
            window.first_error = window.first_error or f"connection closed mid-response: {exc}"
            self.reopen(next(window.next_request))
        else:
            window.reconnects += 1  # closed before any byte of the answer: send it again
            self.reopen(self.request)

    def _fail(self, exc: BaseException) -> None:
        self.window.broken = self.window.broken or exc
        self.window.stopping = True
        if self.transport is not None:
            self.transport.close()


async def _throughput(
    host: str,
    port: int,
    requests: Sequence[bytes],
    clients: int,
    warmup_s: float,
    measure_s: float,
    probe: CpuProbe | None,
) -> LoadResult:
    loop = asyncio.get_running_loop()
    window = _Window(requests)
    pending: set[asyncio.Task[object]] = set()

    def reopen(request: bytes) -> None:
        task = loop.create_task(open_one(request))
        pending.add(task)
        task.add_done_callback(pending.discard)

    async def open_one(request: bytes) -> None:
        try:
            await loop.create_connection(lambda: _Connection(window, reopen, request), host, port)
        except OSError as exc:
            window.broken = window.broken or exc
            window.stopping = True

    await asyncio.gather(*(open_one(next(window.next_request)) for _ in range(clients)))
    await asyncio.sleep(warmup_s)
    before = probe() if probe else {}
    cpu, started = time.process_time(), time.perf_counter()
    window.measuring = True
    await asyncio.sleep(measure_s)
    window.measuring = False
    seconds, client_cpu = time.perf_counter() - started, time.process_time() - cpu
    after = probe() if probe else {}
    window.stopping = True
    await asyncio.sleep(0.05)  # let the connections see the stop and close
    if window.broken is not None:
        raise LoadError(f"load run broken off: {window.broken}") from window.broken
    return LoadResult(
        clients,
        np.asarray(window.latencies),
        seconds,
        errors=window.errors,
        first_error=window.first_error,
        reconnects=window.reconnects,
        client_cpu_s=client_cpu,
        cpu_s={name: after[name] - before[name] for name in after},
    )


def event_loop_name() -> str:
    try:
        import uvloop  # noqa: F401  (only to know whether it is there)
    except ImportError:
        return "asyncio"
    return "uvloop"


def throughput(
    host: str,
    port: int,
    requests: Sequence[bytes],
    clients: int,
    warmup_s: float,
    measure_s: float,
    probe: CpuProbe | None = None,
) -> LoadResult:
    """``clients`` keep-alive connections sending ``requests`` in turn, closed loop, for
    ``warmup_s`` unmeasured then ``measure_s`` measured seconds. ``probe`` (if given) is read
    at the window's edges; its deltas land in ``cpu_s``."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if event_loop_name() == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_throughput(host, port, requests, clients, warmup_s, measure_s, probe))

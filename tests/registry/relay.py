"""A TCP relay to the real PostgreSQL that a test takes down and brings back.

To a client that connects through it, stopping the relay is the service going away (open
connections drop, new ones are refused) and starting it again is the service returning,
without touching the PostgreSQL server the whole machine shares.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class Relay:
    """Listens on a free local port and forwards each connection to ``target``."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self._stopped = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._guard = threading.Lock()
        self._threads: list[threading.Thread] = []

    def dsn(self, database: str = "test", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self._stopped.clear()
        listener = socket.create_server(("127.0.0.1", self.port))
        listener.settimeout(0.02)
        self._spawn(self._accept, listener)

    def stop(self) -> None:
        """Refuse new connections and cut the open ones."""
        self._stopped.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        with listener:
            while not self._stopped.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                upstream = socket.create_connection(self.target)
                for end in (client, upstream):
                    end.settimeout(0.02)
                self._spawn(self._pump, client, upstream)

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        """Both directions of one connection, until either side or the relay ends it."""
        with client, upstream:
            pairs = ((client, upstream), (upstream, client))
            while not self._stopped.is_set():
                for source, sink in pairs:
                    try:
                        data = source.recv(65536)
                    except TimeoutError:
                        continue
                    except OSError:
                        return
                    if not data:
                        return
                    with contextlib.suppress(OSError):
                        sink.sendall(data)

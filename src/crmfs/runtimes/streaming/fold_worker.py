"""A second process that folds a share of each large batch, so a fold uses two cores.

The fold is pure Python, so one process folds on one core. For a large batch the processor
splits each view's entities in two by key: it folds one share itself while a ``FoldWorker``
folds the other, reading the same online store. The two sets of new states are disjoint (an
entity falls in one share only), and the processor writes them together, in the one
transaction that also moves the watermark; so exactly-once and crash safety are those of a
fold in one process. A worker that fails or dies only makes the processor fold that share
itself, and stop using the worker.

The worker is a fresh interpreter running this module (``python -m``), not a fork (the parent
may hold DuckDB and SQLite threads) nor a multiprocessing spawn (which would import the
caller's main script again). It talks over two pipes and exits when asked, or when its parent
is gone and the request pipe closes.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable, Sequence
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from crmfs.runtimes.streaming.fold import ViewFold
from crmfs.storage.ports import EntityKey, OnlineStore
from crmfs.transform.plan import ViewPlan

OnlineOpener = Callable[[], OnlineStore]
_STOP_TIMEOUT_S = 5.0


class FoldWorkerError(RuntimeError):
    """The worker could not fold its share; the caller folds it itself."""


class FoldWorker:
    """One worker process folding shares of batches for the views of ``plans``.

    One share is in flight at a time: a caller holds ``lock`` from ``submit`` to ``result``
    (the pipes carry one conversation). Each request carries a ticket that the reply echoes,
    so a reply that is not the one awaited is detected rather than taken for it.
    """

    def __init__(self, open_online: OnlineOpener, plans: Sequence[ViewPlan]) -> None:
        if not sys.executable:
            raise OSError("no Python interpreter to start a fold worker with")
        child_reads, parent_writes = os.pipe()
        parent_reads, child_writes = os.pipe()
        _widen(parent_writes)
        _widen(child_writes)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(child_reads), str(child_writes)],
                pass_fds=(child_reads, child_writes),
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in a terminal reaches the parent only
            )
        except BaseException:
            os.close(parent_writes)
            os.close(parent_reads)
            raise
        finally:
            os.close(child_reads)  # the child's ends live on in the child only
            os.close(child_writes)
        self._requests = Connection(parent_writes, readable=False)
        self._results = Connection(parent_reads, writable=False)
        self._finalizer = weakref.finalize(
            self, _stop, self._requests, self._results, self._process
        )
        self._tickets = itertools.count()
        self._awaited: int | None = None
        self.lock = threading.Lock()
        self._requests.send((open_online, list(plans)))

    @property
    def pid(self) -> int:
        return self._process.pid

    def submit(
        self, view: int, events: pa.Table, now: int, states: dict[EntityKey, bytes | None]
    ) -> None:
        """Start folding ``events`` into the states of ``plans[view]`` (see ``result``).

        ``states`` are the current blobs of the share's entities (None: no state yet), which
        the caller usually has in its cache; the worker reads any other key from the store.
        """
        if self._awaited is not None:
            raise FoldWorkerError("fold worker busy: the previous share's result was not read")
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, events.schema) as writer:
            writer.write_table(events)
        ticket = next(self._tickets)
        try:
            self._requests.send((ticket, view, now, sink.getvalue().to_pybytes(), states))
        except (OSError, ValueError) as exc:
            raise FoldWorkerError(f"fold worker unreachable: {exc}") from exc
        self._awaited = ticket

    def result(self, timeout: float | None = None) -> dict[EntityKey, bytes]:
        """The new state blobs of the share last submitted (waits at most ``timeout`` s)."""
        awaited, self._awaited = self._awaited, None
        if awaited is None:
            raise FoldWorkerError("no share was submitted")
        try:
            if timeout is not None and not self._results.poll(timeout):
                raise FoldWorkerError(f"fold worker gave no result in {timeout} s")
            ticket, status, payload = self._results.recv()
        except (EOFError, OSError) as exc:
            raise FoldWorkerError(f"fold worker gone: {exc!r}") from exc
        if ticket != awaited:
            raise FoldWorkerError(f"fold worker answered request {ticket}, not {awaited}")
        if status != "ok":
            raise FoldWorkerError(str(payload))
        blobs: dict[EntityKey, bytes] = payload
        return blobs

    def close(self) -> None:
        self._finalizer()

    def kill(self) -> None:
        """Stop the worker at once, whatever it is doing (its pending reply is dropped)."""
        with contextlib.suppress(OSError):
            self._process.kill()
        self._finalizer()


def _stop(requests: Connection, results: Connection, process: subprocess.Popen[bytes]) -> None:
    """Ask the worker to exit (or kill it) and close the pipes; also run at interpreter exit."""
    with contextlib.suppress(OSError, ValueError):
        requests.send(None)
    requests.close()
    try:
        process.wait(_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(_STOP_TIMEOUT_S)
    results.close()


_PIPE_BYTES = 1 << 20  # Linux's default ceiling for an unprivileged process
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (in the fcntl module from Python 3.10, Linux only)


def _widen(fd: int) -> None:
    """Let a pipe hold a share's megabytes, so the writer seldom waits for the reader to
    be scheduled (a pipe holds 64 KiB by default); where that cannot be set, as it is."""
    with contextlib.suppress(OSError, ImportError, AttributeError):
        import fcntl

        fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_BYTES)


def split_by_key(events: pa.Table, key: str, eighths: int = 4) -> tuple[pa.Table, pa.Table]:
    """Two tables of ``events`` whose keys do not overlap, each in log order; the first has
    about ``eighths`` eighths of the keys (keys are dealt out in order of first appearance).

    Rows without a key go nowhere: no view can place them.
    """
    codes = pc.dictionary_encode(events[key]).combine_chunks().indices
    first = pc.less(pc.bit_wise_and(codes, 7), eighths)
    return events.filter(first), events.filter(pc.invert(first))


def _serve(requests: Connection, results: Connection) -> None:
    open_online, plans = requests.recv()
    online: OnlineStore = open_online()
    folds = [ViewFold(plan) for plan in plans]
    try:
        while True:
            try:
                message: Any = requests.recv()
            except (EOFError, OSError):
                return  # the parent is gone
            if message is None:
                return
            ticket, view, now, data, states = message
            try:
                events = pa.ipc.open_stream(data).read_all()
                fold = folds[view]
                read = partial(_read_given, states, partial(online.read, fold.plan.table))
                blobs = fold.fold(events, now, read)
                results.send((ticket, "ok", blobs))
            except Exception as exc:  # reported to the parent, which folds the share itself
                results.send((ticket, "error", f"{type(exc).__name__}: {exc}"))
    finally:
        online.close()


def _read_given(
    given: dict[EntityKey, bytes | None],
    read: Callable[[list[EntityKey]], list[bytes | None]],
    keys: list[EntityKey],
) -> list[bytes | None]:
    """Blobs of ``keys`` from those the parent sent, the store for any it did not."""
    missing = [key for key in keys if key not in given]
    if missing:
        given = {**given, **dict(zip(missing, read(missing), strict=True))}
    return [given[key] for key in keys]


if __name__ == "__main__":
    _serve(
        Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False)
    )

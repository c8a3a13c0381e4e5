"""Write-behind for the SIP core's writes: the core's loop hands a finished call or a binding
change over in a few microseconds and a thread commits them in batches.

Why: measured on the 2-core build machine (``tests/store/test_bench_store.py``, 10,000
records), an inline ``cdr.write`` costs 45-85 µs at the median but 90-160 µs on average,
0.4-1.3 ms at p99 and 7-20 ms when its commit is the one that runs SQLite's WAL
auto-checkpoint (which fsyncs); and any write may wait up to ``busy_timeout`` (5 s) while
Litestream or another process holds the lock. None of that may stall the loop that carries
calls. Queued, the loop pays 1-3 µs per record. A call record is final when written and
nobody waits for it, so deferring it costs only the records still queued at a crash
(normally one batch, milliseconds old).

Bindings are the same story for REGISTER (~52 µs in the registrar on the in-memory store,
~142 µs on SQLite, where the ``list`` query and the ``put`` commit dominate), and they are
soft state: a phone re-registers, so losing the last batch at a crash costs one refresh
interval at worst. :class:`WriteBehindBindings` answers reads from memory and queues writes.

The threads commit on a connection that is not the loop's (``open_store`` gives both the
same one, and says why), so the loop's reads never queue behind a batch waiting for the
lock. Batching also cuts the WAL (and what Litestream ships): rows of
one batch share pages.
"""

from __future__ import annotations

import builtins
import logging
import math
import queue
import threading
import time
from typing import Generic, TypeVar

from appliance.store.database import Database, StorageFailure
from appliance.store.sqlite import SqliteBindingStore, SqliteCdr
from pbx.store import Binding, BindingIndex, CallRecord, CdrQuery, Directory, NotFound

__all__ = ["WriteBehindBindings", "WriteBehindCdr"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Seconds a writer waits, after the first item of a batch, for more. Under load a batch then
# fills and the thread commits (and takes the GIL from the loop) once per batch, not once
# per item. A refresh REGISTER through the registrar (tests/store/test_bench_store.py)
# measured 135-180 µs with the thread committing each binding alone, 87-106 µs with 10 ms,
# 80-84 µs with the thread held. What it costs: a change reaches the disk up to 10 ms later,
# so a crash may lose 10 ms more.
LINGER = 0.01


class _Stop:
    """Queued by ``close()``: the thread commits what is ahead of it, then ends."""


class _BatchWriter(Generic[T]):
    """A thread that takes queued items in batches of up to ``max_batch`` and commits each
    batch with :meth:`_apply` (one transaction) on ``database``, its own connection. After
    the first item of a batch it waits ``linger`` seconds for more (see :data:`LINGER`);
    :meth:`flush` and :meth:`close` cut that short.

    Failure handling: a :class:`StorageFailure` (the disk: locked past the busy timeout, I/O
    error, disk full) is waited out and retried; any other error means SQLite refused the
    batch (a bug, not the disk), so the items go one by one and only the refused ones are
    dropped, with a log entry: one bad item must not block the rest.

    Subclasses set up their own state before calling ``__init__`` (it starts the thread) and
    call :meth:`_enqueue` with ``self._lock`` held.
    """

    def __init__(
        self,
        database: Database,
        noun: str,
        *,
        max_batch: int,
        max_queue: int,
        retry_delay: float,
        linger: float,
        close_database: bool,
    ) -> None:
        self.database = database
        self._noun = noun  # what an item is, for errors and logs
        self._max_batch = max_batch
        self._retry_delay = retry_delay
        self._linger = linger
        self._hurry = threading.Event()  # set by flush() and close(): stop lingering
        self._close_database = close_database
        self._queue: queue.Queue[T | _Stop] = queue.Queue(max_queue)
        # Held while enqueueing, so a subclass's own state changes in queue order.
        self._lock = threading.Lock()
        self._closed = False
        name = f"{noun.replace(' ', '-')}-writer"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # --- lifecycle

    def flush(self) -> None:
        """Wait until everything queued so far is committed (or dropped as refused)."""
        self._hurry.set()
        self._queue.join()
        self._hurry.clear()

    def close(self) -> None:
        """Commit what is queued, stop the thread and (if it owns it) close the connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        # After the flag, under the lock: nothing can be queued behind the stop.
        self._hurry.set()
        self._queue.put(_Stop())
        self._thread.join()
        if self._close_database:
            self.database.close()

    # --- for subclasses

    def _enqueue(self, item: T) -> None:
        """Queue an item without blocking; the caller holds ``self._lock``."""
        if self._closed:
            raise StorageFailure(f"{self._noun} writer is closed")
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            # Refuse rather than block the loop when the disk stays stuck.
            raise StorageFailure(f"{self._noun} queue full: the disk is not keeping up") from None

    def _apply(self, batch: list[T]) -> None:
        """Commit a batch in one transaction."""
        raise NotImplementedError

    def _committed(self, batch: list[T]) -> None:
        """Called in the thread once a batch is committed (or dropped)."""

    def _describe(self, item: T) -> str:
        return self._noun

    # --- the thread

    def _run(self) -> None:
        while True:
            batch: list[T] = []
            stop = self._take(batch)
            if batch:
                self._commit(batch)
                self._committed(batch)
                for _ in batch:
                    self._queue.task_done()
            if stop:
                self._queue.task_done()
                return

    def _take(self, batch: list[T]) -> bool:
        """Block for one item, linger for more, then take what is queued, up to a batch;
        True at stop."""
        item = self._queue.get()
        # No lingering when a full batch is waiting already.
        if self._linger and self._queue.qsize() < self._max_batch and not isinstance(item, _Stop):
            self._hurry.wait(self._linger)
        while True:
            if isinstance(item, _Stop):
                return True
            batch.append(item)
            if len(batch) >= self._max_batch:
                return False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False

    def _commit(self, batch: list[T]) -> None:
        while True:
            try:
                self._apply(batch)
                return
            except StorageFailure:
                n = len(batch)
                log.warning("writing %d %ss failed; retrying", n, self._noun, exc_info=True)
                time.sleep(self._retry_delay)
            except Exception:
                log.exception("a batch of %d %ss was refused", len(batch), self._noun)
                break
        for item in batch:
            while True:
                try:
                    self._apply([item])
                    break
                except StorageFailure:
                    log.warning("writing %s failed; retrying", self._describe(item))
                    time.sleep(self._retry_delay)
                except Exception:
                    log.exception("%s refused; dropped", self._describe(item))
                    break


# ------------------------------------------------------------------------------ call records


class WriteBehindCdr(_BatchWriter[CallRecord]):
    """:class:`pbx.store.CdrSink` whose :meth:`write` only enqueues.

    Reads see queued records: :meth:`get` looks in the queue first, :meth:`search` waits for
    the queue to drain. ``max_queue`` bounds memory if the disk stays stuck; a write beyond
    it raises :class:`StorageFailure` rather than block the loop. ``close_database``: whether
    :meth:`close` closes ``database`` (False when another writer shares the connection).
    """

    def __init__(
        self,
        database: Database,
        *,
        max_batch: int = 256,
        max_queue: int = 100_000,
        retry_delay: float = 0.5,
        linger: float = LINGER,
        close_database: bool = True,
    ) -> None:
        self._cdr = SqliteCdr(database)
        self._pending: dict[str, CallRecord] = {}  # queued, not yet committed
        super().__init__(
            database,
            "call record",
            max_batch=max_batch,
            max_queue=max_queue,
            retry_delay=retry_delay,
            linger=linger,
            close_database=close_database,
        )

    # --- CdrSink

    def write(self, record: CallRecord) -> None:
        with self._lock:
            self._enqueue(record)
            self._pending[record.call_id] = record

    def get(self, call_id: str) -> CallRecord | None:
        with self._lock:
            record = self._pending.get(call_id)
        return record if record is not None else self._cdr.get(call_id)

    def search(
        self, query: CdrQuery | None = None, limit: int = 100, offset: int = 0
    ) -> builtins.list[CallRecord]:
        self.flush()
        return self._cdr.search(query, limit, offset)

    # --- the thread

    def _apply(self, batch: builtins.list[CallRecord]) -> None:
        self._cdr.write_many(batch)

    def _committed(self, batch: builtins.list[CallRecord]) -> None:
        with self._lock:
            for r in batch:
                if self._pending.get(r.call_id) is r:  # not written again meanwhile
                    del self._pending[r.call_id]

    def _describe(self, item: CallRecord) -> str:
        return f"call record {item.call_id}"


# ------------------------------------------------------------------------------ bindings

# One binding write: (aor, contact, the binding to store or None to delete it).
_Change = tuple[str, str, Binding | None]
# What one call queues: all its changes go in one item, so a full queue refuses the call
# whole and a batch never splits it.
_Changes = tuple[_Change, ...]


class WriteBehindBindings(_BatchWriter[_Changes]):
    """:class:`pbx.store.BindingStore` that reads from memory and writes behind.

    ``database``'s ``bindings`` table is loaded into an index at open; reads (``list``,
    ``all_active``) answer from it and writes update it at once and queue the change. The
    thread applies a batch in one transaction, the last write per (aor, contact) winning.

    ``put`` must raise :class:`NotFound` for an AoR that is not an extension, synchronously.
    An AoR that has bindings in the index is known to be one: they were loaded under SQLite's
    foreign key or put after this check, and deleting the extension drops them (the
    directory's hook that :func:`~appliance.store.store.open_store` wires to
    :meth:`remove_all`). So only a put for an AoR without bindings asks ``directory.get``
    (one read of the loop's connection), and a refresh, the common REGISTER, reads nothing.

    Limits: the index is this process's; an extension deleted by another process keeps its
    in-memory bindings until they expire (it can no longer authenticate to refresh them, and
    the thread skips rows whose extension is gone). ``close_database`` as for
    :class:`WriteBehindCdr`.
    """

    def __init__(
        self,
        database: Database,
        directory: Directory,
        *,
        max_batch: int = 256,
        max_queue: int = 100_000,
        retry_delay: float = 0.5,
        linger: float = LINGER,
        close_database: bool = True,
    ) -> None:
        self._sql = SqliteBindingStore(database)
        self._directory = directory
        self._index = BindingIndex(self._sql.all_active(-math.inf))
        super().__init__(
            database,
            "binding",
            max_batch=max_batch,
            max_queue=max_queue,
            retry_delay=retry_delay,
            linger=linger,
            close_database=close_database,
        )

    # --- BindingStore

    def put(self, binding: Binding) -> None:
        aor = binding.aor
        if not self._index.has(aor) and self._directory.get(aor) is None:
            raise NotFound(aor)
        with self._lock:
            self._enqueue(((aor, binding.contact, binding),))
            self._index.put(binding)

    def remove(self, aor: str, contact: str) -> bool:
        with self._lock:
            # The index mirrors the table: what it lacks needs no delete there either.
            if not self._index.has(aor, contact):
                return False
            self._enqueue(((aor, contact, None),))  # first: a full queue changes nothing
            return self._index.remove(aor, contact)

    def remove_all(self, aor: str) -> int:
        with self._lock:
            contacts = self._index.contacts(aor)
            if contacts:
                self._enqueue(tuple((aor, contact, None) for contact in contacts))
                self._index.remove_all(aor)
            return len(contacts)

    def list(self, aor: str, now: float | None = None) -> builtins.list[Binding]:
        with self._lock:
            return self._index.list(aor, now)

    def all_active(self, now: float) -> builtins.list[Binding]:
        with self._lock:
            return self._index.all_active(now)

    def expire(self, now: float) -> builtins.list[Binding]:
        with self._lock:
            gone = self._index.expired(now)
            if gone:
                self._enqueue(tuple((b.aor, b.contact, None) for b in gone))
                self._index.drop(gone)
            return gone

    # --- the thread

    def _apply(self, batch: builtins.list[_Changes]) -> None:
        latest: dict[tuple[str, str], Binding | None] = {}
        for changes in batch:
            for aor, contact, binding in changes:
                latest[aor, contact] = binding  # coalesce: the last write wins
        with self.database.transaction():
            for (aor, contact), binding in latest.items():
                if binding is None:
                    self._sql.remove(aor, contact)
                    continue
                try:
                    self._sql.put(binding)
                except NotFound:
                    # The extension was deleted after the put and its bindings with it. The
                    # failed statement is undone; the transaction goes on.
                    log.info("binding of deleted extension %s not stored", aor)

    def _describe(self, item: _Changes) -> str:
        return "binding change of " + ", ".join(sorted({aor for aor, _, _ in item}))

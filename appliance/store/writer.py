"""Write-behind for call records: the SIP core's loop hands a finished call over in a few
microseconds and a thread commits them in batches.

Why: measured on the 2-core build machine (``tests/store/test_bench_store.py``, 10,000
records), an inline ``cdr.write`` costs 45-85 µs at the median but 90-160 µs on average,
0.4-1.3 ms at p99 and 7-20 ms when its commit is the one that runs SQLite's WAL
auto-checkpoint (which fsyncs); and any write may wait up to ``busy_timeout`` (5 s) while
Litestream or another process holds the lock. None of that may stall the loop that carries
calls. Queued, the loop pays 1-3 µs per record. A call record is final when written and
nobody waits for it, so deferring it costs only the records still queued at a crash
(normally one batch, milliseconds old).

The thread has its own connection, so the loop's reads and binding writes never queue
behind a batch waiting for the lock. Batching also cuts the WAL (and what Litestream ships):
records of one batch share pages.
"""

from __future__ import annotations

import builtins
import logging
import queue
import threading
import time

from appliance.store.database import Database, StorageFailure
from appliance.store.sqlite import SqliteCdr
from pbx.store import CallRecord, CdrQuery

__all__ = ["WriteBehindCdr"]

log = logging.getLogger(__name__)

_STOP = object()


class WriteBehindCdr:
    """:class:`pbx.store.CdrSink` whose :meth:`write` only enqueues.

    Reads see queued records: :meth:`get` looks in the queue first, :meth:`search` waits for
    the queue to drain. ``max_queue`` bounds memory if the disk stays stuck; a write beyond
    it raises :class:`StorageFailure` rather than block the loop.
    """

    def __init__(
        self,
        database: Database,
        *,
        max_batch: int = 256,
        max_queue: int = 100_000,
        retry_delay: float = 0.5,
    ) -> None:
        self.database = database  # its own connection to metadata.db
        self._cdr = SqliteCdr(database)
        self._max_batch = max_batch
        self._retry_delay = retry_delay
        self._queue: queue.Queue[CallRecord | object] = queue.Queue(max_queue)
        self._pending: dict[str, CallRecord] = {}  # queued, not yet committed
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="cdr-writer", daemon=True)
        self._thread.start()

    # --- CdrSink

    def write(self, record: CallRecord) -> None:
        if self._closed:
            raise StorageFailure("call record writer is closed")
        with self._lock:
            try:
                self._queue.put_nowait(record)
            except queue.Full:
                raise StorageFailure("call record queue full: the disk is not keeping up") from None
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

    # --- lifecycle

    def flush(self) -> None:
        """Wait until everything written so far is committed."""
        self._queue.join()

    def close(self) -> None:
        """Commit what is queued, stop the thread and close its connection."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
        self.database.close()

    # --- the thread

    def _run(self) -> None:
        while True:
            batch: list[CallRecord] = []
            stop = self._take(batch)
            if batch:
                self._commit(batch)
                with self._lock:
                    for r in batch:
                        if self._pending.get(r.call_id) is r:
                            del self._pending[r.call_id]
                for _ in batch:
                    self._queue.task_done()
            if stop:
                self._queue.task_done()
                return

    def _take(self, batch: list[CallRecord]) -> bool:
        """Block for one item, then take what else is queued, up to a batch; True at stop."""
        item = self._queue.get()
        while True:
            if item is _STOP:
                return True
            assert isinstance(item, CallRecord)
            batch.append(item)
            if len(batch) >= self._max_batch:
                return False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False

    def _commit(self, batch: list[CallRecord]) -> None:
        """Commit a batch, waiting out disk failures. If SQLite refuses the batch for any
        other reason (a bug, not the disk), the records go one by one and only the refused
        ones are dropped, with a log entry: one bad record must not block the rest."""
        while True:
            try:
                self._cdr.write_many(batch)
                return
            except StorageFailure:
                log.warning("writing %d call records failed; retrying", len(batch), exc_info=True)
                time.sleep(self._retry_delay)
            except Exception:
                log.exception("a batch of %d call records was refused", len(batch))
                break
        for record in batch:
            while True:
                try:
                    self._cdr.write(record)
                    break
                except StorageFailure:
                    log.warning("writing call record %s failed; retrying", record.call_id)
                    time.sleep(self._retry_delay)
                except Exception:
                    log.exception("call record %s refused; dropped", record.call_id)
                    break

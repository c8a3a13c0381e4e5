"""Cost of the store operations the SIP core calls from its loop. Run with
``pytest -q -s -m bench tests/store/test_bench_store.py``.

Each operation is timed one call at a time, so the table shows the tail (a WAL
auto-checkpoint, which fsyncs, lands on one unlucky commit) as well as the median. The
number that decides whether the core may write inline is the per-call cost of
``cdr.write`` and ``bindings.put``; ``wal_bytes`` is what one commit adds to the WAL, which
is what Litestream ships.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import pytest
from support.bench import report
from support.phone import KEY, PASSWORD, REALM, Phone
from support.phone import NOW as PHONE_NOW

from appliance.store import SqliteStore, WriteBehindCdr, open_store
from appliance.store.writer import WriteBehindBindings
from pbx.registrar import Authenticator, Registrar
from pbx.sip import Response
from pbx.store import (
    Binding,
    CallRecord,
    CdrQuery,
    Direction,
    Disposition,
    Extension,
    HangupSide,
    MediaStats,
    MemoryStore,
)

pytestmark = pytest.mark.bench

T = TypeVar("T")
NOW = 1_700_000_000.0
CALLS = 10_000
EXTENSIONS = 1_000


def timed(name: str, items: Iterable[T], op: Callable[[T], object]) -> dict[str, object]:
    """Call ``op`` on each item, timing each call; a row of µs statistics."""
    samples = []
    for item in items:
        start = time.perf_counter()
        op(item)
        samples.append(time.perf_counter() - start)
    samples.sort()
    us = [s * 1e6 for s in samples]
    return {
        "operation": name,
        "n": len(us),
        "mean_us": statistics.fmean(us),
        "p50_us": us[len(us) // 2],
        "p99_us": us[int(len(us) * 0.99)],
        "max_us": us[-1],
    }


def call(i: int) -> CallRecord:
    start = NOW + i * 7.0
    return CallRecord(
        call_id=str(uuid.uuid4()),
        sip_call_id=f"{uuid.uuid4().hex}@192.0.2.{i % 250}",
        caller_number=str(100 + i % 60),
        caller_name="Office Phone",
        dialed=str(100 + (i * 7) % 60),
        callee_number=str(100 + (i * 7) % 60),
        direction=Direction.INTERNAL,
        start_time=start,
        answer_time=start + 4.0,
        end_time=start + 95.0,
        disposition=Disposition.ANSWERED,
        hangup_side=HangupSide.CALLER,
        hangup_cause="Normal Clearing",
        sip_code=200,
        codec="PCMA",
        media_from_caller=MediaStats(4550, 782600, 3, 1.7),
        media_from_callee=MediaStats(4548, 782256, 0, 0.9),
    )


def registration(number: int, expires_at: float, cseq: int = 1) -> Binding:
    return Binding(
        aor=str(number),
        contact=f"sip:{number}@10.1.{number // 250}.{number % 250}:5060;transport=udp",
        expires_at=expires_at,
        call_id=f"reg-{number}@10.1.0.1",
        cseq=cseq,
        source_transport="UDP",
        source_host="198.51.100.7",
        source_port=20000 + number,
        updated_at=NOW,
        user_agent="Yealink SIP-T54W 96.86.0.100",
        instance_id=f'"<urn:uuid:{uuid.UUID(int=number)}>"',
        reg_id=1,
    )


def wal_bytes_per_commit(path: Path, op: Callable[[int], object], n: int = 200) -> float:
    wal = Path(f"{path}-wal")
    before = wal.stat().st_size
    for i in range(n):
        op(i)
    return (wal.stat().st_size - before) / n


def test_store_operation_costs(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    rows: list[dict[str, object]] = []
    numbers = range(1000, 1000 + EXTENSIONS)
    for n in numbers:
        store.directory.create(Extension(str(n)))
        store.directory.set_password(str(n), "pw", "pbx.example")

    calls = [call(i) for i in range(CALLS)]
    rows.append(timed("cdr.write (10k, growing table)", calls, store.cdr.write))
    rows.append(
        timed(
            "cdr.search number, 50/page",
            range(200),
            lambda i: store.cdr.search(CdrQuery(number=str(100 + i % 60)), limit=50),
        )
    )
    rows.append(timed("cdr.get", calls[:2000], lambda r: store.cdr.get(r.call_id)))

    rows.append(
        timed("bindings.put (new)", numbers, lambda n: store.bindings.put(registration(n, NOW)))
    )
    refresh = [n for _ in range(10) for n in numbers]
    rows.append(
        timed(
            "bindings.put (refresh)",
            enumerate(refresh),
            lambda item: store.bindings.put(registration(item[1], NOW + 3600, cseq=item[0])),
        )
    )
    rows.append(
        timed("bindings.list(aor, now)", numbers, lambda n: store.bindings.list(str(n), NOW))
    )
    rows.append(
        timed("bindings.expire (none due)", range(2000), lambda i: store.bindings.expire(NOW))
    )
    # 1,000 bindings expiring 10 per second, swept once a second: 10 removed per call.
    for n in numbers:
        store.bindings.put(registration(n, NOW + (n - 1000) / 10))
    rows.append(
        timed("bindings.expire (10 due)", range(100), lambda s: store.bindings.expire(NOW + s + 1))
    )
    rows.append(timed("directory.ha1", numbers, lambda n: store.directory.ha1(str(n), "MD5")))

    store.metadata.connection.execute("PRAGMA wal_autocheckpoint = 0")  # measure WAL growth
    more = [call(CALLS + i) for i in range(200)]
    wal = [
        {
            "operation": "WAL bytes per cdr.write",
            "bytes": wal_bytes_per_commit(
                tmp_path / "metadata.db", lambda i: store.cdr.write(more[i])
            ),
        },
        {
            "operation": "WAL bytes per bindings.put (refresh)",
            "bytes": wal_bytes_per_commit(
                tmp_path / "metadata.db",
                lambda i: store.bindings.put(registration(1000 + i, NOW + 7200, cseq=99)),
            ),
        },
    ]
    store.close()

    # Write-behind: what the loop pays per record, and how fast the thread drains.
    queued = open_store(tmp_path / "queued", write_behind=True)
    batch = [call(i) for i in range(CALLS)]
    rows.append(timed("cdr.write queued (loop side)", batch, queued.cdr.write))
    assert isinstance(queued.cdr, WriteBehindCdr)
    queued.cdr.flush()
    more = [call(CALLS + i) for i in range(2000)]
    # The thread's own connection commits; stop its auto-checkpoint to see the WAL grow.
    queued.cdr.database.connection.execute("PRAGMA wal_autocheckpoint = 0")
    wal_file = Path(f"{tmp_path / 'queued' / 'metadata.db'}-wal")
    before = wal_file.stat().st_size
    start = time.perf_counter()
    for r in more:
        queued.cdr.write(r)
    queued.cdr.flush()
    burst = time.perf_counter() - start
    wal.append(
        {
            "operation": "WAL bytes per queued cdr.write (2k burst)",
            "bytes": (wal_file.stat().st_size - before) / len(more),
        }
    )
    queued.close()
    rows.append(
        {
            "operation": "queued 2k burst, write+drain (per record)",
            "n": len(more),
            "mean_us": burst * 1e6 / len(more),
            "p50_us": "",
            "p99_us": "",
            "max_us": "",
        }
    )
    report("store", rows)
    report("store_wal", wal)


def binding_rows(mode: str, path: Path) -> list[dict[str, object]]:
    """The registrar's store calls on one kind of store: first registrations of 1,000
    AoRs, then 10 refreshes each, timed one call at a time."""
    rows: list[dict[str, object]] = []
    numbers = range(1000, 1000 + EXTENSIONS)
    refresh = [(i, n) for i, n in enumerate(n for _ in range(10) for n in numbers)]
    store = open_store(path, write_behind=mode == "write-behind")
    for n in numbers:
        store.directory.create(Extension(str(n)))
    bindings = store.bindings

    def register(b: Binding) -> None:
        bindings.list(b.aor, NOW)
        bindings.put(b)

    start = time.perf_counter()
    first = [registration(n, NOW + 3600) for n in numbers]
    rows.append(timed(f"{mode}: list+put, first binding of an AoR", first, register))
    again = [registration(n, NOW + 3600 + i, cseq=i + 2) for i, n in refresh]
    rows.append(timed(f"{mode}: list+put, refresh", again, register))
    rows.append(timed(f"{mode}: list(aor, now)", numbers, lambda n: bindings.list(str(n), NOW)))
    puts = [registration(n, NOW + 7200 + i, cseq=i + 20_000) for i, n in refresh]
    rows.append(timed(f"{mode}: put, refresh", puts, bindings.put))
    if isinstance(bindings, WriteBehindBindings):
        bindings.flush()
        count = len(first) + len(again) + len(puts)
        rows.append(
            {
                "operation": f"{mode}: {count // 1000}k puts, loop + drain (wall, per put)",
                "n": count,
                "mean_us": (time.perf_counter() - start) * 1e6 / count,
                "p50_us": "",
                "p99_us": "",
                "max_us": "",
            }
        )
    store.close()
    return rows


def test_write_behind_bindings_loop_cost(tmp_path: Path) -> None:
    """What the loop pays per REGISTER's store calls (``list`` then ``put``, as the
    registrar does) with write-behind bindings, while the thread commits behind it; the
    same workload inline on SQLite for comparison."""
    rows = [
        row for mode in ("inline", "write-behind") for row in binding_rows(mode, tmp_path / mode)
    ]
    report("store_bindings_write_behind", rows)
    by_name = {str(r["operation"]): r for r in rows}
    for name in ("write-behind: put, refresh", "write-behind: list+put, refresh"):
        mean = by_name[name]["mean_us"]
        assert isinstance(mean, float) and mean < 20, f"{name}: {mean:.1f} us per call"


def register_us(mode: str, path: Path, batch: int = 2000, rounds: int = 5) -> float:
    """µs per refresh REGISTER through ``Registrar.handle``, the best of several batches."""
    store: MemoryStore | SqliteStore = (
        MemoryStore() if mode == "memory" else open_store(path, write_behind=mode != "sqlite")
    )
    store.directory.create(Extension("1001"))
    store.directory.set_password("1001", PASSWORD, REALM)
    authenticator = Authenticator(store.directory, REALM, KEY, algorithms=("MD5",))
    registrar = Registrar(store.directory, store.bindings, authenticator, domain=REALM)
    phone = Phone("1001", PASSWORD)
    challenge = authenticator.check(phone.register(), PHONE_NOW)
    assert isinstance(challenge, Response)
    phone.register(challenge=challenge)
    requests = [phone.register() for _ in range(batch * rounds)]
    held = store.writer if isinstance(store, SqliteStore) and mode.endswith("held") else None
    if held is not None:
        held.lock.acquire()  # the thread cannot commit: the loop's side alone
    best = float("inf")
    for r in range(rounds):
        start = time.perf_counter()
        for request in requests[r * batch : (r + 1) * batch]:
            assert registrar.handle(request, phone.source, PHONE_NOW + 1).status == 200
        best = min(best, time.perf_counter() - start)
    if held is not None:
        held.lock.release()
    store.close()
    return best / batch * 1e6


def test_register_cost_with_write_behind_bindings(tmp_path: Path) -> None:
    """A whole refresh REGISTER (digest included) on each store, as
    tests/registrar/test_bench_registrar.py measures it. "write-behind, writer held": the
    thread is kept from committing, so the row shows the loop's side alone."""
    modes = ("memory", "sqlite", "write-behind", "write-behind, writer held")
    rows: list[dict[str, object]] = [
        {"store": mode, "register_us": register_us(mode, tmp_path / str(i))}
        for i, mode in enumerate(modes)
    ]
    report("registrar_write_behind", rows)

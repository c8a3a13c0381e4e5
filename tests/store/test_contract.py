"""One contract for every :class:`pbx.store.Store`: the SQLite store and the in-memory twin
run the same scenarios (directory, digest secrets, bindings, call records)."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.imports import loaded

from appliance.store import open_store
from pbx.sip.auth import DigestClient, DigestServer, ha1, parse_challenge
from pbx.store import (
    AlreadyExists,
    Binding,
    CallRecord,
    CdrQuery,
    Direction,
    Disposition,
    Extension,
    HangupSide,
    InvalidValue,
    MediaStats,
    MemoryStore,
    NotFound,
    RecordPolicy,
    Store,
)

NOW = 1_700_000_000.0

# ------------------------------------------------------------------------------ harness


class FakeClock:
    """A clock the test moves by hand (the directory stamps created/updated with it)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Harness:
    """A store under test, and a way to close and open it again (a restart)."""

    def __init__(self, kind: str, directory: Path, clock: FakeClock) -> None:
        self.kind = kind
        self.directory = directory
        self.clock = clock
        self.store: Store = self._open()

    def _open(self) -> Store:
        if self.kind == "memory":
            return MemoryStore(self.clock)
        return open_store(self.directory, clock=self.clock, write_behind=self.kind == "queued")

    def reopen(self) -> Store:
        """The SQLite store is closed and opened from its files; the twin keeps its state
        (it stands for a store that survives restarts)."""
        if self.kind != "memory":
            self.store.close()
            self.store = self._open()
        return self.store

    def close(self) -> None:
        self.store.close()


# "queued": SQLite with write-behind call records and bindings (appliance.store.writer:
# WriteBehindCdr, WriteBehindBindings), what the SIP core runs on.
KINDS = ["sqlite", "queued", "memory"]


@pytest.fixture(params=KINDS)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(request.param, tmp_path / "data", FakeClock())
    yield h
    h.close()


@pytest.fixture
def store(harness: Harness) -> Store:
    return harness.store


@pytest.fixture(params=KINDS)
def new_store(request: pytest.FixtureRequest) -> Iterator[Callable[[], Store]]:
    """A factory of fresh, empty stores (for Hypothesis: one store per example)."""
    opened: list[Store] = []
    with tempfile.TemporaryDirectory() as tmp:

        def make() -> Store:
            path = Path(tmp) / str(len(opened))
            s: Store = (
                MemoryStore()
                if request.param == "memory"
                else open_store(path, write_behind=request.param == "queued")
            )
            opened.append(s)
            return s

        yield make
        for s in opened:
            s.close()


def test_the_interface_module_loads_no_adapter() -> None:
    """pbx.store is what the core imports: no sqlite3, no asyncio, no adapter behind it."""
    assert loaded("import pbx.store", ("sqlite3", "asyncio", "appliance")) == []


# ------------------------------------------------------------------------------ directory


def test_create_get_list(harness: Harness, store: Store) -> None:
    created = store.directory.create(Extension("101", "Alice", record_calls=RecordPolicy.BOTH))
    assert created.created_at == created.updated_at == harness.clock.now
    store.directory.create(Extension("99"))
    store.directory.create(Extension("1000", enabled=False, call_limit=4, ring_timeout=15))
    assert store.directory.get("101") == created
    assert store.directory.get("102") is None
    assert [e.number for e in store.directory.list()] == ["99", "101", "1000"]
    assert store.directory.get("1000") == Extension(
        "1000",
        enabled=False,
        call_limit=4,
        ring_timeout=15,
        created_at=harness.clock.now,
        updated_at=harness.clock.now,
    )


def test_defaults() -> None:
    e = Extension("101")
    assert (e.enabled, e.call_limit, e.ring_timeout, e.record_calls) == (
        True,
        2,
        30,
        RecordPolicy.NONE,
    )


def test_timestamps_from_the_directory_not_the_caller(harness: Harness, store: Store) -> None:
    created = store.directory.create(Extension("101", created_at=5.0, updated_at=6.0))
    assert created.created_at == created.updated_at == harness.clock.now


def test_create_twice_is_refused(store: Store) -> None:
    store.directory.create(Extension("101", "Alice"))
    with pytest.raises(AlreadyExists):
        store.directory.create(Extension("101", "Bob"))
    assert store.directory.get("101") is not None
    assert store.directory.get("101").display_name == "Alice"  # type: ignore[union-attr]


def test_update_keeps_created_and_moves_updated(harness: Harness, store: Store) -> None:
    first = store.directory.create(Extension("101", "Alice"))
    harness.clock.now += 60
    changed = dataclasses.replace(first, display_name="Alice B", call_limit=3, enabled=False)
    updated = store.directory.update(changed)
    assert updated == dataclasses.replace(changed, updated_at=harness.clock.now)
    assert updated.created_at == first.created_at
    assert store.directory.get("101") == updated


def test_update_or_password_of_unknown_extension(store: Store) -> None:
    with pytest.raises(NotFound):
        store.directory.update(Extension("101"))
    with pytest.raises(NotFound):
        store.directory.set_password("101", "secret", "pbx.example")
    assert store.directory.secret("101") is None


def test_delete_is_idempotent(store: Store) -> None:
    store.directory.create(Extension("101"))
    assert store.directory.delete("101") is True
    assert store.directory.delete("101") is False
    assert store.directory.get("101") is None
    assert store.directory.list() == []


@pytest.mark.parametrize(
    "bad",
    [
        {"number": ""},
        {"number": "10a"},
        {"number": "1" * 17},
        {"display_name": "x" * 65},
        {"display_name": "Alice\r\nVia: evil"},
        {"call_limit": 0},
        {"ring_timeout": 0},
    ],
)
def test_invalid_extensions(bad: dict[str, object]) -> None:
    fields: dict[str, object] = {"number": "101", **bad}
    with pytest.raises(InvalidValue):
        Extension(**fields)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ secrets


def test_password_is_stored_as_ha1(store: Store) -> None:
    store.directory.create(Extension("101"))
    store.directory.set_password("101", "s3cret", "pbx.example")
    secret = store.directory.secret("101")
    assert secret is not None
    assert secret.realm == "pbx.example"
    assert secret.ha1_md5 == ha1("101", "pbx.example", "s3cret", "MD5")
    assert secret.ha1_sha256 == ha1("101", "pbx.example", "s3cret", "SHA-256")
    assert "s3cret" not in repr(secret)
    assert store.directory.ha1("101", "MD5") == secret.ha1_md5
    assert store.directory.ha1("101", "SHA-256") == secret.ha1_sha256
    assert store.directory.ha1("101", "md5-sess") == secret.ha1_md5
    assert store.directory.ha1("101", "SHA-256-sess") == secret.ha1_sha256
    assert store.directory.ha1("101", "SHA-512-256") is None  # not stored


def test_password_change_replaces_ha1(store: Store) -> None:
    store.directory.create(Extension("101"))
    store.directory.set_password("101", "old", "pbx.example")
    store.directory.set_password("101", "new", "other.example")
    assert store.directory.ha1("101", "MD5") == ha1("101", "other.example", "new")


def test_no_ha1_for_unknown_disabled_or_passwordless(store: Store) -> None:
    assert store.directory.ha1("101", "MD5") is None
    store.directory.create(Extension("101"))
    assert store.directory.ha1("101", "MD5") is None
    store.directory.set_password("101", "pw", "pbx.example")
    store.directory.update(Extension("101", enabled=False))
    assert store.directory.ha1("101", "MD5") is None
    assert store.directory.secret("101") is not None  # kept: enabling again restores it
    store.directory.update(Extension("101"))
    assert store.directory.ha1("101", "MD5") is not None


@pytest.mark.parametrize(("password", "realm"), [("", "pbx.example"), ("pw", ""), ("pw", "a\nb")])
def test_invalid_password_or_realm(store: Store, password: str, realm: str) -> None:
    store.directory.create(Extension("101"))
    with pytest.raises(InvalidValue):
        store.directory.set_password("101", password, realm)


def test_delete_removes_secret_and_recreate_starts_without(store: Store) -> None:
    store.directory.create(Extension("101"))
    store.directory.set_password("101", "pw", "pbx.example")
    store.directory.delete("101")
    assert store.directory.secret("101") is None
    store.directory.create(Extension("101"))
    assert store.directory.secret("101") is None
    assert store.directory.ha1("101", "MD5") is None


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_digest_verification_against_the_directory(store: Store, algorithm: str) -> None:
    store.directory.create(Extension("101"))
    store.directory.set_password("101", "s3cret", "pbx.example")
    server = DigestServer("pbx.example", b"k" * 32, algorithms=[algorithm])
    challenge = server.challenges(NOW)[0]
    good = DigestClient("101", "s3cret").authorize(
        [parse_challenge(challenge.to_header())], "REGISTER", "sip:pbx.example"
    )
    assert server.verify(good, "REGISTER", store.directory.ha1, NOW).ok
    bad = DigestClient("101", "wrong").authorize([challenge], "REGISTER", "sip:pbx.example")
    assert not server.verify(bad, "REGISTER", store.directory.ha1, NOW).ok


# ------------------------------------------------------------------------------ bindings


def binding(aor: str = "101", contact: str = "sip:101@192.0.2.10:5060", **kw: object) -> Binding:
    fields: dict[str, object] = {
        "aor": aor,
        "contact": contact,
        "expires_at": NOW + 3600,
        "call_id": "reg-1@192.0.2.10",
        "cseq": 1,
        "source_transport": "UDP",
        "source_host": "198.51.100.7",
        "source_port": 40312,
        "updated_at": NOW,
        **kw,
    }
    return Binding(**fields)  # type: ignore[arg-type]


@pytest.fixture
def extensions(store: Store) -> Store:
    for number in ("101", "102", "103"):
        store.directory.create(Extension(number))
    return store


def test_binding_round_trip_every_field(extensions: Store) -> None:
    full = binding(
        q=0.7,
        user_agent="Yealink T54W",
        instance_id='"<urn:uuid:00000000-0000-1000-8000-000a95a0e128>"',
        reg_id=1,
        path=("<sip:edge1.example;lr>", "<sip:edge2.example;lr>"),
    )
    bare = binding(contact="sip:101@[2001:db8::1]:5062;transport=tcp")
    extensions.bindings.put(full)
    extensions.bindings.put(bare)
    assert extensions.bindings.list("101") == [full, bare]
    assert extensions.bindings.list("102") == []


def test_put_replaces_by_aor_and_contact(extensions: Store) -> None:
    extensions.bindings.put(binding(cseq=1))
    refreshed = binding(cseq=2, expires_at=NOW + 7200, source_port=40999, updated_at=NOW + 60)
    extensions.bindings.put(refreshed)
    extensions.bindings.put(binding(contact="sip:101@192.0.2.11"))
    extensions.bindings.put(binding(aor="102"))
    assert extensions.bindings.list("101") == [refreshed, binding(contact="sip:101@192.0.2.11")]
    assert len(extensions.bindings.all_active(NOW)) == 3


def test_binding_for_unknown_aor_is_refused(extensions: Store) -> None:
    with pytest.raises(NotFound):
        extensions.bindings.put(binding(aor="999"))


def test_remove_and_remove_all(extensions: Store) -> None:
    for i in range(3):
        extensions.bindings.put(binding(contact=f"sip:101@192.0.2.{i}"))
    extensions.bindings.put(binding(aor="102"))
    assert extensions.bindings.remove("101", "sip:101@192.0.2.0") is True
    assert extensions.bindings.remove("101", "sip:101@192.0.2.0") is False
    assert extensions.bindings.remove_all("101") == 2
    assert extensions.bindings.remove_all("101") == 0
    assert [b.aor for b in extensions.bindings.all_active(NOW)] == ["102"]


def test_active_and_expire(extensions: Store) -> None:
    early = binding(contact="sip:a@x", expires_at=NOW + 10)
    edge = binding(aor="102", contact="sip:b@x", expires_at=NOW + 20)
    late = binding(aor="103", contact="sip:c@x", expires_at=NOW + 30)
    for b in (late, edge, early):
        extensions.bindings.put(b)
    assert extensions.bindings.all_active(NOW) == [early, edge, late]
    assert extensions.bindings.list("101", NOW + 10) == []  # expires_at == now: gone
    assert extensions.bindings.list("101") == [early]  # without now: everything stored
    assert extensions.bindings.expire(NOW + 5) == []
    assert extensions.bindings.expire(NOW + 20) == [early, edge]
    assert extensions.bindings.expire(NOW + 20) == []
    assert extensions.bindings.all_active(NOW) == [late]


def test_deleting_an_extension_drops_its_bindings(extensions: Store) -> None:
    extensions.bindings.put(binding())
    extensions.bindings.put(binding(aor="102"))
    extensions.directory.delete("101")
    assert extensions.bindings.list("101") == []
    assert [b.aor for b in extensions.bindings.all_active(NOW)] == ["102"]


def test_state_survives_reopen(harness: Harness, extensions: Store) -> None:
    extensions.directory.set_password("101", "pw", "pbx.example")
    b = binding(path=("<sip:edge.example;lr>",), q=0.5)
    extensions.bindings.put(b)
    record = call_record("c1")
    extensions.cdr.write(record)
    store = harness.reopen()
    assert store.bindings.list("101") == [b]
    assert store.directory.ha1("101", "MD5") == ha1("101", "pbx.example", "pw")
    assert store.cdr.get("c1") == record


@pytest.mark.parametrize(
    "bad", [{"contact": ""}, {"q": 1.5}, {"source_port": 70000}, {"expires_at": float("inf")}]
)
def test_invalid_bindings(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidValue):
        binding(**bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ call records


def call_record(call_id: str, **kw: object) -> CallRecord:
    fields: dict[str, object] = {
        "call_id": call_id,
        "sip_call_id": f"{call_id}@192.0.2.10",
        "caller_number": "101",
        "dialed": "102",
        "direction": Direction.INTERNAL,
        "start_time": NOW,
        "answer_time": NOW + 4.5,
        "end_time": NOW + 64.5,
        "disposition": Disposition.ANSWERED,
        "hangup_side": HangupSide.CALLER,
        **kw,
    }
    return CallRecord(**fields)  # type: ignore[arg-type]


def test_cdr_round_trip_every_field(store: Store) -> None:
    full = call_record(
        "5b0c3a2e-2f55-4c7e-9a51-0d1f0c8b6b01",
        caller_name="Alice Ä",
        callee_number="102",
        hangup_cause="Normal Clearing",
        sip_code=200,
        codec="PCMA",
        media_from_caller=MediaStats(3000, 516000, 3, 2.25),
        media_from_callee=MediaStats(2990, 514280, 0, 0.5),
        recording_ref="rec-1",
        recording_state="complete",
    )
    missed = call_record(
        "c2",
        direction=Direction.INBOUND,
        caller_number="+15550100",
        dialed="200",
        answer_time=None,
        disposition=Disposition.NO_ANSWER,
        hangup_side=HangupSide.SYSTEM,
        sip_code=480,
    )
    store.cdr.write(full)
    store.cdr.write(missed)
    assert store.cdr.get(full.call_id) == full
    assert store.cdr.get("c2") == missed
    assert store.cdr.get("c3") is None
    assert (full.duration, full.billable) == (64.5, 60.0)
    assert (missed.duration, missed.billable) == (64.5, 0.0)


def test_writing_the_same_call_again_replaces_it(store: Store) -> None:
    store.cdr.write(call_record("c1", recording_ref="r1", recording_state="recording"))
    final = call_record("c1", recording_ref="r1", recording_state="complete")
    store.cdr.write(final)
    assert store.cdr.get("c1") == final
    assert store.cdr.search() == [final]


def test_search_filters_and_pages(store: Store) -> None:
    records = [
        call_record("a", start_time=NOW, answer_time=NOW + 1, end_time=NOW + 2),
        call_record(
            "b",
            start_time=NOW + 10,
            end_time=NOW + 20,
            answer_time=None,
            disposition=Disposition.BUSY,
            caller_number="103",
            dialed="101",
        ),
        call_record(
            "c",
            start_time=NOW + 20,
            end_time=NOW + 30,
            answer_time=NOW + 25,
            dialed="5000",
            callee_number="104",
        ),
        call_record("d", start_time=NOW + 20, answer_time=NOW + 21, end_time=NOW + 30),
    ]
    for r in records:
        store.cdr.write(r)

    def ids(found: list[CallRecord]) -> list[str]:
        return [r.call_id for r in found]

    assert ids(store.cdr.search()) == ["d", "c", "b", "a"]  # newest first, ties by id desc
    assert ids(store.cdr.search(CdrQuery(since=NOW + 10))) == ["d", "c", "b"]
    assert ids(store.cdr.search(CdrQuery(until=NOW + 20))) == ["b", "a"]
    assert ids(store.cdr.search(CdrQuery(number="104"))) == ["c"]  # the answering extension
    assert ids(store.cdr.search(CdrQuery(number="101"))) == ["d", "c", "b", "a"]
    assert ids(store.cdr.search(CdrQuery(number="103"))) == ["b"]
    assert ids(store.cdr.search(CdrQuery(disposition=Disposition.BUSY))) == ["b"]
    assert ids(store.cdr.search(CdrQuery(number="101", disposition=Disposition.ANSWERED))) == [
        "d",
        "c",
        "a",
    ]
    assert ids(store.cdr.search(limit=2)) == ["d", "c"]
    assert ids(store.cdr.search(limit=2, offset=2)) == ["b", "a"]
    assert store.cdr.search(limit=2, offset=4) == []
    assert store.cdr.search(limit=0) == []


@pytest.mark.parametrize(("limit", "offset"), [(-1, 0), (1001, 0), (10, -1)])
def test_search_page_bounds(store: Store, limit: int, offset: int) -> None:
    with pytest.raises(InvalidValue):
        store.cdr.search(limit=limit, offset=offset)


@pytest.mark.parametrize(
    "bad",
    [
        {"end_time": NOW - 1},
        {"answer_time": None},  # ANSWERED without an answer time
        {"disposition": Disposition.BUSY},  # an answer time but not ANSWERED
        {"answer_time": NOW + 100},
        {"sip_code": 99},
        {"call_id": ""},
    ],
)
def test_invalid_call_records(bad: dict[str, object]) -> None:
    fields = {"call_id": "c1", **bad}
    with pytest.raises(InvalidValue):
        call_record(**fields)  # type: ignore[arg-type]


# --- Hypothesis: search equals a plain Python filter over what was written

NUMBERS = st.sampled_from(["101", "102", "103", "200", "+15550100"])
TIMES = st.integers(0, 50).map(lambda s: NOW + s)


@st.composite
def call_records(draw: st.DrawFn, call_id: str) -> CallRecord:
    start = draw(TIMES)
    end = start + draw(st.sampled_from([0.0, 1.5, 30.0]))
    disposition = draw(st.sampled_from(Disposition))
    answered = disposition is Disposition.ANSWERED
    return CallRecord(
        call_id=call_id,
        sip_call_id=f"{call_id}@x",
        caller_number=draw(NUMBERS),
        dialed=draw(NUMBERS),
        callee_number=draw(st.none() | NUMBERS),
        direction=draw(st.sampled_from(Direction)),
        start_time=start,
        answer_time=start if answered else None,
        end_time=end,
        disposition=disposition,
        hangup_side=draw(st.sampled_from(HangupSide)),
    )


record_sets = st.lists(st.uuids().map(str), max_size=25, unique=True).flatmap(
    lambda ids: st.tuples(*(call_records(i) for i in ids))
)
queries = st.builds(
    CdrQuery,
    since=st.none() | TIMES,
    until=st.none() | TIMES,
    number=st.none() | NUMBERS,
    disposition=st.none() | st.sampled_from(Disposition),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=record_sets, query=queries, limit=st.integers(0, 30), offset=st.integers(0, 30))
def test_search_is_a_python_filter(
    new_store: Callable[[], Store],
    records: tuple[CallRecord, ...],
    query: CdrQuery,
    limit: int,
    offset: int,
) -> None:
    store = new_store()
    for r in records:
        store.cdr.write(r)
    expected = sorted(
        (
            r
            for r in records
            if (query.since is None or query.since <= r.start_time)
            and (query.until is None or r.start_time < query.until)
            and (
                query.number is None or query.number in {r.caller_number, r.dialed, r.callee_number}
            )
            and (query.disposition is None or r.disposition == query.disposition)
        ),
        key=lambda r: (r.start_time, r.call_id),
        reverse=True,
    )
    assert store.cdr.search(query, limit, offset) == expected[offset : offset + limit]
    store.close()


# --- Hypothesis: bindings behave like a dict keyed by (aor, contact)

binding_ops = st.lists(
    st.tuples(
        st.sampled_from(["put", "remove", "expire"]),
        st.sampled_from(["101", "102"]),
        st.sampled_from(["sip:a@x", "sip:b@x", "sip:c@x"]),
        st.integers(0, 20).map(lambda s: NOW + s),
    ),
    max_size=30,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=binding_ops)
def test_bindings_are_a_dict_with_expiry(
    new_store: Callable[[], Store], ops: list[tuple[str, str, str, float]]
) -> None:
    store = new_store()
    store.directory.create(Extension("101"))
    store.directory.create(Extension("102"))
    model: dict[tuple[str, str], Binding] = {}
    for i, (op, aor, contact, t) in enumerate(ops):
        if op == "put":
            b = binding(aor, contact, expires_at=t, cseq=i)
            store.bindings.put(b)
            model[aor, contact] = b
        elif op == "remove":
            assert store.bindings.remove(aor, contact) == ((aor, contact) in model)
            model.pop((aor, contact), None)
        else:
            gone = sorted(k for k, b in model.items() if b.expires_at <= t)
            assert store.bindings.expire(t) == [model.pop(k) for k in gone]
    assert store.bindings.all_active(NOW - 1) == [model[k] for k in sorted(model)]
    store.close()

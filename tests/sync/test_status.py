"""The sync status core (pure): states, lag, alarms, restart backoff; and the parsers of
Litestream's control-socket answers and log lines."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.sync.litestream import (
    ControlError,
    parse_http_response,
    parse_log_line,
    parse_time,
)
from appliance.sync.status import (
    ALARM_DOWN,
    ALARM_LAG,
    Backoff,
    SyncMonitor,
    SyncState,
    SyncStatus,
)

T0 = 1_800_000_000.0


def monitor(**kw: float) -> SyncMonitor:
    return SyncMonitor(
        "file:///cloud/metadata",
        behind_after=kw.get("behind_after", 10.0),
        alarm_after=kw.get("alarm_after", 60.0),
        backoff=Backoff(0.5, 30.0, 60.0),
    )


def codes(m: SyncMonitor, now: float) -> set[str]:
    return {a.code for a in m.alarms(now)}


def test_lifecycle_of_a_healthy_replica() -> None:
    m = monitor()
    assert m.state(T0) is SyncState.STOPPED
    m.started(T0)
    assert m.state(T0 + 0.5) is SyncState.STARTING
    m.observed(T0 + 1.2, T0 + 1.0, 5)
    assert m.state(T0 + 1.2) is SyncState.REPLICATING
    assert m.lag(T0 + 1.2) == pytest.approx(0.2, abs=1e-6)
    assert codes(m, T0 + 1.2) == set()
    m.stopped()
    assert m.state(T0 + 2) is SyncState.STOPPED and m.alarms(T0 + 2) == ()


def test_an_unreachable_target_shows_behind_then_an_alarm_then_clears() -> None:
    m = monitor(behind_after=5, alarm_after=30)
    m.started(T0)
    m.observed(T0 + 1, T0 + 1, 1)
    # the target goes away: last_sync_at stands still, the local position moves on
    for t in range(2, 100):
        m.observed(T0 + t, T0 + 1, 1 + t)
    assert m.state(T0 + 7) is SyncState.BEHIND
    assert codes(m, T0 + 20) == set()
    status = m.status(T0 + 40)
    assert status.state is SyncState.BEHIND and status.lag_seconds == 39
    (alarm,) = status.alarms
    assert alarm.code == ALARM_LAG and alarm.since == T0 + 31
    m.observed(T0 + 100, T0 + 99.8, 200)  # back: Litestream synced again
    assert m.state(T0 + 100) is SyncState.REPLICATING and codes(m, T0 + 100) == set()


def test_a_crash_raises_down_until_the_restarted_process_has_synced() -> None:
    m = monitor()
    m.started(T0)
    m.observed(T0 + 2, T0 + 2, 3)
    m.error('time=x level=ERROR msg="sync error" error="disk full"')
    delay = m.exited(T0 + 3, -9)
    assert delay == 0.5
    assert m.state(T0 + 3) is SyncState.RESTARTING
    assert codes(m, T0 + 3) == {ALARM_DOWN}
    assert "code -9" in (m.last_error or "") and "disk full" in (m.last_error or "")
    m.started(T0 + 3.5)
    m.observed(T0 + 3.6, T0 + 2, 3)  # the new process has not synced yet: still down
    assert codes(m, T0 + 3.6) == {ALARM_DOWN}
    assert m.state(T0 + 3.6) is SyncState.STARTING
    m.observed(T0 + 4.6, T0 + 4.5, 3)
    assert codes(m, T0 + 4.6) == set() and m.state(T0 + 4.6) is SyncState.REPLICATING
    assert m.restarts == 1


def test_a_crash_loop_shows_a_growing_lag() -> None:
    m = monitor(behind_after=5, alarm_after=20)
    m.started(T0)
    m.observed(T0 + 1, T0 + 1, 1)
    now = T0 + 1
    for _ in range(10):
        now += m.exited(now + 0.1, 1) + 0.1
        m.started(now)
    assert m.lag(now) == now - (T0 + 1)
    assert codes(m, now) == {ALARM_DOWN, ALARM_LAG}


@given(st.lists(st.floats(min_value=0, max_value=200), min_size=1, max_size=40))
def test_backoff_stays_within_bounds_and_resets_after_a_stable_run(runs: list[float]) -> None:
    backoff = Backoff(0.5, 30.0, 60.0)
    previous = None
    for ran_for in runs:
        delay = backoff.after_run(ran_for)
        assert 0.5 <= delay <= 30.0
        if ran_for >= 60.0:
            assert delay == 0.5
        elif previous is not None:
            assert delay == min(30.0, previous * 2) or delay == 30.0
        previous = delay


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["start", "exit", "observe", "stop", "error"]),
            st.floats(min_value=0, max_value=50),
        ),
        max_size=60,
    )
)
def test_any_sequence_keeps_the_invariants(events: list[tuple[str, float]]) -> None:
    m = monitor(behind_after=5, alarm_after=20)
    now = T0
    for kind, step in events:
        now += step
        if kind == "start":
            m.started(now)
        elif kind == "exit" and m.process_up:
            m.exited(now, 1)
        elif kind == "observe" and m.process_up:
            m.observed(now, now - step / 2, 7)
        elif kind == "stop":
            m.stopped()
        elif kind == "error":
            m.error("boom")
        status = m.status(now)
        lag = m.lag(now)
        assert lag is None or lag >= 0
        if not m.running:
            assert status.alarms == () and status.state is SyncState.STOPPED
        else:
            has_lag_alarm = ALARM_LAG in {a.code for a in status.alarms}
            assert has_lag_alarm == (lag is not None and lag > 20)
            if status.state is SyncState.REPLICATING:
                assert lag is not None and lag <= 5 and not status.alarms
        assert SyncStatus.from_json(status.to_json()) == status


def test_status_json_round_trip_with_alarms() -> None:
    m = monitor(alarm_after=10, behind_after=1)
    m.started(T0)
    m.exited(T0 + 1, 2)
    status = m.status(T0 + 30)
    assert {a.code for a in status.alarms} == {ALARM_DOWN, ALARM_LAG}
    assert SyncStatus.from_json(status.to_json()) == status


# ------------------------------------------------------------------ parsers


def test_http_response_with_content_length_and_chunked() -> None:
    raw = b'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{"txid":1}'
    assert parse_http_response(raw) == (200, b'{"txid":1}')
    chunked = (
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n3\r\n:1}\r\n0\r\n\r\n'
    )
    assert parse_http_response(chunked) == (200, b'{"a":1}')


@given(st.binary(max_size=300), st.lists(st.integers(min_value=1, max_value=40), max_size=10))
def test_chunked_bodies_of_any_split_decode(body: bytes, cuts: list[int]) -> None:
    pieces, rest = [], body
    for cut in cuts:
        if not rest:
            break
        pieces.append(rest[:cut])
        rest = rest[cut:]
    if rest:
        pieces.append(rest)
    encoded = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + encoded
    assert parse_http_response(raw) == (200, body)


@given(st.binary(max_size=200))
def test_garbage_is_a_control_error_or_a_response(raw: bytes) -> None:
    try:
        status, _ = parse_http_response(raw)
    except (ControlError, ValueError):
        return
    assert status >= 0


def test_litestream_times() -> None:
    whole = 1795762741.0  # 2026-11-27T06:59:01Z
    assert parse_time("2026-11-27T06:59:01.622289697Z") == pytest.approx(whole + 0.622289697)
    assert parse_time("2026-11-27T06:59:01Z") == whole
    assert parse_time("2026-11-27T07:59:01+01:00") == whole
    assert parse_time(None) is None and parse_time("") is None


def test_log_lines() -> None:
    line = (
        'time=2026-11-27T07:00:58.589Z level=ERROR msg="sync error" db=metadata.db '
        'error="put object: connection refused"'
    )
    entry = parse_log_line(line)
    assert entry.level == "ERROR" and entry.message == "sync error"
    assert entry.summary == "sync error: put object: connection refused"
    assert parse_log_line("plain text\n").level == ""

"""The sans-IO link connection: handshake, streams (the half-stream table exhaustively),
chunking, cancel races, the in-flight limit and the heartbeat, with two machines wired back to
back and no sockets."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.link.connection import (
    HALF_TABLE,
    BodyReceived,
    ConnectionDead,
    Event,
    Half,
    HandshakeDone,
    HandshakeRequested,
    LinkConnection,
    LinkState,
    LocalProtocolError,
    RemoteProtocolError,
    RequestStarted,
    ResponseStarted,
    Role,
    Step,
    StreamCancelled,
    advance,
)
from appliance.link.frames import MAX_CHUNK, Body, Hello, Pair, Paired, Welcome, encode


def pump(src: LinkConnection, dst: LinkConnection, now: float = 0.0) -> list[Event]:
    events: list[Event] = []
    for text in src.frames_to_send():
        events += dst.receive(text, now)
    return events


def linked(max_streams: int = 16) -> tuple[LinkConnection, LinkConnection]:
    box = LinkConnection(Role.BOX, 0.0, max_streams=max_streams)
    cab = LinkConnection(Role.CABINET, 0.0)
    box.start(Hello("b1", "secret-credential-1234"))
    [requested] = pump(box, cab)
    assert isinstance(requested, HandshakeRequested)
    cab.accept(Welcome("b1"))
    [done] = pump(cab, box)
    assert done == HandshakeDone(Welcome("b1"))
    assert box.state is cab.state is LinkState.OPEN
    return box, cab


def test_pairing_handshake() -> None:
    box = LinkConnection(Role.BOX, 0.0)
    cab = LinkConnection(Role.CABINET, 0.0)
    box.start(Pair("ABCD-EFGH", "office"))
    assert pump(box, cab) == [HandshakeRequested(Pair("ABCD-EFGH", "office"))]
    cab.accept(Paired("b1", "c" * 43))
    assert pump(cab, box) == [HandshakeDone(Paired("b1", "c" * 43))]


def test_refusal_closes_both() -> None:
    box = LinkConnection(Role.BOX, 0.0)
    cab = LinkConnection(Role.CABINET, 0.0)
    box.start(Pair("WRONG", "office"))
    pump(box, cab)
    cab.refuse("bad_code", "unknown pairing code")
    [done] = pump(cab, box)
    assert isinstance(done, HandshakeDone)
    assert box.state is cab.state is LinkState.CLOSED


def test_requests_before_the_handshake_are_errors() -> None:
    box = LinkConnection(Role.BOX, 0.0)
    box.start(Hello("b1", "x" * 20))
    text = encode(Body(1, b"", False))
    with pytest.raises(RemoteProtocolError, match="handshake"):
        box.receive(text, 0.0)


def test_request_and_streamed_response() -> None:
    box, cab = linked()
    body = bytes(range(256)) * 1000  # 256 000 bytes: four frames
    sid = cab.send_request(
        "PUT", "/v1/config", (("content-type", "application/json"),), body, more=False
    )
    events = pump(cab, box)
    assert isinstance(events[0], RequestStarted)
    assert events[0].complete is False
    got = events[0].body + b"".join(e.data for e in events[1:] if isinstance(e, BodyReceived))
    assert got == body
    assert isinstance(events[-1], BodyReceived) and events[-1].complete
    assert max(len(e.data) for e in events[1:] if isinstance(e, BodyReceived)) <= MAX_CHUNK

    box.send_response(sid, 200, (("content-type", "text/plain"),), b"a" * 10, more=True)
    box.send_body(sid, b"b" * (MAX_CHUNK * 2 + 1), more=True)
    box.send_body(sid, b"", more=False)
    events = pump(box, cab)
    assert isinstance(events[0], ResponseStarted) and events[0].status == 200
    rest = b"".join(e.data for e in events[1:] if isinstance(e, BodyReceived))
    assert events[0].body + rest == b"a" * 10 + b"b" * (MAX_CHUNK * 2 + 1)
    assert box.in_flight == cab.in_flight == 0


def test_concurrent_streams_interleave() -> None:
    box, cab = linked()
    ids = [cab.send_request("GET", f"/r/{n}", more=False) for n in range(5)]
    started = [e for e in pump(cab, box) if isinstance(e, RequestStarted)]
    assert [e.id for e in started] == ids
    for sid in reversed(ids):  # answered out of order
        box.send_response(sid, 200, body=str(sid).encode(), more=False)
    answers = {e.id: e.body for e in pump(box, cab) if isinstance(e, ResponseStarted)}
    assert answers == {sid: str(sid).encode() for sid in ids}


def test_cancel_race_is_tolerated() -> None:
    box, cab = linked()
    sid = cab.send_request("GET", "/slow", more=False)
    pump(cab, box)
    box.send_response(sid, 200, body=b"x", more=True)  # in flight while the cabinet cancels
    cab.cancel(sid, "operator gave up")
    assert pump(box, cab) == []  # the late frame for a cancelled stream is ignored
    assert pump(cab, box) == [StreamCancelled(sid, "operator gave up")]
    box.send_body(sid, b"more", more=False)  # the box's task may still write: a no-op
    assert box.frames_to_send() == []


def test_frames_for_unopened_streams_are_errors() -> None:
    box, _ = linked()
    with pytest.raises(RemoteProtocolError, match="never opened"):
        box.receive(encode(Body(7, b"", False)), 0.0)


def test_stream_ids_must_grow() -> None:
    box, cab = linked()
    cab.send_request("GET", "/", more=False)
    pump(cab, box)
    text = '{"type":"request","id":1,"method":"GET","path":"/","headers":[],"body":"","more":false}'
    with pytest.raises(RemoteProtocolError, match="not above"):
        box.receive(text, 0.0)


def test_box_refuses_past_max_streams() -> None:
    box, cab = linked(max_streams=2)
    ids = [cab.send_request("GET", "/", more=False) for _ in range(3)]
    events = pump(cab, box)
    assert [type(e) for e in events] == [RequestStarted, RequestStarted, StreamCancelled]
    assert pump(box, cab) == [StreamCancelled(ids[2], "busy")]


def test_local_misuse() -> None:
    box, cab = linked()
    with pytest.raises(LocalProtocolError):
        box.send_request("GET", "/", more=False)
    with pytest.raises(LocalProtocolError):
        cab.send_response(1, 200, more=False)
    sid = cab.send_request("GET", "/", more=False)
    pump(cab, box)
    box.send_response(sid, 204, more=True)
    with pytest.raises(LocalProtocolError):
        box.send_response(sid, 200, more=False)


def test_half_table_exhaustive() -> None:
    for half, step in itertools.product(Half, Step):
        if (half, step) in HALF_TABLE:
            assert advance(half, step) is HALF_TABLE[(half, step)]
        else:
            with pytest.raises(KeyError):
                advance(half, step)
    # Done is final; a head only from idle; a body never from idle.
    assert not any(h is Half.DONE for h, _ in HALF_TABLE)
    assert all(h is Half.IDLE for h, s in HALF_TABLE if s in (Step.HEAD_END, Step.HEAD_MORE))


def test_heartbeat_pings_and_declares_death() -> None:
    box, cab = linked()
    box_timer = box.next_timer()
    assert box_timer == 15.0
    assert box.handle_timer(15.0) == []
    pings = box.frames_to_send()
    assert len(pings) == 1 and '"ping"' in pings[0]
    cab.receive(pings[0], 15.0)
    [pong] = cab.frames_to_send()
    box.receive(pong, 15.1)
    assert box.handle_timer(30.0) == []  # heard at 15.1: alive
    box.frames_to_send()
    [dead] = box.handle_timer(60.2)
    assert isinstance(dead, ConnectionDead) and dead.silent_for == pytest.approx(45.1)
    assert box.state is LinkState.CLOSED and box.next_timer() is None


ops = st.lists(
    st.tuples(
        st.sampled_from(["request", "respond", "body", "end", "cancel_box", "cancel_cab"]),
        st.integers(0, 4),
        st.integers(0, 70_000),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_random_traffic_never_desyncs(script: list[tuple[str, int, int]]) -> None:
    """Random valid API use on both sides, pumped both ways: no protocol error, and both
    sides agree at the end on which streams are still open."""
    box, cab = linked()
    opened: list[int] = []
    for op, pick, size in script:
        if op == "request" or not opened:
            opened.append(cab.send_request("POST", "/x", body=b"q" * size, more=False))
        else:
            sid = opened[pick % len(opened)]
            try:
                if op == "respond":
                    box.send_response(sid, 200, body=b"r" * size, more=True)
                elif op == "body":
                    box.send_body(sid, b"s" * size, more=True)
                elif op == "end":
                    box.send_body(sid, b"", more=False)
                elif op == "cancel_box":
                    box.cancel(sid)
                else:
                    cab.cancel(sid)
            except LocalProtocolError:
                pass  # e.g. a body before the response head: refused locally, nothing sent
        pump(cab, box)
        pump(box, cab)
    pump(cab, box)
    pump(box, cab)
    for sid in opened:
        assert box.stream_open(sid) == cab.stream_open(sid)

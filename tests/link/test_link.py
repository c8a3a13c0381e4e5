"""The link end to end: a real cabinet, a real box client, an ASGI app run in process."""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from support.linkpeer import BoxFactory, make_test_app, paired
from support.wait import wait_for
from websockets.asyncio.server import ServerConnection, serve

from appliance.backoff import backoff_delay
from appliance.link.cabinet import Cabinet, LinkUnavailable
from appliance.link.client import LinkPhase, LinkSettings
from appliance.link.credentials import LinkCredential, MemoryCredentials, SqliteCredentials
from appliance.link.frames import Welcome, encode
from appliance.store import open_store


async def test_request_reaches_the_box_and_the_answer_comes_back(
    box: BoxFactory, cabinet: Cabinet, tmp_path: Path
) -> None:
    store = open_store(tmp_path / "box")
    try:
        client, box_id = await paired(box, cabinet, credentials=SqliteCredentials(store.local))
        answer = await cabinet.request(
            box_id,
            "GET",
            "/origin?x=1",
            (("X-Edgepbx-Origin", "lan"), ("Accept", "application/json")),
        )
        assert answer.status == 200
        data = answer.json()
        # The link sets the origin in the scope; a header cannot change or even reach it.
        assert data["origin"] == "cloud"
        assert "x-edgepbx-origin" not in data["headers"]
        assert data["query"] == "x=1"
        # The credential is in local.db, not in the repr.
        saved = SqliteCredentials(store.local).load(cabinet.url())
        assert saved is not None and saved.box_id == box_id
        assert saved.credential not in repr(saved)
        assert client.status.connects == 1
    finally:
        store.close()


async def test_large_bodies_stream_both_ways(box: BoxFactory, cabinet: Cabinet) -> None:
    _, box_id = await paired(box, cabinet)
    upload = bytes(range(256)) * 12_000  # 3 MB up
    answer = await cabinet.request(box_id, "PUT", "/config", body=upload)
    assert answer.json() == {"size": len(upload), "sha256": hashlib.sha256(upload).hexdigest()}

    n = 5_000_000  # 5 MB down, as a streamed response: many body frames
    streamed = await cabinet.stream(box_id, "GET", f"/big?n={n}")
    assert streamed.status == 200
    digest, size, pieces = hashlib.sha256(), 0, 0
    async for chunk in streamed.chunks:
        digest.update(chunk)
        size += len(chunk)
        pieces += 1
    expected = bytes(i % 251 for i in range(n))
    assert size == n and digest.hexdigest() == hashlib.sha256(expected).hexdigest()
    assert pieces > 50  # it came in chunks, not as one message


async def test_several_requests_in_flight(box: BoxFactory, cabinet: Cabinet) -> None:
    _, box_id = await paired(box, cabinet, app=make_test_app(concurrency=6))
    answers = await asyncio.gather(*(cabinet.request(box_id, "GET", "/together") for _ in range(6)))
    assert [a.status for a in answers] == [200] * 6


async def test_app_failure_is_a_500_and_the_link_stays(box: BoxFactory, cabinet: Cabinet) -> None:
    client, box_id = await paired(box, cabinet)
    assert (await cabinet.request(box_id, "GET", "/boom")).status == 500
    assert (await cabinet.request(box_id, "GET", "/origin")).status == 200
    assert client.status.connects == 1


async def test_recordings_refused_for_origin_cloud(box: BoxFactory, cabinet: Cabinet) -> None:
    _, box_id = await paired(box, cabinet)
    answer = await cabinet.request(box_id, "GET", "/recordings/r1")
    assert answer.status == 403


async def test_wrong_and_expired_codes_are_refused(box: BoxFactory, cabinet: Cabinet) -> None:
    wrong = await box(code="NOPE-NOPE")
    await wait_for(lambda: wrong.status.phase is LinkPhase.REFUSED)
    assert "unknown pairing code" in wrong.status.detail
    expired_code = cabinet.issue_code(ttl=0)
    expired = await box(code=expired_code)
    await wait_for(lambda: expired.status.phase is LinkPhase.REFUSED)
    assert "expired" in expired.status.detail
    assert cabinet.boxes == {}
    # A refused code leaves the box waiting for a new one; a good code then pairs it.
    expired.pair(cabinet.issue_code())
    await wait_for(lambda: expired.status.phase is LinkPhase.CONNECTED)
    assert len(cabinet.boxes) == 1


async def test_codes_are_single_use(box: BoxFactory, cabinet: Cabinet) -> None:
    code = cabinet.issue_code()
    await paired(box, cabinet)
    first = await box(code=code)
    await wait_for(lambda: first.status.phase is LinkPhase.CONNECTED)
    second = await box(code=code)
    await wait_for(lambda: second.status.phase is LinkPhase.REFUSED)


async def test_unknown_credential_refused(
    box: BoxFactory, cabinet: Cabinet, tmp_path: Path
) -> None:
    client, _ = await paired(box, cabinet)
    other = Cabinet(tmp_path / "other.json")  # knows no boxes
    await other.start()
    try:
        creds = client.credentials
        saved = creds.load(cabinet.url())
        assert saved is not None
        moved = MemoryCredentials()
        moved.save(LinkCredential(other.url(), saved.box_id, saved.credential, 0.0))
        stranger = await box(url=other.url(), credentials=moved)
        await wait_for(lambda: stranger.status.phase is LinkPhase.REFUSED)
        assert "unauthorized" in stranger.status.detail
    finally:
        await other.close()


async def test_link_survives_a_cabinet_restart(
    box: BoxFactory, cabinet: Cabinet, tmp_path: Path
) -> None:
    client, box_id = await paired(box, cabinet)
    port = cabinet.port
    await cabinet.close()
    await wait_for(lambda: client.status.phase is not LinkPhase.CONNECTED)
    await asyncio.sleep(0.3)  # a few failed dials while the cabinet is gone
    # A new cabinet process on the same port, with the registry it kept on disk.
    again = Cabinet(tmp_path / "cabinet.json", ping_interval=0.5, dead_after=2.0)
    await again.start(port=port)
    try:
        await again.wait_connected(box_id, timeout=10)
        assert (await again.request(box_id, "GET", "/origin")).json()["origin"] == "cloud"
        assert client.status.connects == 2
    finally:
        await again.close()


async def test_link_survives_a_dropped_connection(box: BoxFactory, cabinet: Cabinet) -> None:
    client, box_id = await paired(box, cabinet)
    link = cabinet._links[box_id]
    link.ws.transport.abort()  # RST: no closing handshake
    await wait_for(lambda: client.status.connects == 2)
    await cabinet.wait_connected(box_id)
    assert (await cabinet.request(box_id, "GET", "/origin")).status == 200


async def test_request_in_flight_when_the_link_drops(box: BoxFactory, cabinet: Cabinet) -> None:
    _, box_id = await paired(box, cabinet, app=make_test_app(concurrency=99))
    pending = asyncio.create_task(cabinet.request(box_id, "GET", "/together"))
    await asyncio.sleep(0.2)
    cabinet._links[box_id].ws.transport.abort()
    with pytest.raises(LinkUnavailable):
        await pending


async def test_a_silent_cabinet_is_declared_dead(box: BoxFactory) -> None:
    """A peer that completes the handshake and then says nothing (a NAT that dropped the
    mapping looks like this): the heartbeat notices and the box dials again."""
    connections = 0

    async def mute(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        await ws.recv()
        await ws.send(encode(Welcome("mute")))
        await ws.wait_closed()  # reads nothing, answers nothing

    async with serve(mute, "127.0.0.1", 0, ping_interval=None) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/link"
        creds = MemoryCredentials()
        creds.save(LinkCredential(url, "mute", "x" * 20, 0.0))
        client = await box(url=url, credentials=creds, ping_interval=0.2, dead_after=0.6)
        await wait_for(lambda: connections >= 2)
        assert client.status.connects >= 1


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
            *("-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1"),
            *("-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_tls_verified(box: BoxFactory, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    tls_cabinet = Cabinet()
    await tls_cabinet.start(ssl=server_ctx)
    try:
        url = tls_cabinet.url()
        assert url.startswith("wss://")
        untrusted = await box(url=url, code=tls_cabinet.issue_code())
        await wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in untrusted.status.detail)
        assert tls_cabinet.boxes == {}
        trusted = await box(url=url, code=tls_cabinet.issue_code(), ca_file=cert)
        await wait_for(lambda: trusted.status.phase is LinkPhase.CONNECTED)
        box_id = trusted.status.box_id
        assert box_id is not None
        assert (await tls_cabinet.request(box_id, "GET", "/origin")).json()["origin"] == "cloud"
    finally:
        await tls_cabinet.close()


@pytest.mark.parametrize(
    "url", ["ws://10.0.0.1/link", "ws://cabinet.example/link", "http://127.0.0.1/"]
)
def test_plain_ws_only_on_loopback(url: str) -> None:
    with pytest.raises(ValidationError, match="cabinet_url"):
        LinkSettings(cabinet_url=url)


@pytest.mark.parametrize(
    "url", ["ws://127.0.0.1:1/link", "ws://[::1]:1/", "wss://cabinet.example/"]
)
def test_allowed_urls(url: str) -> None:
    assert LinkSettings(cabinet_url=url).cabinet_url == url


@given(st.integers(0, 10_000), st.floats(0, 1, exclude_max=True))
def test_backoff_grows_to_a_cap_with_jitter(attempt: int, rand: float) -> None:
    delay = backoff_delay(attempt, 0.5, 60.0, rand)
    step = min(60.0, 0.5 * 2 ** min(attempt, 62))
    assert step / 2 <= delay <= step  # half fixed, half jitter
    assert delay <= 60.0


async def test_operator_front(box: BoxFactory, cabinet: Cabinet) -> None:
    await cabinet.serve_operator()
    base = f"http://127.0.0.1:{cabinet.operator_port}"
    async with httpx.AsyncClient(base_url=base, trust_env=False) as http:
        code = (await http.post("/pairing-codes")).json()["code"]
        client = await box(code=code)
        await wait_for(lambda: client.status.phase is LinkPhase.CONNECTED)
        [listed] = (await http.get("/boxes")).json()
        assert listed["connected"] is True
        answer = await http.put(f"/boxes/{listed['box_id']}/config", content=b'{"v": 1}')
        assert answer.json()["size"] == 8
        big = await http.get(f"/boxes/{listed['box_id']}/big", params={"n": 300_000})
        assert len(big.content) == 300_000
        missing = await http.get("/boxes/nobody/origin")
        assert missing.status_code == 502
        assert json.loads(missing.content)["detail"].startswith("box nobody")


async def test_request_body_over_the_limit_is_cancelled(box: BoxFactory, cabinet: Cabinet) -> None:
    client, box_id = await paired(box, cabinet, max_request_body=100_000)
    with pytest.raises(LinkUnavailable, match="over 100000 bytes"):
        await cabinet.request(box_id, "PUT", "/config", body=b"x" * 300_000)
    assert (await cabinet.request(box_id, "PUT", "/config", body=b"x" * 1000)).status == 200
    assert client.status.connects == 1  # the stream was refused, not the link


async def test_requests_past_max_streams_are_refused_busy(
    box: BoxFactory, cabinet: Cabinet
) -> None:
    _, box_id = await paired(box, cabinet, app=make_test_app(concurrency=99), max_streams=2)
    waiting = [asyncio.create_task(cabinet.request(box_id, "GET", "/together")) for _ in range(2)]
    await asyncio.sleep(0.2)
    with pytest.raises(LinkUnavailable, match="busy"):
        await cabinet.request(box_id, "GET", "/origin")
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)


async def test_entering_a_new_code_re_pairs(box: BoxFactory, cabinet: Cabinet) -> None:
    client, first = await paired(box, cabinet)
    client.pair(cabinet.issue_code())
    await wait_for(lambda: client.status.box_id not in (None, first))
    second = client.status.box_id
    assert second is not None
    await cabinet.wait_connected(second)
    assert (await cabinet.request(second, "GET", "/origin")).status == 200


async def test_pair_command_while_the_box_waits(
    box: BoxFactory, cabinet: Cabinet, tmp_path: Path
) -> None:
    """The installer pairs with `edgepbx link pair` in another process while the running
    box's link waits unpaired: the link picks the stored credential up by itself."""
    data = tmp_path / "box"
    store = open_store(data)
    try:
        client = await box(credentials=SqliteCredentials(store.local))
        await wait_for(lambda: client.status.phase is LinkPhase.UNPAIRED)
        url = cabinet.url()

        def edgepbx(*args: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "appliance.cli", "link", *args, "--data", str(data)]
            return subprocess.run(command, capture_output=True, text=True, check=False)

        wrong = await asyncio.to_thread(edgepbx, "pair", "NOPE-NOPE", "--cabinet-url", url)
        assert wrong.returncode == 1 and "unknown pairing code" in wrong.stderr
        good = await asyncio.to_thread(edgepbx, "pair", cabinet.issue_code(), "--cabinet-url", url)
        assert good.returncode == 0, good.stderr
        await wait_for(lambda: client.status.phase is LinkPhase.CONNECTED)
        assert good.stdout.strip().endswith(client.status.box_id or "?")
        status = await asyncio.to_thread(edgepbx, "status", "--cabinet-url", url)
        assert status.returncode == 0 and client.status.box_id in status.stdout
        insecure = await asyncio.to_thread(
            edgepbx, "pair", "X", "--cabinet-url", "ws://203.0.113.9/link"
        )
        assert insecure.returncode == 2 and "cabinet_url" in insecure.stderr
    finally:
        store.close()

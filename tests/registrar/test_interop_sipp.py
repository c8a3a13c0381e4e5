"""The registrar against SIPp over real UDP: 50 extensions in a SQLite store register with
digest auth (register_auth.xml), and their bindings are in the store afterwards.

Our side is a SipEndpoint with a 20-line transaction user that hands REGISTER to the
Registrar; SIPp runs in a thread so the event loop keeps serving while SIPp drives it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.phone import KEY, PASSWORD
from support.sipp import SippResult, run_sipp, sipp_available, write_users_csv

from appliance.store import SqliteStore, open_store
from pbx.endpoint import Listen, SipEndpoint
from pbx.registrar import Authenticator, Registrar
from pbx.sip.dialog import new_tag
from pbx.sip.events import Event, RequestReceived
from pbx.sip.message import make_response
from pbx.sip.uas import Capabilities, check_request
from pbx.store import Extension

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(90),
    pytest.mark.skipif(not sipp_available(), reason="sipp is not installed"),
]
REALM = "edgepbx.test"
USERS = [str(n) for n in range(2000, 2050)]


class RegistrarTU:
    """The transaction user: §8.2 checks, then REGISTER to the registrar, else 405."""

    def __init__(self, registrar: Registrar) -> None:
        self.registrar = registrar
        self.caps = Capabilities()
        self.endpoint = SipEndpoint(self)
        self.answers: list[int] = []  # statuses sent to REGISTER

    def on_event(self, event: Event) -> None:
        if not isinstance(event, RequestReceived) or event.request.method == "ACK":
            return
        request = event.request
        answer = check_request(request, self.caps, new_tag())
        if answer is None and request.method == "REGISTER":
            answer = self.registrar.handle(request, event.source, time.time())
        elif answer is None:
            answer = make_response(request, 405, to_tag=new_tag(), extra=[("Allow", "REGISTER")])
        if request.method == "REGISTER":
            self.answers.append(answer.status)
        self.endpoint.send_response(event.key, answer)


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[tuple[RegistrarTU, SqliteStore, int]]:
    store = open_store(tmp_path / "data")
    for number in USERS:
        store.directory.create(Extension(number))
        store.directory.set_password(number, PASSWORD, REALM)
    # MD5 first: SIPp 3.6.1 answers only the first challenge and knows only MD5.
    authenticator = Authenticator(store.directory, REALM, KEY, algorithms=("MD5", "SHA-256"))
    registrar = Registrar(
        store.directory, store.bindings, authenticator, domain=REALM, aliases=["127.0.0.1"]
    )
    tu = RegistrarTU(registrar)
    await tu.endpoint.start([Listen("UDP", "127.0.0.1", 0)])
    try:
        yield tu, store, tu.endpoint.local("UDP")[1]
    finally:
        await tu.endpoint.close()
        store.close()


def sipp_register(port: int, workdir: Path, users: list[str], password: str) -> SippResult:
    csv = write_users_csv(workdir / "users.csv", users, password=password)
    return run_sipp(
        f"127.0.0.1:{port}",
        scenario="register_auth",
        workdir=workdir,
        inf=csv,
        calls=len(users),
        rate=50,
        timeout_s=40,
    )


async def test_fifty_extensions_register_with_digest(
    box: tuple[RegistrarTU, SqliteStore, int], tmp_path: Path
) -> None:
    tu, store, port = box
    result = await asyncio.to_thread(sipp_register, port, tmp_path, USERS, PASSWORD)
    assert result.successful == 50 and result.failed == 0, result.describe()
    assert sorted(tu.answers) == [200] * 50 + [401] * 50  # each challenged once, then in
    now = time.time()
    active = store.bindings.all_active(now)
    assert sorted(b.aor for b in active) == USERS
    for binding in active:
        assert binding.contact.startswith(f"sip:{binding.aor}@127.0.0.1:")
        assert binding.source_transport == "UDP" and binding.source_host == "127.0.0.1"
        assert binding.cseq == 2 and binding.user_agent == "edgepbx-sipp"
        assert 3590 < binding.expires_at - now <= 3600
    assert [b.aor for b in tu.registrar.lookup("2007", now)] == ["2007"]


async def test_a_wrong_password_is_refused(
    box: tuple[RegistrarTU, SqliteStore, int], tmp_path: Path
) -> None:
    tu, store, port = box
    result = await asyncio.to_thread(sipp_register, port, tmp_path, ["2001"], "wrong")
    assert result.failed == 1 and result.successful == 0, result.describe()
    assert tu.answers == [401, 403]  # (SIPp then ends its "call" with a BYE: 405)
    assert store.bindings.all_active(time.time()) == []

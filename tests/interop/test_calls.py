"""Calls through the box (registrar + B2BUA + media relay) with SIPp on both ends.

The caller is a SIPp UAC authenticating as extension 101; the callee a SIPp UAS bound to
extension 102 (a binding put in the store, as a REGISTER would). The box answers on 127.0.0.1
with its real endpoint, store (SQLite in a temp folder) and relay.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.sipp import free_port, run_sipp, start_sipp

from appliance.store import open_store
from pbx.service import SipCore
from pbx.settings import SipSettings
from pbx.store import Binding, Disposition, Extension, Store

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]
PASSWORD = "Secret-101"


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[tuple[SipCore, Store]]:
    store = open_store(tmp_path / "data")
    settings = SipSettings(port=free_port(), t1=0.1, t2=0.8, rtp_port_min=40000, rtp_port_max=40999)
    for number in ("101", "102", "103"):
        store.directory.create(Extension(number=number, display_name=f"User {number}"))
        store.directory.set_password(number, PASSWORD, settings.domain)
    core = SipCore(settings, store, b"k" * 32)
    await core.start()
    yield core, store
    await core.close()
    store.close()


def bind(store: Store, number: str, port: int, transport: str = "UDP") -> None:
    now = time.time()
    store.bindings.put(
        Binding(
            aor=number,
            contact=f"<sip:{number}@127.0.0.1:{port}>",
            expires_at=now + 3600,
            call_id=f"reg-{number}",
            cseq=1,
            source_transport=transport,
            source_host="127.0.0.1",
            source_port=port,
            updated_at=now,
        )
    )


async def test_call_101_to_102_through_the_box(box: tuple[SipCore, Store], tmp_path: Path) -> None:
    core, store = box
    port = core.endpoint.local("UDP")[1]
    with start_sipp(scenario="uas_call", workdir=tmp_path, timeout_s=60) as callee:
        bind(store, "102", callee.port)
        result = await asyncio.to_thread(
            run_sipp,
            f"127.0.0.1:{port}",
            scenario="uac_call_auth",
            workdir=tmp_path,
            calls=3,
            rate=5,
            service="102",
            auth_user="101",
            auth_password=PASSWORD,
            auth_uri=f"102@127.0.0.1:{port}",
            duration_ms=200,
            timeout_s=40,
        )
    assert result.successful == 3 and result.failed == 0, result.describe()
    records = store.cdr.search()
    assert len(records) == 3
    for record in records:
        assert record.disposition is Disposition.ANSWERED
        assert (record.caller_number, record.dialed, record.callee_number) == ("101", "102", "102")
        assert record.hangup_side.value == "caller"
        assert record.codec == "PCMU"
        assert record.billable > 0
    assert not core.calls.calls and not core.relay.sessions

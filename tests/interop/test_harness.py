"""Smoke tests of the interop harness itself (SIPp and Kamailio, no edgepbx code involved).

They prove that tests/support/sipp.py and tests/support/kamailio.py drive the real tools on
this machine and read their results back, so a failing interop test of the PBX points at the
PBX and not at the harness.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.kamailio import AUTH_PASSWORD, AUTH_USER, Kamailio
from support.sipp import SCENARIOS, SippResult, Transport, run_sipp, start_sipp, write_users_csv

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]


def _assert_all_ok(result: SippResult, calls: int) -> None:
    assert result.created == calls, result.describe()
    assert result.successful == calls, result.describe()
    assert result.failed == 0, result.describe()
    assert result.returncode == 0, result.describe()
    assert result.ok


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_builtin_uac_calls_builtin_uas(tmp_path: Path, transport: Transport) -> None:
    with start_sipp(scenario="uas", workdir=tmp_path, transport=transport) as uas:
        result = run_sipp(
            uas.target,
            scenario="uac",
            workdir=tmp_path,
            transport=transport,
            calls=5,
            rate=10,
            max_socket=100,
            timeout_s=20,
        )
    served = uas.stop()  # already stopped by the with block: the same result again

    _assert_all_ok(result, 5)
    assert result.stat_csv.is_file()
    assert result.create_rate > 0
    assert "Successful call" in result.screen
    # the UAS saw the 5 calls (over TCP the call in timewait fails when the client disconnects)
    assert served.created == 5, served.describe()
    if transport == "udp":
        assert served.successful == 5, served.describe()


def test_lost_messages_are_retransmitted(tmp_path: Path) -> None:
    # SIPp drops 10 % of what the caller sends and receives. The built-in uac/uas lose calls
    # under loss by themselves (see the comments in uac_call.xml and uas_call.xml), so this
    # uses our scenarios, with the callee keeping each call 32 s (64*T1, RFC 3261 timer J)
    # instead of 4 s, so that a BYE that needs its 5th retransmission is still answered.
    timewait = '<timewait milliseconds="4000"/>'
    text = (SCENARIOS / "uas_call.xml").read_text()
    assert timewait in text
    uas_xml = tmp_path / "uas_call_32s.xml"
    uas_xml.write_text(text.replace(timewait, '<timewait milliseconds="32000"/>'))

    with start_sipp(scenario=uas_xml, workdir=tmp_path) as uas:
        result = run_sipp(
            uas.target,
            scenario="uac_call",
            workdir=tmp_path,
            calls=20,
            rate=20,
            lost=10,
            timeout_s=40,
        )
        uas.stop(grace_s=0.5)  # its calls linger 32 s: do not wait for them

    assert result.created == 20, result.describe()
    assert result.retransmissions > 0, result.describe()
    _assert_all_ok(result, 20)


@pytest.mark.parametrize("auth", [False, True], ids=["no-auth", "digest"])
def test_kamailio_registrar(tmp_path: Path, auth: bool) -> None:
    users = [f"user{i:03d}" for i in range(20)]
    inf = write_users_csv(tmp_path / "users.csv", users, password=AUTH_PASSWORD)

    with Kamailio(workdir=tmp_path / "kamailio", auth=auth) as kam:
        probe = run_sipp(kam.target, scenario="options", workdir=tmp_path, calls=3, rate=50)
        result = run_sipp(
            kam.target,
            scenario="register_auth" if auth else "register",
            workdir=tmp_path,
            calls=len(users),
            rate=100,
            inf=inf,
        )
        registered = kam.stat("usrloc:registered_users")

    _assert_all_ok(probe, 3)
    _assert_all_ok(result, len(users))
    assert registered == len(users)


def test_kamailio_cpu_is_accounted_over_its_workers(tmp_path: Path) -> None:
    inf = write_users_csv(tmp_path / "users.csv", [f"u{i:05d}" for i in range(2000)])
    with Kamailio(workdir=tmp_path / "kamailio", children=2) as kam:
        assert len(kam.group_pids()) > 3  # main process, 2 UDP workers, timers, ctl...
        before = kam.cpu_seconds()
        result = run_sipp(
            kam.target, scenario="register", workdir=tmp_path, calls=2000, rate=2000, inf=inf
        )
        used = kam.cpu_seconds() - before

    _assert_all_ok(result, 2000)
    assert result.create_rate > 500, result.describe()
    assert used > 0.0
    assert result.cpu_seconds > 0.0


def test_kamailio_rejects_a_wrong_password(tmp_path: Path) -> None:
    inf = write_users_csv(tmp_path / "users.csv", ["alice", "bob"], password="wrong")
    with Kamailio(workdir=tmp_path / "kamailio", auth=True) as kam:
        result = run_sipp(kam.target, scenario="register_auth", workdir=tmp_path, calls=2, inf=inf)
        registered = kam.stat("usrloc:registered_users")

    assert result.failed == 2, result.describe()
    assert registered == 0


@pytest.mark.parametrize("call_auth", [False, True], ids=["open", "proxy-auth"])
def test_calls_through_kamailio(tmp_path: Path, call_auth: bool) -> None:
    with (
        Kamailio(workdir=tmp_path / "kamailio", call_auth=call_auth) as kam,
        start_sipp(scenario="uas_call", workdir=tmp_path) as uas,
    ):
        kam.add_contact("uas", f"sip:uas@{uas.target}")
        result = run_sipp(
            kam.target,
            scenario="uac_call_auth" if call_auth else "uac_call",
            workdir=tmp_path,
            calls=5,
            rate=10,
            service="uas",
            auth_user=AUTH_USER,
            auth_password=AUTH_PASSWORD,
            auth_uri=f"uas@{kam.target}",
            trace_msg=True,
        )
        served = uas.stop()

    _assert_all_ok(result, 5)
    assert served.successful == 5, served.describe()
    messages = result.message_log.read_text()
    # ACK and BYE follow the proxy's Record-Route
    assert "Route: <sip:127.0.0.1:" in messages
    if call_auth:
        assert f'uri="sip:uas@{kam.target}"' in messages


def test_only_loopback_targets(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        run_sipp("192.0.2.1:5060", scenario="uac", workdir=tmp_path, calls=1)
    with pytest.raises(ValueError, match="loopback"):
        start_sipp(scenario="uas", workdir=tmp_path, local_ip="0.0.0.0")

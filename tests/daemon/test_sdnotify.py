"""The sd_notify protocol against a real unix datagram socket bound by the test."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.service.sdnotify import Notifier, parse_notify, watchdog_interval


def bound(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    return sock


def test_ready_status_watchdog_stopping(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with bound(path) as sock:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": str(path)})
        assert notifier.enabled
        assert notifier.ready("serving")
        assert parse_notify(sock.recv(4096)) == {
            "READY": "1",
            "MAINPID": str(os.getpid()),
            "STATUS": "serving",
        }
        notifier.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
        notifier.status("line one\nREADY=1")  # a newline cannot forge another assignment
        assert parse_notify(sock.recv(4096)) == {"STATUS": "line one READY=1"}
        notifier.stopping()
        assert parse_notify(sock.recv(4096)) == {"STOPPING": "1", "STATUS": "stopping"}
        notifier.close()


def test_abstract_socket() -> None:
    name = f"edgepbx-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(2)
        Notifier(f"@{name}").ready()
        assert parse_notify(sock.recv(4096))["READY"] == "1"


def test_without_socket_nothing_happens(tmp_path: Path) -> None:
    assert not Notifier.from_env({}).ready()
    # A socket that vanished (systemd restarted): sending fails quietly.
    assert not Notifier(str(tmp_path / "gone")).watchdog()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "junk"}, None),
        ({"WATCHDOG_USEC": "20000000"}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "123"}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "124"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env, pid=123) == expected


@given(st.binary(max_size=300))
def test_parse_any_datagram(data: bytes) -> None:
    for key, value in parse_notify(data).items():
        assert key.isupper() and "\n" not in value

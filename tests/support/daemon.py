"""``edgepbx run`` as a real subprocess, watched the way systemd watches it: the test binds the
unix datagram socket named by ``NOTIFY_SOCKET`` and reads READY=1, STATUS=, WATCHDOG=1 and
STOPPING=1 from it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from appliance.service.sdnotify import parse_notify
from support.agent import loopback_binding
from support.ports import free_port

SIP_OPTIONS = (
    "OPTIONS sip:{host}:{port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP {me};branch=z9hG4bK{branch}\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:probe@{me}>;tag={tag}\r\n"
    "To: <sip:{host}:{port}>\r\n"
    "Call-ID: {branch}@probe\r\n"
    "CSeq: 1 OPTIONS\r\n"
    "Content-Length: 0\r\n\r\n"
)


def sip_options(host: str, port: int, timeout: float = 2.0) -> str | None:
    """Send one OPTIONS over UDP; the status line of the answer, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        sock.settimeout(timeout)
        me = "{}:{}".format(*sock.getsockname())
        branch = uuid.uuid4().hex
        text = SIP_OPTIONS.format(host=host, port=port, me=me, branch=branch, tag=branch[:8])
        sock.sendto(text.encode(), (host, port))
        try:
            data = sock.recv(65535)
        except TimeoutError:
            return None
    return data.split(b"\r\n", 1)[0].decode()


class BoxDaemon:
    """One ``edgepbx run`` with a temp data folder and free ports."""

    def __init__(
        self, data: Path, *, watchdog_usec: int = 2_000_000, extra: list[str] | None = None
    ) -> None:
        self.data = data
        self.sip_port = free_port()
        self.notify_path = data.parent / f"notify-{uuid.uuid4().hex[:8]}.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.notify_path))
        self.notifications: list[dict[str, str]] = []
        env = dict(os.environ)
        env |= {
            "NOTIFY_SOCKET": str(self.notify_path),
            "WATCHDOG_USEC": str(watchdog_usec),
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("WATCHDOG_PID", None)
        argv = [
            sys.executable,
            "-m",
            "appliance.cli",
            "run",
            "--data",
            str(data),
            "--port",
            str(self.sip_port),
            "--api-port",
            "0",
            "--cabinet-port",
            "0",
            "--cabinet-operator-port",
            "0",
            "--child-watchdog",
            "3",
            *(extra or []),
        ]
        self.log = open(data.parent / "daemon.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.sock.close()
        self.notify_path.unlink(missing_ok=True)
        self.log.close()

    def output(self) -> str:
        self.log.flush()
        return (self.data.parent / "daemon.log").read_text(errors="replace")

    def wait_notify(
        self, check: Callable[[dict[str, str]], bool], timeout: float = 30.0
    ) -> dict[str, str]:
        """The first notification (already received or coming) for which ``check`` holds."""
        for fields in self.notifications:
            if check(fields):
                return fields
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"no such notification; got {self.notifications}\n{self.output()}"
                )
            self.sock.settimeout(min(left, 0.5))
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"edgepbx run exited {self.process.returncode}:\n{self.output()}"
                    ) from None
                continue
            fields = parse_notify(data)
            self.notifications.append(fields)
            if check(fields):
                return fields

    def children(self) -> dict[str, int]:
        """The supervisor's child processes by part name (core, manager)."""
        found = {}
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            for pid in (task / "children").read_text().split():
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if b"part" in cmdline:
                    found[cmdline[cmdline.index(b"part") + 1].decode()] = int(pid)
        return found


def put_binding(data_dir: Path, number: str, host: str, port: int) -> None:
    """Register ``number`` at a UDP contact (what a REGISTER would store), before the box
    starts (the core loads bindings into memory when it opens the store)."""
    from appliance.store import open_store  # noqa: PLC0415

    store = open_store(data_dir)
    try:
        store.bindings.put(loopback_binding(number, port, host=host))
    finally:
        store.close()

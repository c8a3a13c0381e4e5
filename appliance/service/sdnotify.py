"""systemd's notify protocol (sd_notify(3)), both ends, without libsystemd.

A service sends newline-separated ``KEY=VALUE`` assignments in one datagram to the unix
socket named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace):
``READY=1`` once it serves, ``STATUS=...`` for humans, ``WATCHDOG=1`` at least every
``$WATCHDOG_USEC`` microseconds (we ping at half of it, as sd_watchdog_enabled(3) advises),
``STOPPING=1`` when it begins to shut down.

``edgepbx run`` is a sender toward systemd and a receiver for its own child processes: it
gives each child a socket of its own and the same protocol, so a child's readiness and
liveness are read exactly the way systemd reads the box's.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path

__all__ = ["Notifier", "parse_notify", "socket_address", "watchdog_interval"]


def socket_address(name: str) -> str | bytes:
    """``$NOTIFY_SOCKET`` as a socket address (``@x`` is the abstract socket ``\\0x``)."""
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    return name


def watchdog_interval(environ: Mapping[str, str], pid: int | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or None when the
    watchdog is off or meant for another process (``WATCHDOG_PID``)."""
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = environ.get("WATCHDOG_PID", "")
    if owner and owner.isdigit() and int(owner) != (os.getpid() if pid is None else pid):
        return None
    return int(usec) / 2 / 1_000_000


def parse_notify(datagram: bytes) -> dict[str, str]:
    """The assignments of one notify datagram; malformed lines are skipped."""
    fields: dict[str, str] = {}
    for line in datagram.decode("utf-8", "replace").split("\n"):
        key, sep, value = line.partition("=")
        if sep and key and key.replace("_", "").isalnum() and key.isupper():
            fields[key] = value
    return fields


class Notifier:
    """Sends notifications to ``$NOTIFY_SOCKET``; does nothing when it is not set (the box
    started by hand). Sending never raises: a lost notification must not stop the box."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        if address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, **fields: str | int) -> bool:
        if self._sock is None or self.address is None:
            return False
        text = "\n".join(
            f"{key}={str(value).replace(chr(10), ' ')}" for key, value in fields.items()
        )
        try:
            self._sock.sendto(text.encode(), socket_address(self.address))
        except OSError:
            return False
        return True

    def ready(self, status: str | None = None, **extra: str | int) -> bool:
        fields: dict[str, str | int] = {"READY": 1, "MAINPID": os.getpid()}
        if status is not None:
            fields["STATUS"] = status
        return self.notify(**fields, **extra)

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def stopping(self, status: str = "stopping") -> bool:
        return self.notify(STOPPING=1, STATUS=status)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def bind_listener(path: Path) -> socket.socket:
    """A datagram socket at ``path`` for a child's notifications (non-blocking)."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    sock.bind(str(path))
    sock.setblocking(False)
    return sock

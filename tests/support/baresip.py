"""Run baresip 1.0 (Debian ``baresip-core``) as a phone on loopback, driven over ``ctrl_tcp``.

Each instance gets its own config folder (``-f``) in the test's ``workdir``; it never touches a
sound card: the audio source is ``aufile`` (a WAV file) or ``aubridge``, and the ``sndfile``
filter can dump what it hears (decoded) and sends (encoded) to ``dump-<time>-{dec,enc}.wav``.
Commands and events go over ``ctrl_tcp`` (netstrings of JSON) on a 127.0.0.1 port, so the
test drives it from asyncio without blocking the loop. Every address is 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.ports import free_port

BARESIP = shutil.which("baresip")
MODULES = Path("/usr/lib/baresip/modules")
HOST = "127.0.0.1"
# baresip quits by itself after this long (-t), even if the test process died.
LIFETIME_S = 80
START_ATTEMPTS = 3


@dataclass(frozen=True)
class PhoneConfig:
    """One baresip phone registered as ``user`` to the box at ``registrar_port``."""

    user: str
    password: str
    registrar_port: int
    audio_source: str  # e.g. "aufile,/tmp/tone.wav" or "aubridge,dev"
    audio_player: str  # the player must exist; "aubridge,<other name>" plays to nothing
    dump_dir: Path | None = None  # load sndfile and write the call's audio here
    answer_auto: bool = False
    rtp_ports: str = "42000-43999"
    codecs: tuple[str, ...] = ("g711.so",)  # only G.711: PCMU at 8 kHz end to end


@dataclass
class Baresip:
    """A running baresip: its ports, log, and the ctrl_tcp connection."""

    name: str
    proc: subprocess.Popen[bytes]
    sip_port: int
    log: Path
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    events: list[dict[str, Any]] = field(default_factory=list)
    _tokens: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def _receive(self) -> dict[str, Any]:
        """One netstring (``<len>:<json>,``) from ctrl_tcp."""
        length = int((await self.reader.readuntil(b":"))[:-1])
        payload = await self.reader.readexactly(length + 1)
        message: dict[str, Any] = json.loads(payload[:-1])
        return message

    async def command(self, command: str, params: str = "", timeout: float = 5) -> str:
        """Run a menu command (as typed after ``/``); returns its text answer."""
        token = str(next(self._tokens))
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self.writer.write(b"%d:%s," % (len(body), body))
        await self.writer.drain()
        async with asyncio.timeout(timeout):
            while True:
                message = await self._receive()
                if message.get("response") and message.get("token") == token:
                    assert message.get("ok"), (command, message)
                    return str(message.get("data", ""))
                self.events.append(message)

    async def wait_event(self, kind: str, timeout: float = 10) -> dict[str, Any]:
        """The first event of type ``kind`` (e.g. ``CALL_ESTABLISHED``), past or coming."""
        async with asyncio.timeout(timeout):
            for n in itertools.count():
                while n >= len(self.events):
                    message = await self._receive()
                    if message.get("event"):
                        self.events.append(message)
                if self.events[n].get("type") == kind:
                    return self.events[n]
        raise AssertionError("unreachable")

    def describe(self) -> str:
        return f"--- baresip {self.name} log ---\n{self.log.read_text(errors='replace')}"


def write_config(config: PhoneConfig, folder: Path, sip_port: int, ctrl_port: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    modules = [*config.codecs, "aufile.so", "aubridge.so"]
    if config.dump_dir is not None:
        modules.append("sndfile.so")
    lines = [
        f"sip_listen {HOST}:{sip_port}",
        # Otherwise baresip takes the default route's address (eth0) as its own: RTP sockets
        # and the SDP's c= line would leave loopback even with sip_listen on 127.0.0.1.
        f"net_interface {HOST}",
        f"audio_source {config.audio_source}",
        f"audio_player {config.audio_player}",
        "audio_alert aubridge,alert",  # ring tones go nowhere
        f"rtp_ports {config.rtp_ports}",
        "call_local_timeout 30",
        f"module_path {MODULES}",
        *(f"module {m}" for m in modules),
        "module_tmp account.so",
        "module_app menu.so",
        "module_app ctrl_tcp.so",
        f"ctrl_tcp_listen {HOST}:{ctrl_port}",
    ]
    if config.dump_dir is not None:
        lines.append(f"snd_path {config.dump_dir}")
    (folder / "config").write_text("\n".join(lines) + "\n")
    account = (
        f"<sip:{config.user}@{HOST}:{config.registrar_port};transport=udp>"
        f";auth_pass={config.password};regint=3600"
    )
    if config.answer_auto:
        account += ";answermode=auto"
    (folder / "accounts").write_text(account + "\n")


@contextlib.asynccontextmanager
async def run_baresip(config: PhoneConfig, workdir: Path) -> AsyncIterator[Baresip]:
    """Start baresip with its own config folder under ``workdir``; stopped by PID on exit."""
    assert BARESIP is not None, "baresip is not installed"
    name = f"baresip-{config.user}"
    folder, log = workdir / name, workdir / f"{name}.log"
    for _ in range(START_ATTEMPTS):
        # Three ports in a row: SIP (UDP and TCP), the TLS transport baresip always opens on
        # the next port, and ctrl_tcp.
        sip_port = free_port(span=3)
        write_config(config, folder, sip_port, sip_port + 2)
        proc = _spawn(folder, workdir, log)
        try:
            connection = await _connect(sip_port + 2, proc, log)
        except BaseException:
            await _stop(proc)
            raise
        if connection is not None:
            break
        # It died while starting: a port was taken between free_port() and its bind.
    else:
        raise RuntimeError(f"baresip did not start:\n{log.read_text(errors='replace')}")
    reader, writer = connection
    try:
        yield Baresip(name, proc, sip_port, log, reader, writer)
    finally:
        writer.close()
        await _stop(proc)


def _spawn(folder: Path, workdir: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [BARESIP or "baresip", "-v", "-s", "-t", str(LIFETIME_S), "-f", str(folder)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={"HOME": str(workdir), "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            start_new_session=True,
        )


async def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)  # baresip ends its calls and unregisters on SIGTERM
    try:
        await asyncio.to_thread(proc.wait, 5)
    except subprocess.TimeoutExpired:
        proc.kill()
        await asyncio.to_thread(proc.wait, 5)


async def _connect(
    port: int, proc: subprocess.Popen[bytes], log: Path
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """ctrl_tcp listens once baresip has loaded its modules: retry until it does.
    None if baresip exited first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while proc.poll() is None:
        try:
            return await asyncio.open_connection(HOST, port)
        except OSError:
            if loop.time() > deadline:
                raise RuntimeError(f"no ctrl_tcp:\n{log.read_text(errors='replace')}") from None
            await asyncio.sleep(0.05)
    return None

"""Kamailio 5.6 (Debian ``kamailio``) as a reference registrar + stateful proxy on loopback.

The config is tests/perf/kamailio.cfg (adapted from the company yardstick, so our benchmarks can
be compared with its numbers); address, port, workers, auth and the ctl socket are set with
``-A`` defines. Kamailio runs in the foreground (``-DD -E``) in its own session, so its process
group (main process plus forked workers) is exactly the set of processes to account and stop.

    with Kamailio(workdir=tmp_path, auth=True) as kam:
        run_sipp(kam.target, scenario="register_auth", ...)
        kam.stat("usrloc:registered_users")
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from .ports import check_loopback, free_port

KAMAILIO = "kamailio"
CONFIG = Path(__file__).resolve().parent.parent / "perf" / "kamailio.cfg"
AUTH_USER = "bench"  # the config accepts any digest user name; this is the conventional one
AUTH_PASSWORD = "secret"
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_UNIX_PATH_MAX = 100  # sun_path is 108 bytes; keep a margin


class KamailioError(RuntimeError):
    """Kamailio did not start or did not answer."""


class Kamailio:
    """One Kamailio instance; ``start()``/``stop()`` or use it as a context manager.

    ``auth`` challenges REGISTER (digest, any user name, password ``password``); ``call_auth``
    challenges INVITE with 407 the same way. ``dialog`` loads the dialog module (the yardstick's
    "with dialog" runs). ``tcp`` adds a TCP listener on the same port.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        workdir: Path,
        auth: bool = False,
        call_auth: bool = False,
        password: str = AUTH_PASSWORD,
        children: int = 2,
        tcp: bool = False,
        dialog: bool = False,
        host: str = "127.0.0.1",
        shm_mb: int = 64,
        pkg_mb: int = 8,
        config: Path = CONFIG,
    ) -> None:
        self.host = check_loopback(host)
        if ":" in self.host:
            raise ValueError("the Kamailio config listens on IPv4 only")
        self.port = port if port is not None else free_port(self.host)
        self.workdir = workdir
        self.auth, self.call_auth, self.password = auth, call_auth, password
        self.children, self.tcp, self.dialog = children, tcp, dialog
        self.shm_mb, self.pkg_mb = shm_mb, pkg_mb
        self.config = config
        self.log_path = workdir / "kamailio.log"
        self.pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._rundir: Path | None = None
        self._own_rundir = False

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ctl_socket(self) -> Path:
        assert self._rundir is not None, "not started"
        return self._rundir / "kamailio_ctl"

    def _command(self) -> list[str]:
        cmd = [KAMAILIO, "-f", str(self.config), "-DD", "-E"]
        cmd += ["-m", str(self.shm_mb), "-M", str(self.pkg_mb)]
        assert self._rundir is not None
        cmd += ["-Y", str(self._rundir), "-P", str(self._rundir / "kamailio.pid")]
        cmd += ["-w", str(self.workdir)]
        defines = [
            f"SIP_IP={self.host}",
            f"SIP_PORT={self.port}",
            f"CHILDREN={self.children}",
            f'CTLSOCK="unix:{self.ctl_socket}"',
            f'AUTH_PASSWORD="{self.password}"',
        ]
        flags = {
            "WITH_AUTH": self.auth,
            "WITH_CALL_AUTH": self.call_auth,
            "WITH_TCP": self.tcp,
            "WITH_DIALOG": self.dialog,
        }
        defines += [name for name, on in flags.items() if on]
        for define in defines:
            cmd += ["-A", define]
        return cmd

    def start(self, timeout_s: float = 15.0) -> Self:
        if shutil.which(KAMAILIO) is None:
            raise KamailioError("kamailio is not installed (Debian package kamailio: `make deb`)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._rundir = self.workdir
        if len(str(self.workdir / "kamailio_ctl")) > _UNIX_PATH_MAX:
            # pytest's tmp_path can be too long for a unix socket path
            self._rundir = Path(tempfile.mkdtemp(prefix="kam-"))
            self._own_rundir = True
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                self._command(),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: main process + workers
            )
        self.pid = self._proc.pid
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        """Until Kamailio answers an OPTIONS to itself with 200 and its ctl socket exists."""
        deadline = time.monotonic() + timeout_s
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((self.host, 0))
            s.settimeout(0.2)
            while time.monotonic() < deadline:
                if self._proc is None or self._proc.poll() is not None:
                    raise KamailioError(f"kamailio exited at startup:\n{self.log_tail()}")
                s.sendto(self._options(s.getsockname()[1]), (self.host, self.port))
                try:
                    reply = s.recv(65535)
                except (TimeoutError, ConnectionRefusedError):
                    continue
                if reply.startswith(b"SIP/2.0 200") and self.ctl_socket.exists():
                    return
                time.sleep(0.1)
        raise KamailioError(f"kamailio did not answer on {self.target}:\n{self.log_tail()}")

    def _options(self, local_port: int) -> bytes:
        return (
            f"OPTIONS sip:{self.target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.host}:{local_port};branch=z9hG4bK{secrets.token_hex(8)}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{self.host}>;tag={secrets.token_hex(4)}\r\n"
            f"To: <sip:{self.target}>\r\n"
            f"Call-ID: {secrets.token_hex(8)}@{self.host}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()

    def group_pids(self) -> list[int]:
        """Live processes of Kamailio's process group (the main process and its workers)."""
        if self.pid is None:
            return []
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (stat := _stat_fields(int(entry))) and int(stat[2]) == self.pid:
                pids.append(int(entry))
        return pids

    def cpu_seconds(self) -> float:
        """User + system CPU of the whole group so far, workers included.

        Live processes from /proc/<pid>/stat, plus the children the main process has already
        reaped (its cutime/cstime), so a worker that exits is not lost.
        """
        if self.pid is None:
            return 0.0
        total = 0
        for pid in self.group_pids():
            if stat := _stat_fields(pid):
                total += int(stat[11]) + int(stat[12])
                if pid == self.pid:
                    total += int(stat[13]) + int(stat[14])
        return total / _CLK_TCK

    def rpc(self, *args: str) -> str:
        """Run a kamcmd RPC command on the ctl socket (e.g. ``rpc("ul.dump")``)."""
        out = subprocess.run(
            ["kamcmd", "-s", f"unix:{self.ctl_socket}", *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if out.returncode != 0 or out.stdout.startswith("error:"):
            raise KamailioError(f"kamcmd {' '.join(args)}: {out.stdout}{out.stderr}")
        return out.stdout.strip()

    def stat(self, name: str) -> int | None:
        """One statistic, e.g. ``stat("usrloc:registered_users")``."""
        group = name.partition(":")[0] + ":"
        for line in self.rpc("stats.get_statistics", group).splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() == name:
                return int(value.strip())
        return None

    def add_contact(self, user: str, contact: str, expires: int = 3600) -> None:
        """Register ``contact`` for ``user`` through RPC (for a SIPp UAS that cannot REGISTER)."""
        # ul.add table AoR contact expires q path flags cflags methods; path "0" means none
        self.rpc("ul.add", "location", user, contact, str(expires), "1.0", "s:0", "0", "0", "0")

    def log_tail(self, chars: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def stop(self, grace_s: float = 5.0) -> int | None:
        """SIGTERM to the main process (it stops its workers), SIGKILL past ``grace_s``.

        Workers that outlive the main process are killed one by one, by PID.
        """
        proc = self._proc
        if proc is None:
            return None
        workers = [pid for pid in self.group_pids() if pid != proc.pid]
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        deadline = time.monotonic() + 2.0
        for pid in workers:
            while _stat_fields(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if (stat := _stat_fields(pid)) and int(stat[2]) == proc.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self._own_rundir and self._rundir is not None:
            shutil.rmtree(self._rundir, ignore_errors=True)
        return proc.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: [0] state, [2] pgrp, [11] utime ..."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields

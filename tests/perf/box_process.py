"""The box as a benchmark peer: provisioned through its store, started as its own process with
``edgepbx run``, measured from outside (CPU from /proc, stacks with py-spy), stopped by PID.

* :func:`provision` writes extensions (one shared password) into a data folder with
  :func:`appliance.store.open_store`, as the admin UI would, before the box starts
  (``support.daemon.put_binding`` adds a registration: a SIPp UAS cannot REGISTER).
* :class:`BoxProcess` runs ``edgepbx run --host --port --data [--rtp-ports]`` in its own
  session and waits for its start-up banner. ``edgepbx run`` supervises the SIP core as a
  child process (appliance/daemon.py): CPU is that child's with its registrar workers',
  memory and profiles are the core's.
* :func:`py_spy` samples the box for a few seconds (``py-spy record -f raw``) and
  :func:`top_frames` condenses the collapsed stacks into self and inclusive shares.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

from support.ports import bindable

BIN = Path(sys.executable).parent
EDGEPBX = BIN / "edgepbx"
PY_SPY = BIN / "py-spy"
REALM = "edgepbx.local"  # SipSettings.domain, the digest realm of `edgepbx run`
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------ provisioning


def provision(
    data_dir: Path,
    numbers: Iterable[str],
    password: str,
    *,
    call_limit: int = 2,
    realm: str = REALM,
) -> int:
    """Create the extensions (skipping existing ones) with ``password``; returns how many
    were created. Imported here so a plain import of this module stays light."""
    from appliance.store import open_store  # noqa: PLC0415
    from pbx.store import Extension  # noqa: PLC0415

    store = open_store(data_dir)
    created = 0
    try:
        for number in numbers:
            if store.directory.get(number) is not None:
                continue
            store.directory.create(Extension(number=number, call_limit=call_limit))
            store.directory.set_password(number, password, realm)
            created += 1
    finally:
        store.close()
    return created


def copy_data(template: Path, target: Path) -> Path:
    """A fresh copy of a provisioned (closed) data folder, so every trial starts alike."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(template, target)
    return target


# ------------------------------------------------------------------------------ the process


def process_cpu(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds; 0.0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (none once it is gone)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            found.extend(int(c) for c in (task / "children").read_text().split())
    return found


def process_rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class BoxError(RuntimeError):
    """The box did not come up."""


def free_sip_port(host: str = "127.0.0.1") -> int:
    """A port free for UDP and TCP, from 10000-19999: below the box's RTP ranges (20000+) and
    the range SIPp and Kamailio take theirs from (support.sipp.free_port: 20000-31999), so
    the peers of one trial do not pick each other's ports."""
    for _ in range(200):
        port = random.randrange(10000, 20000)
        if all(bindable(host, port, kind) for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM)):
            return port
    raise BoxError(f"no free port in 10000-19999 on {host}")


def sipp_ports(host: str = "127.0.0.1") -> dict[str, int]:
    """``local_port`` and ``media_port`` (4 in a row) for start_sipp/run_sipp from 10000-19999:
    support.sipp's own picks (20000-31999) can land in the box's RTP range and take a port
    pair away from it. (SIPp's control port still comes from there: rarely, one pair.)"""
    for _ in range(200):
        base = random.randrange(10000, 19996)
        if all(bindable(host, p, socket.SOCK_DGRAM) for p in range(base, base + 4)):
            return {"local_port": free_sip_port(host), "media_port": base}
    raise BoxError(f"no 4 free ports in 10000-19999 on {host}")


class BoxProcess:
    """``edgepbx run`` on ``host:port`` with data in ``data_dir``, for one trial. Without a
    ``port`` one is picked (:func:`free_sip_port`), and picked again if another program
    binds it before the box does (the machine is shared)."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        rtp_ports: tuple[int, int] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self._pick = port is None
        self.port = free_sip_port(host) if port is None else port
        self.rtp_ports = rtp_ports
        self.log_path = log_path or data_dir.parent / "box.log"
        self.banner = ""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    def command(self) -> list[str]:
        args = ["run", "--host", self.host, "--port", str(self.port), "--data", str(self.data_dir)]
        # The API and the embedded cabinet on any free port: trials must not collide.
        args += ["--api-port", "0", "--cabinet-port", "0", "--cabinet-operator-port", "0"]
        if self.rtp_ports is not None:
            args += ["--rtp-ports", f"{self.rtp_ports[0]}-{self.rtp_ports[1]}"]
        return [str(EDGEPBX), *args]

    @property
    def core_pid(self) -> int:
        """The SIP core's process (a child of ``edgepbx run``); the supervisor's own pid
        until the child is found."""
        root = self.pid
        with contextlib.suppress(OSError):
            for child in children(root):
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
                if b"part" in cmdline and b"core" in cmdline:
                    return child
        return root

    def start(self, timeout_s: float = 30.0) -> Self:
        for attempt in range(5):
            try:
                return self._start(timeout_s)
            except BoxError as exc:
                if not (self._pick and "Address already in use" in str(exc)) or attempt == 4:
                    raise
                self.port = free_sip_port(self.host)
        raise AssertionError("unreachable")

    def _start(self, timeout_s: float) -> Self:
        with self.log_path.open("ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(self.command())}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,  # logging goes to stderr; a file never blocks the box
                start_new_session=True,  # a Ctrl-C on pytest does not reach it; we stop it
            )
        try:
            self._wait_banner(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_banner(self, timeout_s: float) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        out = b""
        while b"is running" not in out:
            left = deadline - time.monotonic()
            if left <= 0 or self._proc.poll() is not None:
                raise BoxError(f"edgepbx did not start:\n{out.decode()}\n{self.log_tail()}")
            if select.select([fd], [], [], min(left, 0.5))[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    continue
                out += chunk
        # the banner is a few lines printed at once; the box prints nothing else on stdout
        self.banner = out.decode(errors="replace")

    def cpu_seconds(self) -> float:
        """The SIP core's CPU with its registrar workers' (its children)."""
        if self._proc is None:
            return 0.0
        core = self.core_pid
        return process_cpu(core) + sum(process_cpu(pid) for pid in children(core))

    def rss_mb(self) -> float:
        return process_rss_mb(self.core_pid) if self._proc is not None else 0.0

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM (the box hangs up its calls and commits its call records), SIGKILL past
        ``grace_s``."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
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


# ------------------------------------------------------------------------------ profiling


def py_spy(pid: int, seconds: float, out: Path, *, rate: int = 100) -> subprocess.Popen[bytes]:
    """Start sampling ``pid`` for ``seconds`` into ``out`` (collapsed stacks, one line per
    distinct stack with its sample count). Wait on the returned process.

    py-spy pauses the box for each sample (tens of microseconds, ~1 % at 100 Hz): with
    ``--nonblocking`` it lost about 40 % of the samples of a busy loop (stacks that changed
    while being read), and those losses favour the slow, stable frames."""
    command = [str(PY_SPY), "record", "-p", str(pid), "-d", str(max(1, round(seconds)))]
    command += ["-r", str(rate), "-f", "raw", "-o", str(out), "--threads"]
    log = out.with_suffix(".log").open("wb")
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)


def _frame_name(frame: str) -> str:
    """``handle (pbx/registrar.py:231)`` -> ``handle (pbx/registrar.py)``: lines differ per
    sample site, functions are what one reads."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = path.split("/main/", 1)[-1]
    return f"{name} ({path})" if path else name


def top_frames(raw: Path, n: int = 25) -> dict[str, object]:
    """Self time (the frame on top of the stack) and inclusive time (anywhere on it) per
    function, in % of the busy samples of the main thread (the event loop, which carries SIP
    and media). Samples of other threads (the call record writer) are only counted per thread.
    Idle samples (the loop waiting in epoll) are not recorded by py-spy without ``--idle``."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    if not raw.exists():
        return {"samples": 0}
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0] if frames[0].startswith(("thread", "process")) else "?"
        threads[thread] += count
        names = [_frame_name(f) for f in frames if not f.startswith(("thread", "process"))]
        if not names:
            continue
        if "MainThread" not in thread:
            continue
        total += count
        self_time[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    share = lambda c: round(100 * c / total, 1) if total else 0.0  # noqa: E731
    return {
        "samples": total,
        "threads": dict(threads.most_common()),
        "self %": [(name, share(c)) for name, c in self_time.most_common(n)],
        "inclusive %": [(name, share(c)) for name, c in inclusive.most_common(n)],
    }

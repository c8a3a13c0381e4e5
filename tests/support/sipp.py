"""Run SIPp (Debian ``sip-tester`` 3.6.1) against loopback peers, bounded in time and count.

``run_sipp`` runs one SIPp to completion (a client, or a server with ``calls``) and parses its
statistics; ``start_sipp`` keeps one in the background (typically a UAS that must answer while
another process places calls). Every file SIPp writes goes to the caller's ``workdir``
(pytest's ``tmp_path``), under a per-run ``tag``:

    <tag>.csv          -trace_stat rows, every 200 ms plus a final one (``SippResult.stat_csv``)
    <tag>_errors.log   -trace_err (only created when SIPp saw something unexpected)
    <tag>_screen.log   -trace_screen, the final screens
    <tag>_messages.log -trace_msg, when ``trace_msg=True``
    <tag>.out          stdout/stderr (SIPp's live screen)

SIPp's own sockets all stay on loopback: the SIP socket on ``local_ip``, the media/echo sockets on
``media_ip``, and the control socket (which SIPp would otherwise open on 0.0.0.0:8888) on
127.0.0.1 at a free port. Targets other than loopback addresses are refused.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Self, TypedDict, Unpack

from support.ports import bindable, check_loopback, free_port

SIPP = "sipp"
SCENARIOS = Path(__file__).resolve().parent.parent / "interop" / "scenarios"
BUILTIN_SCENARIOS = frozenset(
    {"uac", "uas", "regexp", "branchc", "branchs", "3pcc-C-A", "3pcc-C-B", "3pcc-A", "3pcc-B"}
)

# "udp"/"tcp" are SIPp's one-socket modes (u1/t1); "un"/"tn" open one socket per call.
# A TCP UAS counts the call it still holds in timewait as failed when the client closes the
# connection: judge TCP runs by the client's counts.
Transport = Literal["udp", "tcp", "u1", "un", "t1", "tn"]
_TRANSPORT_FLAG = {"udp": "u1", "tcp": "t1"}

# Past SIPp's own -timeout, how long it may take to write its files before it is killed.
KILL_GRACE_S = 5.0
# After SIGUSR1 SIPp finishes ongoing calls; the built-in uas holds each call 4 s in timewait.
STOP_GRACE_S = 10.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class SippError(RuntimeError):
    """SIPp could not be started or did not come up."""


@dataclass(frozen=True)
class SippResult:
    """What one SIPp run did, read back from its final statistics row."""

    returncode: int  # 0 all calls ok, 1 some failed, 97 internal exit, 99 no calls, 255 fatal
    successful: int
    failed: int
    created: int  # calls created (outgoing for a UAC, incoming for a UAS)
    retransmissions: int
    elapsed: float  # seconds on SIPp's clock, start to last statistics row
    create_rate: float  # calls created per second while creating (0.0 if none)
    stat_csv: Path
    error_log: Path
    message_log: Path  # only written with trace_msg=True
    screen: str  # final screens (-trace_screen), else the last one printed on stdout
    timed_out: bool  # we had to kill SIPp (it outlived its -timeout)
    wall: float  # seconds from start to exit, our clock
    cpu_seconds: float  # user + system CPU of the SIPp process
    command: tuple[str, ...]
    stats: dict[str, str] = field(default_factory=dict)  # the last statistics row, raw

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.failed == 0 and not self.timed_out

    def counter(self, name: str) -> int:
        """A cumulative counter of the last row, e.g. ``counter("FailedMaxUDPRetrans")``."""
        key = name if name.endswith(")") else f"{name}(C)"
        return int(self.stats.get(key) or 0)

    def errors(self) -> str:
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""

    def describe(self) -> str:
        """A short report for assertion messages."""
        head = (
            f"sipp rc={self.returncode} created={self.created} ok={self.successful} "
            f"failed={self.failed} retrans={self.retransmissions} elapsed={self.elapsed:.2f}s "
            f"timed_out={self.timed_out}\n$ {' '.join(self.command)}"
        )
        return "\n".join(s for s in (head, self.screen[-3000:], self.errors()[-3000:]) if s)


# ------------------------------------------------------------------------------ ports, addresses


def split_target(target: str) -> tuple[str, int | None]:
    """``"127.0.0.1:5070"``, ``"[::1]:5070"``, ``"::1"`` or ``"127.0.0.1"`` -> (host, port)."""
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        port = rest.removeprefix(":")
        return check_loopback(host), int(port) if port else None
    if target.count(":") == 1:
        host, port = target.split(":")
        return check_loopback(host), int(port)
    return check_loopback(target), None


def write_users_csv(
    path: Path, users: Iterable[str], *, password: str | None = None, order: str = "SEQUENTIAL"
) -> Path:
    """An injection file for register.xml / register_auth.xml: ``user;auth`` per line.

    field0 is the AoR user. field1 is a whole ``[authentication ...]`` keyword: SIPp 3.6.1 cannot
    nest ``[field0]`` inside ``[authentication]`` in a scenario, but it does expand the keyword
    when it comes from the injection file, so each user digests with its own name. Without a
    password, field1 is a bare ``[authentication]`` and SIPp uses -au/-ap.
    """
    lines = [order]
    for user in users:
        auth = f" username={user} password={password}" if password else ""
        lines.append(f"{user};[authentication{auth}]")
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------------------ running SIPp


def _resolve_scenario(scenario: str | Path) -> list[str]:
    if isinstance(scenario, str) and scenario in BUILTIN_SCENARIOS:
        return ["-sn", scenario]
    path = Path(scenario)
    if not path.exists() and isinstance(scenario, str) and "/" not in scenario:
        path = SCENARIOS / (scenario if scenario.endswith(".xml") else f"{scenario}.xml")
    if not path.is_file():
        raise FileNotFoundError(f"SIPp scenario not found: {scenario}")
    return ["-sf", str(path.resolve())]


def _scenario_stem(scenario: str | Path) -> str:
    return str(scenario) if str(scenario) in BUILTIN_SCENARIOS else Path(scenario).stem


def _unique_tag(workdir: Path, base: str) -> str:
    for n in range(1, 10_000):
        tag = f"{base}-{n}"
        if not any(workdir.glob(f"{tag}[._]*")):
            return tag
    raise SippError(f"too many SIPp runs named {base} in {workdir}")


class SippProcess:
    """A SIPp started by ``start_sipp``; stop it (or leave the ``with`` block) to collect stats."""

    def __init__(
        self,
        command: list[str],
        *,
        workdir: Path,
        tag: str,
        host: str,
        port: int,
        media_port: int,
        transport: str,
        timeout_s: float,
    ) -> None:
        self.command = tuple(command)
        self.workdir = workdir
        self.tag = tag
        self.host = host
        self.port = port
        self.media_port = media_port
        self.transport = transport
        self.stat_csv = workdir / f"{tag}.csv"
        self.error_log = workdir / f"{tag}_errors.log"
        self.screen_file = workdir / f"{tag}_screen.log"
        self.message_log = workdir / f"{tag}_messages.log"
        self.stdout_file = workdir / f"{tag}.out"
        self._started = time.monotonic()
        # SIPp's -timeout ends it; this is the hard bound past which we kill it.
        self._deadline = self._started + timeout_s + KILL_GRACE_S
        self._result: SippResult | None = None
        self._timed_out = False
        self._rusage_cpu = 0.0
        self._returncode: int | None = None
        with self.stdout_file.open("wb") as out:
            # own session: a Ctrl-C on pytest does not hit SIPp, and we stop it ourselves
            self._proc = subprocess.Popen(
                command,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self._proc.pid

    @property
    def target(self) -> str:
        """``host:port`` of this SIPp's SIP socket, ready to pass as another SIPp's target."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def alive(self) -> bool:
        return not self._reap(block=False)

    def cpu_seconds(self) -> float:
        """User + system CPU so far (live from /proc; from rusage once it has exited)."""
        if self._returncode is not None:
            return self._rusage_cpu
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return self._rusage_cpu
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def wait_ready(self, timeout_s: float = 5.0) -> None:
        """Return once SIPp has bound its SIP port; raise SippError if it exits or never does."""
        kind = socket.SOCK_STREAM if self.transport.startswith("t") else socket.SOCK_DGRAM
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise SippError(f"SIPp exited with {self._returncode}:\n{self._output_tail()}")
            if not bindable(self.host, self.port, kind):
                return
            time.sleep(0.02)
        self.stop()
        raise SippError(f"SIPp did not bind {self.target}:\n{self._output_tail()}")

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for SIPp to exit by itself (``calls`` reached, or its -timeout).

        Bounded: past ``timeout`` (or SIPp's own -timeout plus a grace) it is stopped, and the
        result says ``timed_out``.
        """
        deadline = self._deadline if timeout is None else time.monotonic() + timeout
        while not self._reap(block=False):
            if time.monotonic() >= deadline:
                self._timed_out = True
                return self.stop(grace_s=1.0)
            time.sleep(0.01)
        return self._collect()

    def stop(self, grace_s: float = STOP_GRACE_S) -> SippResult:
        """SIGUSR1 (SIPp ends ongoing calls, writes its stats), then SIGTERM, then SIGKILL."""
        for sig, wait_s in ((signal.SIGUSR1, grace_s), (signal.SIGTERM, 3.0)):
            if self._reap(block=False):
                break
            self._signal(sig)
            end = time.monotonic() + wait_s
            while time.monotonic() < end and not self._reap(block=False):
                time.sleep(0.02)
        if not self._reap(block=False):
            self._timed_out = True
            self._signal(signal.SIGKILL)
            self._reap(block=True)
        return self._collect()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals

    def _signal(self, sig: signal.Signals) -> None:
        if self._returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def _reap(self, *, block: bool) -> bool:
        """Reap SIPp with wait4 (for its CPU time); True once it has exited."""
        if self._returncode is not None:
            return True
        try:
            pid, status, usage = os.wait4(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere: exit status and rusage are lost
            self._returncode = -1
            return True
        if pid == 0:
            return False
        self._returncode = os.waitstatus_to_exitcode(status)
        self._proc.returncode = self._returncode  # keep Popen from waiting on a reaped pid
        self._rusage_cpu = usage.ru_utime + usage.ru_stime
        return True

    def _output_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.stdout_file.read_text(errors="replace")[-chars:]
        return ""

    def _screen(self) -> str:
        with contextlib.suppress(OSError):
            text = self.screen_file.read_text(errors="replace")
            if text.strip():
                return text
        # SIPp does not always write -screen_file (not on a SIGUSR1 exit): use the last
        # screen it printed on stdout.
        out = self._output_tail(200_000)
        start = out.rfind("Scenario Screen")
        return out[out.rfind("\n", 0, start) + 1 :] if start >= 0 else out[-3000:]

    def _collect(self) -> SippResult:
        if self._result is None:
            assert self._returncode is not None
            rows = _read_stat_rows(self.stat_csv)
            last = rows[-1] if rows else {}
            self._result = SippResult(
                returncode=self._returncode,
                successful=_int(last, "SuccessfulCall(C)"),
                failed=_int(last, "FailedCall(C)"),
                created=_int(last, "TotalCallCreated"),
                retransmissions=_int(last, "Retransmissions(C)"),
                elapsed=_row_elapsed(last) if last else 0.0,
                create_rate=_create_rate(rows),
                stat_csv=self.stat_csv,
                error_log=self.error_log,
                message_log=self.message_log,
                screen=self._screen(),
                timed_out=self._timed_out,
                wall=time.monotonic() - self._started,
                cpu_seconds=self._rusage_cpu,
                command=self.command,
                stats=last,
            )
        return self._result


class SippOptions(TypedDict, total=False):
    """Optional settings shared by ``start_sipp`` and ``run_sipp`` (SIPp flag in brackets)."""

    transport: Transport  # (-t) "udp" = u1, "tcp" = t1; default "udp"
    local_ip: str  # (-i) default 127.0.0.1; loopback only
    local_port: int  # (-p) default: a free port
    media_ip: str  # (-mi) default: local_ip
    media_port: int  # (-mp) default: a free run of 4 ports (audio, video; RTP, RTCP)
    rate: float  # (-r) calls per second; SIPp's default is 10
    rate_period_ms: int  # (-rp) "rate calls every rate_period_ms"
    limit: int  # (-l) cap on simultaneous calls
    duration_ms: int  # (-d) length of a <pause/> without milliseconds (the call hold)
    lost: float  # (-lost) percent of sent and received messages SIPp drops on purpose
    inf: Path | Sequence[Path]  # (-inf) CSV injection file(s): [field0], [field1], ...
    service: str  # (-s) user part of the request URI ([service]), default "service"
    auth_user: str  # (-au) credentials for a bare [authentication]
    auth_password: str  # (-ap)
    auth_uri: str  # (-auth_uri) digest uri without "sip:"; SIPp's default is the target host:port
    rtp_echo: bool  # (-rtp_echo) echo RTP received on media_port (and +2) to its sender
    max_socket: int  # (-max_socket) default 1000 for TCP: bounds sockets and the fd limit
    trace_msg: bool  # (-trace_msg) log every message to <tag>_messages.log
    extra: Sequence[str]  # further SIPp arguments, verbatim
    tag: str  # file name prefix in workdir; default <scenario>-<n>


def start_sipp(
    target: str | None = None,
    *,
    scenario: str | Path,
    workdir: Path,
    calls: int | None = None,
    timeout_s: float = 60.0,
    wait_ready: bool = True,
    **options: Unpack[SippOptions],
) -> SippProcess:
    """Start SIPp in the background and (by default) wait until its SIP port is bound.

    ``target`` is ``host:port`` of the peer (loopback only); a UAS needs none. ``scenario`` is a
    built-in name (``"uac"``, ``"uas"``: -sn), an XML path, or the stem of a file in
    tests/interop/scenarios (``"register_auth"``). ``calls`` (-m) makes SIPp exit after that
    many calls. SIPp quits after ``timeout_s`` (its -timeout) and is killed a few seconds later
    if it is still alive.
    """
    return _start(target, scenario, workdir, calls, timeout_s, wait_ready, False, options)


def run_sipp(
    target: str,
    *,
    scenario: str | Path,
    workdir: Path,
    calls: int,
    timeout_s: float = 30.0,
    **options: Unpack[SippOptions],
) -> SippResult:
    """Run SIPp against ``target`` until ``calls`` calls are done (-m), within ``timeout_s``.

    SIPp also gets -timeout_error, so a run cut short by its timeout exits 255.
    """
    if calls < 1:
        raise ValueError("calls must be >= 1: a SIPp run must be bounded in count")
    proc = _start(target, scenario, workdir, calls, timeout_s, False, True, options)
    try:
        return proc.wait()
    finally:
        if proc.alive():  # only when wait() was interrupted (KeyboardInterrupt)
            proc.stop(grace_s=1.0)


def sipp_available() -> bool:
    return shutil.which(SIPP) is not None


def _start(
    target: str | None,
    scenario: str | Path,
    workdir: Path,
    calls: int | None,
    timeout_s: float,
    wait_ready: bool,
    timeout_error: bool,
    o: SippOptions,
) -> SippProcess:
    if not sipp_available():
        raise SippError("sipp is not installed (Debian package sip-tester: `make deb`)")
    if target is not None:
        split_target(target)
    local_ip = check_loopback(o.get("local_ip", "127.0.0.1"))
    media_ip = check_loopback(o.get("media_ip", local_ip))
    port = o.get("local_port") or free_port(local_ip)
    media_port = o.get("media_port") or free_port(media_ip, span=4)
    workdir.mkdir(parents=True, exist_ok=True)
    tag = o.get("tag") or _unique_tag(workdir, _scenario_stem(scenario))
    transport = o.get("transport", "udp")
    mode = _TRANSPORT_FLAG.get(transport, transport)

    cmd = [SIPP, *_resolve_scenario(scenario), "-t", mode]
    cmd += ["-i", local_ip, "-p", str(port), "-mi", media_ip, "-mp", str(media_port)]
    # the control socket is IPv4-only in 3.6.1 and defaults to 0.0.0.0:8888
    cmd += ["-ci", "127.0.0.1", "-cp", str(free_port("127.0.0.1"))]
    cmd += ["-nostdin", "-timeout", f"{max(1, math.ceil(timeout_s))}s"]
    if timeout_error:
        cmd.append("-timeout_error")
    # a statistics row every 200 ms (create_rate is read from them)
    cmd += ["-trace_stat", "-stf", f"{tag}.csv", "-fd", "200ms"]
    cmd += ["-trace_err", "-error_file", f"{tag}_errors.log"]
    cmd += ["-trace_screen", "-screen_file", f"{tag}_screen.log"]
    if o.get("trace_msg"):
        cmd += ["-trace_msg", "-message_file", f"{tag}_messages.log"]
    if calls is not None:
        cmd += ["-m", str(calls)]
    for key, flag in _VALUE_FLAGS:
        value = o.get(key)
        if value is not None:
            cmd += [flag, _number(value) if isinstance(value, float) else str(value)]
    inf = o.get("inf", ())
    for path in [inf] if isinstance(inf, Path) else inf:
        cmd += ["-inf", str(Path(path).resolve())]
    if o.get("rtp_echo"):
        cmd.append("-rtp_echo")
    max_socket = o.get("max_socket", 1000 if mode.startswith("t") else None)
    if max_socket is not None:
        cmd += ["-max_socket", str(max_socket)]
    cmd += list(o.get("extra", ()))
    if target is not None:
        cmd.append(target)

    proc = SippProcess(
        cmd,
        workdir=workdir,
        tag=tag,
        host=local_ip,
        port=port,
        media_port=media_port,
        transport=mode,
        timeout_s=timeout_s,
    )
    if wait_ready:
        proc.wait_ready()
    return proc


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


_VALUE_FLAGS: tuple[tuple[str, str], ...] = (
    ("rate", "-r"),
    ("rate_period_ms", "-rp"),
    ("limit", "-l"),
    ("duration_ms", "-d"),
    ("lost", "-lost"),
    ("service", "-s"),
    ("auth_user", "-au"),
    ("auth_password", "-ap"),
    ("auth_uri", "-auth_uri"),
)


# ------------------------------------------------------------------------------ statistics


def _read_stat_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a SIPp -trace_stat CSV (';'-separated); a row cut short by a kill is dropped."""
    try:
        with path.open(newline="", errors="replace") as f:
            rows = list(csv.reader(f, delimiter=";"))
    except OSError:
        return []
    if not rows:
        return []
    header = rows[0]
    # each line ends with ';', so a complete row has len(header) or len(header) - 1 fields
    return [dict(zip(header, r, strict=False)) for r in rows[1:] if len(r) >= len(header) - 1]


def _int(row: dict[str, str], key: str) -> int:
    try:
        return int(row.get(key) or 0)
    except ValueError:
        return 0


def _epoch(value: str) -> float:
    # "2026-11-27<TAB>03:49:57.095556<TAB>1795751397.095556": the last field is epoch seconds
    return float(value.rsplit("\t", maxsplit=1)[-1])


def _row_elapsed(row: dict[str, str]) -> float:
    try:
        return _epoch(row["CurrentTime"]) - _epoch(row["StartTime"])
    except (KeyError, ValueError):
        return 0.0


def _create_rate(rows: list[dict[str, str]]) -> float:
    """Calls created per second, up to the first statistics row that shows them all.

    Unlike created / elapsed this ignores the time the last calls take to finish, and it is
    accurate to one row period (200 ms).
    """
    total = _int(rows[-1], "TotalCallCreated") if rows else 0
    for row in rows:
        if total and _int(row, "TotalCallCreated") >= total:
            t = _row_elapsed(row)
            return total / t if t > 0 else 0.0
    return 0.0

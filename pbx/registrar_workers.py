"""Registrar workers: REGISTERs over UDP answered in child processes, so registrations use
more than one core.

Why: one registration (REGISTER, 401, REGISTER with digest, 200) costs the core's loop about
400 µs of Python. One process then tops out near 2,000 registrations/s with nothing left for
calls, below the 3,000/s asked of the box on two cores (issue 3); the GIL rules out threads.

How:

* The core keeps the UDP socket and reads every datagram. One that starts with ``REGISTER``
  is not parsed there: the user of its To URI (the AoR) picks a worker (:func:`shard_of`) and
  the bytes go to that worker with their source address over a ``SOCK_SEQPACKET`` pair
  (:class:`Channel`). Parsing, the transaction, digest and the registrar run in the worker,
  which answers through its own descriptor of the same socket (:class:`SharedUdpSocket`), so
  answers leave from the SIP port. A REGISTER's retransmissions carry the same To, so they
  reach the worker that holds its transaction, and so does every REGISTER of one AoR.
* Each worker holds its AoRs' bindings in memory (:class:`WorkerBindings`) and sends every
  change to the core, which applies it to its store (SQLite, written behind), where the
  B2BUA's lookups, the keep-alive pings and the API read them. Changes the core makes (a
  keep-alive drop, a REGISTER it answered itself, a deleted extension) go to the owning
  worker (:class:`SharedBindings`); a worker that starts gets its shard's bindings first.
  Both copies stay the same.
* A worker says hello every second. Until its first hello, and while it is down or silent
  (killed after ``STUCK_AFTER`` seconds, restarted with backoff), the core answers its shard
  itself. Directory changes reach the workers as an invalidation; the sources a worker
  refused credentials to reach the core's door guard (:mod:`pbx.guard`).

The wire messages are one byte of kind and a payload, sent in one packet per loop turn;
bindings travel pickled (both ends are this program, over a socket pair nobody else holds).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import pickle
import re
import socket
import struct
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, fields
from urllib.parse import unquote

from pbx.endpoint import SipEndpoint
from pbx.registrar import Registrar
from pbx.runtime import SurvivorFreezer
from pbx.sip.dialog import DialogTable, new_tag
from pbx.sip.events import Event, Peer, RequestReceived, Transmit
from pbx.sip.parser import DEFAULT_LIMITS
from pbx.sip.timers import TimerConfig
from pbx.sip.uas import Capabilities, check_request
from pbx.store import Binding, BindingIndex, BindingStore, Directory
from pbx.transport.base import (
    MessageSink,
    TransportStats,
    checked_address,
    receive_datagram,
)
from pbx.transport.udp import UdpTransport

__all__ = [
    "Channel",
    "RegistrarPool",
    "RegistrarWorker",
    "SharedBindings",
    "SharedUdpSocket",
    "WorkerBindings",
    "aor_of",
    "shard_of",
]

log = logging.getLogger(__name__)

# Message kinds. Core -> worker: DATAGRAM, PUT, REMOVE, DIRECTORY. Worker -> core: HELLO,
# PUT, REMOVE, FAILED.
DATAGRAM = b"D"  # + source port (2 bytes) + host length (1 byte) + host + the datagram
PUT = b"P"  # + pickled list of Binding
REMOVE = b"R"  # + pickled list of (aor, contact or None for all of the AoR's)
DIRECTORY = b"I"  # + pickled list of deleted extension numbers (the others may have changed)
HELLO = b"H"  # the worker is ready; repeated every HEARTBEAT seconds while its loop runs
FAILED = b"F"  # + the address of a source that failed authentication (for the door guard)

SNAPSHOT_CHUNK = 200  # bindings per PUT message when a worker starts (about 30 KB)
MAX_PACKET = 1 << 17  # holds any one message: a datagram (64 KiB at most), a snapshot chunk
MAX_QUEUED_PACKETS = 64  # per channel (8 MiB); past it REGISTERs are dropped (phones retransmit)
_LENGTH = struct.Struct(">I")  # before each message in a packet
HEARTBEAT = 1.0  # seconds between a worker's hellos
STUCK_AFTER = 5.0  # seconds without a hello after which a worker is killed and replaced


# ------------------------------------------------------------------------------ sharding

# The To header's URI user, found without parsing the message. A quoted display name is
# skipped (it may hold "sip:x@y"); what this misses (folded lines, odd spellings) returns
# None and the core parses the REGISTER itself. Either way the AoR's owner gets the changes.
_TO_USER = re.compile(
    rb"\r\n(?:to|t)[ \t]*:[ \t]*"
    rb'(?:"(?:[^"\\\r\n]|\\[^\r\n])*"[ \t]*)?'
    rb'[^<\r\n",;]*?<?sips?:([^@;>?\s"]*)@',
    re.IGNORECASE,
)


def aor_of(datagram: bytes) -> str | None:
    """The user part of a REGISTER's To URI (percent-escapes undone), or ``None``."""
    end = datagram.find(b"\r\n\r\n")
    match = _TO_USER.search(datagram, 0, end if end >= 0 else len(datagram))
    if match is None:
        return None
    user = match.group(1).decode("utf-8", "replace")
    return unquote(user) if "%" in user else user


def shard_of(aor: str, count: int) -> int:
    """Which of ``count`` workers owns ``aor``: stable across processes and restarts."""
    return zlib.crc32(aor.encode()) % count


def encode_datagram(source: Peer, data: bytes) -> bytes:
    host = source.host.encode()
    return DATAGRAM + source.port.to_bytes(2, "big") + bytes((len(host),)) + host + data


def decode_datagram(message: bytes) -> tuple[Peer, bytes]:
    port = int.from_bytes(message[1:3], "big")
    end = 4 + message[3]
    return Peer("UDP", message[4:end].decode(), port), message[end:]


# Bindings travel as tuples of their fields: pickling the dataclass itself goes through
# dataclasses' generic __getstate__/__setstate__, several times slower.
_BINDING_FIELDS = tuple(f.name for f in fields(Binding))


def _put(bindings: Iterable[Binding]) -> bytes:
    rows = [tuple(getattr(b, name) for name in _BINDING_FIELDS) for b in bindings]
    return PUT + pickle.dumps(rows, pickle.HIGHEST_PROTOCOL)


def _remove(removals: Iterable[tuple[str, str | None]]) -> bytes:
    return REMOVE + pickle.dumps(builtins.list(removals), pickle.HIGHEST_PROTOCOL)


def _apply(store: BindingIndex | BindingStore, message: bytes) -> builtins.list[str]:
    """Apply a PUT or REMOVE message to ``store``; the AoRs it touched."""
    if message[:1] == PUT:
        bindings = [Binding(*row) for row in pickle.loads(message[1:])]
        for binding in bindings:
            store.put(binding)
        return [b.aor for b in bindings]
    removals: builtins.list[tuple[str, str | None]] = pickle.loads(message[1:])
    for aor, contact in removals:
        if contact is None:
            store.remove_all(aor)
        else:
            store.remove(aor, contact)
    return [aor for aor, _ in removals]


# ------------------------------------------------------------------------------ channel


class Channel:
    """One end of a ``SOCK_SEQPACKET`` pair on the running loop: whole messages, in order,
    none lost. What one turn of the loop sends goes out as one packet (length-prefixed
    messages): under load that is one system call and one wake-up of the other side for
    many messages, which measured as the largest cost of passing REGISTERs on. Packets the
    socket cannot take now wait in a queue; only messages sent ``droppable`` are refused
    once ``max_queued`` packets wait. ``on_closed`` runs once, when the other end is gone
    (EOF or an error)."""

    def __init__(
        self,
        sock: socket.socket,
        on_message: Callable[[bytes], None],
        on_closed: Callable[[], None],
        *,
        max_queued: int = MAX_QUEUED_PACKETS,
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._on_message = on_message
        self._on_closed = on_closed
        self._max_queued = max_queued
        self._pending: builtins.list[bytes] = []  # this turn's messages, with their lengths
        self._pending_size = 0
        self._queue: deque[bytes] = deque()  # packets the socket could not take yet
        # recv(n) would allocate n bytes per packet: read into one buffer, copy out.
        self._buffer = bytearray(MAX_PACKET)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)
        self.closed = False

    def send(self, message: bytes, *, droppable: bool = False) -> bool:
        """Queue ``message``; False if it was refused (closed, or droppable and full)."""
        if self.closed or (droppable and len(self._queue) >= self._max_queued):
            return False
        if self._pending_size + _LENGTH.size + len(message) > MAX_PACKET:
            self._flush()
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(_LENGTH.pack(len(message)))
        self._pending.append(message)
        self._pending_size += _LENGTH.size + len(message)
        return True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(ValueError, OSError):  # already unregistered or closed
            self._loop.remove_reader(self.sock.fileno())
            self._loop.remove_writer(self.sock.fileno())
        self.sock.close()
        self._pending.clear()
        self._queue.clear()
        self._on_closed()

    def _flush(self) -> None:
        if not self._pending or self.closed:
            return
        packet = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        if not self._queue:
            try:
                self.sock.send(packet)
                return
            except BlockingIOError:
                self._loop.add_writer(self.sock.fileno(), self._writable)
            except OSError:
                self.close()
                return
        self._queue.append(packet)

    def _readable(self) -> None:
        buffer, view = self._buffer, memoryview(self._buffer)
        for _ in range(64):  # then let the loop serve others
            try:
                size = self.sock.recv_into(buffer)
            except BlockingIOError:
                return
            except OSError:
                size = 0
            if not size:
                self.close()
                return
            offset = 0
            while offset < size:
                (length,) = _LENGTH.unpack_from(buffer, offset)
                offset += _LENGTH.size
                message = bytes(view[offset : offset + length])
                offset += length
                try:
                    self._on_message(message)
                except Exception:  # one bad message must not end the channel
                    log.exception("registrar channel: message %r failed", message[:1])
                if self.closed:
                    return

    def _writable(self) -> None:
        queue = self._queue
        try:
            while queue:
                self.sock.send(queue[0])
                queue.popleft()
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        self._loop.remove_writer(self.sock.fileno())


# ------------------------------------------------------------------------------ core side

# Starts worker ``index`` of ``count``, giving it the UDP socket's descriptor and its end of
# the channel (both must be inherited); returns the process.
SpawnWorker = Callable[[int, int, int, socket.socket], Awaitable[asyncio.subprocess.Process]]


@dataclass
class _Worker:
    index: int
    channel: Channel | None = None
    process: asyncio.subprocess.Process | None = None
    up: bool = False  # said hello: REGISTERs of its shard go to it
    heard: float = 0.0  # when its last hello came (monotonic)
    started: float = 0.0
    restarts: int = 0
    lost: asyncio.Event = field(default_factory=asyncio.Event)


class RegistrarPool:
    """The core's side: hands REGISTER datagrams to ``count`` worker processes, keeps their
    bindings and the core's store the same, and restarts a worker that dies.

    ``store`` is the core's binding store; give :attr:`bindings` (which tells the workers
    about the core's own changes) to the core's registrar and jobs instead of it.
    """

    def __init__(
        self,
        count: int,
        spawn: SpawnWorker,
        store: BindingStore,
        on_failed: Callable[[str], None] = lambda host: None,
        *,
        stuck_after: float = STUCK_AFTER,
    ) -> None:
        if count < 1:
            raise ValueError("a pool needs at least one worker")
        self.count = count
        self.on_failed = on_failed  # a worker refused a source's credentials
        self.stuck_after = stuck_after
        self.store = store
        self.bindings = SharedBindings(store, self)
        self._spawn = spawn
        self._workers = [_Worker(i) for i in range(count)]
        self._udp: UdpTransport | None = None
        self._tasks: builtins.list[asyncio.Task[None]] = []
        self.dropped = 0  # REGISTERs refused because a worker's queue was full

    @property
    def workers_up(self) -> int:
        return sum(w.up for w in self._workers)

    def pids(self) -> builtins.list[int]:
        return [w.process.pid for w in self._workers if w.process is not None]

    async def start(self, udp: UdpTransport) -> None:
        """Start the workers, which share ``udp``'s socket; :meth:`divert` (the core hooks it
        to ``udp``) passes them their REGISTERs once each has said hello."""
        self._udp = udp
        for worker in self._workers:
            self._tasks.append(asyncio.create_task(self._keep(worker)))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for worker in self._workers:
            await _stop(worker)

    # --- the core's loop

    def divert(self, data: bytes, source: Peer) -> bool:
        """UdpTransport's hook: True if a worker took the datagram (or it was dropped)."""
        if not data.startswith(b"REGISTER "):
            return False
        aor = aor_of(data)
        if aor is None:
            return False
        worker = self._workers[shard_of(aor, self.count)]
        if not worker.up or worker.channel is None:
            return False  # the core answers for a worker that is not there
        if not worker.channel.send(encode_datagram(source, data), droppable=True):
            self.dropped += 1  # overloaded: lost like on the network; the phone retransmits
        return True

    def tell_owner(self, aor: str, message: bytes, *, sender: int | None = None) -> None:
        """Send a binding change of ``aor`` to the worker owning it (unless it made it)."""
        owner = self._workers[shard_of(aor, self.count)]
        if owner.index != sender and owner.channel is not None:
            owner.channel.send(message)

    def directory_changed(self, deleted: Iterable[str] = ()) -> None:
        """The directory was written: workers drop their copy (and these numbers' bindings)."""
        message = DIRECTORY + pickle.dumps(builtins.list(deleted))
        for worker in self._workers:
            if worker.channel is not None:
                worker.channel.send(message)

    def _received(self, worker: _Worker, message: bytes) -> None:
        kind = message[:1]
        if kind == HELLO:
            worker.heard = time.monotonic()
            if not worker.up:
                worker.up = True
                log.info("registrar worker %d up: pid=%s", worker.index, _pid(worker))
        elif kind == FAILED:
            self.on_failed(message[1:].decode())
        elif kind in (PUT, REMOVE):
            for aor in _apply(self.store, message):
                # A REGISTER that reached the wrong worker (a To the quick look misread):
                # the owner must learn what it changed.
                self.tell_owner(aor, message, sender=worker.index)

    # --- lifecycle

    async def _keep(self, worker: _Worker) -> None:
        """Run worker ``index``, restarting it with backoff (0.5 s doubling to 30 s; reset
        after a minute of life) whenever it ends."""
        while True:
            try:
                await self._start(worker)
                await self._watch(worker)
            except OSError as exc:
                log.error("registrar worker %d: cannot start: %s", worker.index, exc)
            await _stop(worker)
            lived = time.monotonic() - worker.started
            worker.restarts = 0 if lived > 60 else worker.restarts + 1
            delay = min(30.0, 0.5 * 2 ** min(worker.restarts, 6))
            log.warning(
                "registrar worker %d ended after %.1f s; its REGISTERs are answered here, "
                "restart in %.1f s",
                worker.index,
                lived,
                delay,
            )
            await asyncio.sleep(delay)

    async def _watch(self, worker: _Worker) -> None:
        """Until the worker is gone, or has stopped saying hello (a loop stuck in a bug, a
        stopped process: its shard would go unanswered)."""
        while not worker.lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.lost.wait(), HEARTBEAT)
            silent = time.monotonic() - worker.heard
            if worker.up and silent > self.stuck_after:
                log.error(
                    "registrar worker %d silent for %.1f s: replacing it", worker.index, silent
                )
                return

    async def _start(self, worker: _Worker) -> None:
        assert self._udp is not None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        worker.lost = asyncio.Event()
        worker.started = worker.heard = time.monotonic()
        try:
            worker.process = await self._spawn(worker.index, self.count, self._udp.fileno(), theirs)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        worker.channel = Channel(ours, lambda m: self._received(worker, m), worker.lost.set)
        # Its shard's bindings first (never dropped: only datagrams are): the channel keeps
        # order, so they are in place before the first REGISTER, which waits for the hello.
        mine = [
            b
            for b in self.store.all_active(time.time())
            if shard_of(b.aor, self.count) == worker.index
        ]
        for i in range(0, len(mine), SNAPSHOT_CHUNK):
            worker.channel.send(_put(mine[i : i + SNAPSHOT_CHUNK]))


def _pid(worker: _Worker) -> int | None:
    return worker.process.pid if worker.process is not None else None


async def _stop(worker: _Worker) -> None:
    worker.up = False
    if worker.channel is not None:
        channel, worker.channel = worker.channel, None
        channel.close()
    process, worker.process = worker.process, None
    if process is None or process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 5)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


class SharedBindings:
    """The core's :class:`BindingStore` when workers run: reads from the core's store;
    writes go to it and to the AoR's worker (the workers' own changes come in through the
    pool and are applied to the store directly). ``expire`` stays local: each copy expires
    its bindings by the same clock."""

    def __init__(self, store: BindingStore, pool: RegistrarPool) -> None:
        self.store = store
        self.pool = pool

    def put(self, binding: Binding) -> None:
        self.store.put(binding)
        self.pool.tell_owner(binding.aor, _put([binding]))

    def remove(self, aor: str, contact: str) -> bool:
        removed = self.store.remove(aor, contact)
        if removed:
            self.pool.tell_owner(aor, _remove([(aor, contact)]))
        return removed

    def remove_all(self, aor: str) -> int:
        removed = self.store.remove_all(aor)
        if removed:
            self.pool.tell_owner(aor, _remove([(aor, None)]))
        return removed

    def list(self, aor: str, now: float | None = None) -> builtins.list[Binding]:
        return self.store.list(aor, now)

    def all_active(self, now: float) -> builtins.list[Binding]:
        return self.store.all_active(now)

    def expire(self, now: float) -> builtins.list[Binding]:
        return self.store.expire(now)


# ------------------------------------------------------------------------------ worker side


class WorkerBindings:
    """A worker's :class:`BindingStore`: its shard in memory; each change it makes is also
    sent to the core (``send``). :meth:`apply` takes the core's changes without echo."""

    def __init__(self, send: Callable[[bytes], object]) -> None:
        self.index = BindingIndex()
        self._send = send

    def put(self, binding: Binding) -> None:
        self.index.put(binding)
        self._send(_put([binding]))

    def remove(self, aor: str, contact: str) -> bool:
        removed = self.index.remove(aor, contact)
        if removed:
            self._send(_remove([(aor, contact)]))
        return removed

    def remove_all(self, aor: str) -> int:
        removed = len(self.index.remove_all(aor))
        if removed:
            self._send(_remove([(aor, None)]))
        return removed

    def list(self, aor: str, now: float | None = None) -> builtins.list[Binding]:
        return self.index.list(aor, now)

    def all_active(self, now: float) -> builtins.list[Binding]:
        return self.index.all_active(now)

    def expire(self, now: float) -> builtins.list[Binding]:
        return self.index.expire(now)  # the core expires its copy itself

    def apply(self, message: bytes) -> None:
        _apply(self.index, message)


class SharedUdpSocket:
    """A worker's UDP transport: sends from its descriptor of the core's SIP socket (so
    answers leave from the SIP port) and never reads it; the core passes the datagrams on
    (:meth:`receive`)."""

    name = "UDP"

    def __init__(self, sock: socket.socket, sink: MessageSink) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._sink = sink
        host, port = sock.getsockname()[:2]
        self.local_address: tuple[str, int] = (host, port)
        self.stats = TransportStats()

    def owns(self, connection: int) -> bool:
        return False

    def receive(self, data: bytes, source: Peer) -> None:
        answer = receive_datagram(data, source, self._sink, self.stats, DEFAULT_LIMITS)
        if answer is not None:
            self._sendto(answer, (source.host, source.port))

    def send(self, transmit: Transmit) -> None:
        self._sendto(transmit.data, checked_address(transmit.peer))

    def _sendto(self, data: bytes, address: tuple[str, int]) -> None:
        try:
            self._sock.sendto(data, address)
            self.stats.sent += 1
        except OSError:  # full buffer or unreachable: lost as on the network
            self.stats.send_errors += 1

    async def close(self) -> None:
        self._sock.close()


class RegistrarWorker:
    """A worker process's transaction user: answers the REGISTERs the core passes on with
    ``registrar`` (whose store must be :attr:`bindings`' twin: build it with
    :meth:`bindings` first), through ``endpoint``-like plumbing of its own."""

    def __init__(
        self,
        channel_sock: socket.socket,
        udp_sock: socket.socket,
        make_registrar: Callable[[WorkerBindings], Registrar],
        directory: Directory,
        caps: Capabilities,
        *,
        timers: TimerConfig | None = None,
        clock: Callable[[], float] = time.time,
        sweep_interval: float = 5.0,
    ) -> None:
        self._channel_sock = channel_sock
        self._udp_sock = udp_sock
        self.bindings = WorkerBindings(self._send)
        self.registrar = make_registrar(self.bindings)
        self.directory = directory
        self.caps = caps
        self.endpoint = SipEndpoint(self, timers=timers)
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._channel: Channel | None = None
        self._udp: SharedUdpSocket | None = None

    async def run(self) -> None:
        """Serve until the core closes the channel (or the task is cancelled)."""
        closed = asyncio.Event()
        self._udp = SharedUdpSocket(self._udp_sock, self.endpoint)
        self.endpoint.adopt(self._udp)
        self._channel = Channel(self._channel_sock, self._received, closed.set)
        sweeper = asyncio.create_task(self._sweep())
        try:
            await closed.wait()
        finally:
            sweeper.cancel()
            self._channel.close()
            await self.endpoint.close()

    def _send(self, message: bytes) -> None:
        if self._channel is not None:
            self._channel.send(message)

    def _received(self, message: bytes) -> None:
        kind = message[:1]
        if kind == DATAGRAM:
            assert self._udp is not None
            source, data = decode_datagram(message)
            self._udp.receive(data, source)
        elif kind in (PUT, REMOVE):
            self.bindings.apply(message)
        elif kind == DIRECTORY:
            invalidate = getattr(self.directory, "invalidate", None)
            if invalidate is not None:
                invalidate()
            for number in pickle.loads(message[1:]):
                self.bindings.index.remove_all(number)

    async def _sweep(self) -> None:
        """Hello now and every HEARTBEAT seconds; the collector kept to young objects (see
        SurvivorFreezer); expired bindings out every sweep."""
        swept = time.monotonic()
        freezer = SurvivorFreezer()
        while True:
            self._send(HELLO)
            await asyncio.sleep(HEARTBEAT)
            freezer.tick(time.monotonic())
            if time.monotonic() - swept >= self._sweep_interval:
                self.bindings.expire(self._clock())
                swept = time.monotonic()

    # --- TransactionUser

    def on_event(self, event: Event) -> None:
        if not isinstance(event, RequestReceived):
            return
        request, key = event.request, event.key
        # As the core's SipCore.on_event would answer a REGISTER (only REGISTERs come here).
        if request.to.tag:
            answer = DialogTable.unknown_dialog_response(request)
        else:
            answer = check_request(request, self.caps, new_tag()) or self.registrar.handle(
                request, event.source, self._clock()
            )
            if answer.status == 403:  # credentials refused: the core's guard counts them
                self._send(FAILED + event.source.host.encode())
        if answer is not None:
            self.endpoint.send_response(key, answer)

"""Values crossing the sans-IO boundary: where bytes come from and go to, and what the stack
tells the transaction user (TU). Transports turn sockets into these and back."""

from __future__ import annotations

from dataclasses import dataclass

from pbx.sip.message import Request, Response

RELIABLE = frozenset({"TCP", "TLS", "SCTP", "WS", "WSS"})


@dataclass(frozen=True, slots=True)
class Peer:
    """A transport address. ``transport`` is upper case as in Via ("UDP", "TCP", "TLS").

    ``connection`` identifies one stream connection (assigned by the transport adapter) so an
    answer can go back on the connection the request arrived on (§18.2.2); ``None`` means
    "any connection to that address, or open one".
    """

    transport: str
    host: str
    port: int
    connection: int | None = None

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE

    def without_connection(self) -> Peer:
        return Peer(self.transport, self.host, self.port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport.lower()}:{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Transmit:
    """Bytes for the transport adapter to send to ``peer``."""

    data: bytes
    peer: Peer


# ------------------------------------------------------------------ events for the TU


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request created a server transaction ``key``; the TU must answer it (except ACK)."""

    key: str
    request: Request
    source: Peer


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK for a 2xx (it has no transaction of its own, §17.1.1.3): goes to the dialog.

    ``invite_key`` names the INVITE server transaction (in Accepted) whose 2xx the ACK
    acknowledges, matched by Call-ID, CSeq number, From tag and To tag; that transaction
    stopped retransmitting the 2xx. ``None`` when no live transaction sent that 2xx (a late
    ACK, or one for another UA's 2xx).
    """

    request: Request
    source: Peer
    invite_key: str | None = None


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """A CANCEL matched the INVITE server transaction ``invite_key``; the stack already
    answered the CANCEL with 200 (§9.2); the TU should answer the INVITE with 487."""

    invite_key: str
    request: Request
    source: Peer


@dataclass(frozen=True, slots=True)
class AckTimeout:
    """The 2xx sent through INVITE server transaction ``key`` (for ``request``) got no ACK
    within 64*T1 (Timer L, RFC 3261 §13.3.1.4): the dialog is confirmed but the session
    should end, so the TU should send BYE in it. The transaction terminates right after."""

    key: str
    request: Request


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for client transaction ``key`` (provisional or final, once each)."""

    key: str
    response: Response
    source: Peer


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A response that matches no client transaction, e.g. a retransmitted 2xx for an INVITE
    whose transaction is gone (§13.2.2.4: the UAC core must ACK it again)."""

    response: Response
    source: Peer


@dataclass(frozen=True, slots=True)
class TransactionTimeout:
    """Client transaction ``key`` got no final response in time (Timer B or F): treat as 408.
    Also for an INVITE server transaction whose non-2xx final was never ACKed (Timer H,
    §17.2.1 "a transaction failure"); it terminates right after."""

    key: str


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """Sending for transaction ``key`` failed (§8.1.3.1 / §17.1.4): treat as 503."""

    key: str


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    """Transaction ``key`` reached Terminated and was forgotten."""

    key: str


Event = (
    RequestReceived
    | AckReceived
    | AckTimeout
    | CancelReceived
    | ResponseReceived
    | StrayResponse
    | TransactionTimeout
    | TransportFailed
    | TransactionTerminated
)

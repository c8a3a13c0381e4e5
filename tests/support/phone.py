"""A scripted SIP phone for registrar tests: builds REGISTER requests as wire bytes and parses
them with the stack (so the registrar sees what a socket would hand it), and answers digest
challenges with a real :class:`DigestClient`."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Self

from pbx.sip import Request, Response, parse
from pbx.sip.auth import Challenge, DigestClient, parse_challenge
from pbx.sip.dialog import new_branch, new_call_id, new_tag
from pbx.sip.events import Peer

# What the registrar tests share: the realm (also the domain), nonce key, password and clock.
REALM = "pbx.test"
KEY = b"registrar-test-nonce-key-32bytes"
PASSWORD = "s3cret-Pw"
NOW = 1_700_000_000.0  # unix seconds: bindings outlive the process


class Phone:
    """One UA registering ``number``: keeps its Call-ID, From tag and CSeq like a phone does
    (§10.2: the same Call-ID for every REGISTER to a registrar, CSeq counting up)."""

    def __init__(
        self,
        number: str,
        password: str,
        *,
        domain: str = REALM,
        host: str = "192.168.1.20",
        port: int = 5060,
        source: Peer | None = None,
    ) -> None:
        self.number = number
        self.domain = domain
        self.host = host
        self.port = port
        self.source = source or Peer("UDP", host, port)
        self.client = DigestClient(number, password)
        self.call_id = new_call_id(host)
        self.tag = new_tag()
        self.cseq = 0
        self.challenge: Challenge | None = None

    @property
    def contact(self) -> str:
        return f"sip:{self.number}@{self.host}:{self.port}"

    def register(
        self,
        contacts: Sequence[str] | None = None,
        *,
        expires: int | None = 3600,
        to: str | None = None,
        uri: str | None = None,
        cseq: int | None = None,
        challenge: Response | None = None,
        authorize: bool = True,
        headers: Sequence[tuple[str, str]] = (),
    ) -> Request:
        """A REGISTER; ``contacts`` are whole Contact values (default: this phone's own).

        With ``challenge`` (a 401) it answers the first challenge, as SIPp and many phones
        do, and keeps answering that nonce (nonce-count up) in later requests, unless
        ``authorize=False``.
        """
        self.cseq = self.cseq + 1 if cseq is None else cseq
        uri = uri or f"sip:{self.domain}"
        if challenge is not None:
            self.challenge = parse_challenge(challenge.headers.lines("WWW-Authenticate")[0])
        lines = [
            f"REGISTER {uri} SIP/2.0",
            f"Via: SIP/2.0/{self.source.transport} {self.host}:{self.port};branch={new_branch()}",
            "Max-Forwards: 70",
            f"From: <sip:{self.number}@{self.domain}>;tag={self.tag}",
            f"To: {to or f'<sip:{self.number}@{self.domain}>'}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            "User-Agent: test-phone/1.0",
        ]
        lines.extend(
            f"Contact: {c}" for c in ([f"<{self.contact}>"] if contacts is None else contacts)
        )
        if expires is not None:
            lines.append(f"Expires: {expires}")
        if authorize and self.challenge is not None:
            creds = self.client.authorize(self.challenge, "REGISTER", uri)
            lines.append(f"Authorization: {creds.to_header()}")
        lines.extend(f"{name}: {value}" for name, value in headers)
        lines.append("Content-Length: 0")
        message = parse(("\r\n".join(lines) + "\r\n\r\n").encode())
        assert isinstance(message, Request)
        return message


class UdpPhone:
    """A :class:`Phone` on a real UDP socket bound to ``host`` (any 127.0.0.x works on
    Linux loopback). Blocking: from a thread when the box runs on the test's own loop."""

    def __init__(self, number: str, password: str, *, domain: str, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(2.0)
        port = self.sock.getsockname()[1]
        self.phone = Phone(number, password, domain=domain, host=host, port=port)

    def register(self, target: tuple[str, int]) -> Response | None:
        """REGISTER, answer a 401 once: the final response, or None if none came."""
        self.sock.sendto(bytes(self.phone.register(authorize=False)), target)
        challenge = self.answer()
        if challenge is None or challenge.status != 401:
            return challenge
        self.sock.sendto(bytes(self.phone.register(challenge=challenge)), target)
        return self.answer()

    def answer(self) -> Response | None:
        try:
            message = parse(self.sock.recv(65535))
        except TimeoutError:
            return None
        assert isinstance(message, Response)
        return message

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

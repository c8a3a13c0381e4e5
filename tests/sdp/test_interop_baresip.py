"""The box's SDP against a real callee: baresip 1.x (Debian 12 package) answers the offers the
box writes, and its real answers go back through the box to the caller.

baresip auto-answers on loopback with the ``aubridge`` audio device (no sound card, any sample
rate). The test speaks just enough SIP over UDP to carry the SDP: INVITE, ACK, a hold
re-INVITE, BYE.
"""

from __future__ import annotations

import itertools
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.ports import free_port

from pbx.sdp import Codec, Direction, SdpLeg, SessionDescription, negotiated_codec, parse_sdp
from pbx.sip import Response, parse

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip is not installed"),
]

DATA = Path(__file__).parent / "data"
MODULES = Path("/usr/lib/baresip/modules")
BOX = "127.0.0.1"


def wait_until_answering(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Probe with OPTIONS until baresip answers (it has no other readiness signal)."""
    deadline = time.monotonic() + 20
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((BOX, 0))
        sock.settimeout(0.2)
        local = sock.getsockname()[1]
        for n in itertools.count(1):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            probe = (
                f"OPTIONS sip:bob@{BOX}:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {BOX}:{local};branch=z9hG4bKprobe{n}\r\n"
                f"From: <sip:probe@{BOX}>;tag=p\r\nTo: <sip:bob@{BOX}>\r\n"
                f"Call-ID: probe@{BOX}\r\nCSeq: {n} OPTIONS\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            sock.sendto(probe.encode(), (BOX, port))
            try:
                sock.recvfrom(65535)
                return
            except TimeoutError:
                continue


@pytest.fixture
def baresip(tmp_path: Path) -> Iterator[int]:
    """A baresip that auto-answers on 127.0.0.1; yields its SIP port."""
    port = free_port(BOX)
    conf = tmp_path / "baresip"
    conf.mkdir()
    (conf / "config").write_text(
        f"sip_listen {BOX}:{port}\n"
        "audio_player aubridge,edgepbx\naudio_source aubridge,edgepbx\n"
        "audio_alert aubridge,edgepbx\nrtp_ports 20000-29999\n"
        f"module_path {MODULES}\n"
        "module opus.so\nmodule g722.so\nmodule g711.so\nmodule aubridge.so\n"
        "module_tmp account.so\nmodule_app menu.so\n"
    )
    (conf / "accounts").write_text(f"<sip:bob@{BOX}>;regint=0;answermode=auto\n")
    log = (tmp_path / "baresip.log").open("wb")
    proc = subprocess.Popen(
        ["baresip", "-f", str(conf)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    try:
        wait_until_answering(port, proc, tmp_path / "baresip.log")
        yield port
    finally:
        proc.kill()  # calls are torn down by BYE already; nothing is lost
        proc.wait(timeout=10)
        log.close()


@dataclass
class Dialog:
    """Just enough UAC to carry SDP to baresip and back."""

    sock: socket.socket
    target: tuple[str, int]
    cseq: int = 0
    to_tag: str = ""

    def request(self, method: str, body: bytes = b"", branch: str = "") -> None:
        local = self.sock.getsockname()[1]
        if method != "ACK":
            self.cseq += 1
        to = f"<sip:bob@{BOX}:{self.target[1]}>" + (f";tag={self.to_tag}" if self.to_tag else "")
        head = (
            f"{method} sip:bob@{BOX}:{self.target[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {BOX}:{local};branch=z9hG4bK{branch or method}{self.cseq}\r\n"
            f"From: <sip:alice@{BOX}>;tag=edgepbx\r\nTo: {to}\r\n"
            f"Call-ID: sdp-interop@{BOX}\r\nCSeq: {self.cseq} {method}\r\n"
            f"Contact: <sip:box@{BOX}:{local}>\r\nMax-Forwards: 70\r\n"
        )
        if body:
            head += "Content-Type: application/sdp\r\n"
        self.sock.sendto(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body, self.target)

    def final(self) -> Response:
        while True:
            msg = parse(self.sock.recvfrom(65535)[0])
            if isinstance(msg, Response) and msg.status >= 200:
                self.to_tag = msg.to.tag or self.to_tag
                return msg

    def invite(self, sdp: SessionDescription) -> SessionDescription:
        self.request("INVITE", bytes(sdp))
        response = self.final()
        assert response.status == 200, response
        self.request("ACK")
        return parse_sdp(response.body)


@pytest.fixture
def dialog(baresip: int) -> Iterator[Dialog]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((BOX, 0))
        sock.settimeout(10)
        d = Dialog(sock, (BOX, baresip))
        yield d
        if d.to_tag:
            d.request("BYE")
            d.final()


@pytest.mark.parametrize(
    ("offer_name", "codec"),
    [
        ("yealink_offer.sdp", Codec(0, "PCMU", 8000)),
        ("polycom_offer.sdp", Codec(9, "G722", 8000)),
        ("baresip_offer.sdp", Codec(96, "opus", 48000, 2)),
    ],
)
def test_baresip_answers_the_box_and_the_caller_gets_the_box(
    dialog: Dialog, offer_name: str, codec: Codec
) -> None:
    leg_a = SdpLeg(BOX, [30000], session_id=1111)
    leg_b = SdpLeg(BOX, [40000], session_id=2222)
    offer_a = parse_sdp((DATA / offer_name).read_bytes())

    answer_b = dialog.invite(leg_b.offer_from(offer_a))
    answer_a = leg_a.answer_from(answer_b, offer_a)

    assert negotiated_codec(answer_b) == codec
    assert negotiated_codec(answer_a) == codec
    offered = {c.key for c in offer_a.media[0].codecs}
    assert {c.key for c in answer_a.media[0].codecs} <= offered
    assert answer_a.media[0].port == 30000 and answer_a.connection is not None
    assert answer_a.media[0].direction is Direction.SENDRECV


def test_hold_and_resume_through_baresip(dialog: Dialog) -> None:
    leg_a = SdpLeg(BOX, [30000], session_id=1111)
    leg_b = SdpLeg(BOX, [40000], session_id=2222)
    offer_a = parse_sdp((DATA / "yealink_offer.sdp").read_bytes())
    leg_a.answer_from(dialog.invite(leg_b.offer_from(offer_a)), offer_a)

    # The caller holds: baresip gets the box's sendonly offer and answers recvonly.
    hold_a = parse_sdp((DATA / "yealink_hold.sdp").read_bytes())
    hold_b = leg_b.offer_from(hold_a)
    assert hold_b.origin.session_version == 2223
    answer_b = dialog.invite(hold_b)
    assert answer_b.media[0].direction is Direction.RECVONLY
    answer_a = leg_a.answer_from(answer_b, hold_a)
    assert answer_a.media[0].direction is Direction.RECVONLY
    assert answer_a.origin.session_version == 1112

    # And resumes.
    answer_b = dialog.invite(leg_b.offer_from(offer_a))
    answer_a = leg_a.answer_from(answer_b, offer_a)
    assert answer_a.media[0].direction is Direction.SENDRECV
    assert answer_a.origin.session_version == 1113

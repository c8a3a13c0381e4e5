"""Tests of pbx.sip.dialog: dialogs per RFC 3261 §12 (with §9.1, §13.2.2.4, §14)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx.sip import Request, Response, SipUri, Via, make_response, parse, parse_uri
from pbx.sip.dialog import (
    TRANSITIONS,
    Dialog,
    DialogId,
    DialogInput,
    DialogState,
    DialogTable,
    make_cancel,
    new_branch,
    new_call_id,
    new_tag,
)
from pbx.sip.errors import LocalProtocolError, ParseError, RemoteProtocolError

# --- message helpers ---------------------------------------------------------------------------


def sip(text: str, body: str = "") -> Request | Response:
    """Parse a message written one header per line; lines get CRLF endings as on the wire."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    head = "\r\n".join([*lines, f"Content-Length: {len(body.encode())}"])
    return parse(f"{head}\r\n\r\n{body}".encode())


def req(text: str, body: str = "") -> Request:
    message = sip(text, body)
    assert isinstance(message, Request)
    return message


def resp(text: str, body: str = "") -> Response:
    message = sip(text, body)
    assert isinstance(message, Response)
    return message


def roundtrip(request: Request) -> Request:
    """What the peer sees: the request serialized and parsed again (less Content-Length)."""
    seen = parse(bytes(request))
    assert isinstance(seen, Request)
    return seen.without_header("Content-Length")


def counting_bytes() -> Callable[[int], bytes]:
    """Deterministic "randomness": a different value on every call."""
    counter = itertools.count(1)
    return lambda n: next(counter).to_bytes(n, "big")


SDP = (
    "v=0\r\no=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\ns=-\r\n"
    "c=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)

# Alice calls Bob through two record-routing proxies: atlanta (ss1) then biloxi (ss2).
# What Alice sends, then what reaches Bob after both proxies.
ALICE_INVITE = """
INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds
Max-Forwards: 70
Route: <sip:ss1.atlanta.example.com;lr>
To: Bob <sip:bob@biloxi.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Contact: <sip:alice@pc33.atlanta.example.com>
Content-Type: application/sdp
"""

BOB_INVITE = """
INVITE sip:bob@192.0.2.4 SIP/2.0
Via: SIP/2.0/UDP ss2.biloxi.example.com:5060;branch=z9hG4bK721e418c4.1
Via: SIP/2.0/UDP ss1.atlanta.example.com:5060;branch=z9hG4bK2d4790.1;received=192.0.2.111
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;received=192.0.2.101
Max-Forwards: 68
Record-Route: <sip:ss2.biloxi.example.com;lr>
Record-Route: <sip:ss1.atlanta.example.com;lr>
To: Bob <sip:bob@biloxi.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Contact: <sip:alice@pc33.atlanta.example.com>
Content-Type: application/sdp
"""

ALICE_200 = """
SIP/2.0 200 OK
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;received=192.0.2.101
Record-Route: <sip:ss2.biloxi.example.com;lr>, <sip:ss1.atlanta.example.com;lr>
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Contact: <sip:bob@192.0.2.4>
Content-Type: application/sdp
"""

CALL_ID = "a84b4c76e66710@pc33.atlanta.example.com"
ALICE_TAG = "1928301774"
BOB_TAG = "a6c85cf"
BOB_CONTACT = ("Contact", "<sip:bob@192.0.2.4>")


def alice_dialog() -> tuple[Dialog, Request]:
    invite = req(ALICE_INVITE, SDP)
    dialog = Dialog.from_uac(invite, resp(ALICE_200, SDP), random_bytes=counting_bytes())
    return dialog, invite


def bob_dialog(status: int = 200) -> tuple[Dialog, Request, Response]:
    invite = req(BOB_INVITE, SDP)
    response = make_response(invite, status, to_tag=BOB_TAG, extra=[BOB_CONTACT])
    return Dialog.from_uas(invite, response, random_bytes=counting_bytes()), invite, response


def in_dialog(method: str, seq: int, *, contact: str | None = None, to_bob: bool = True) -> Request:
    """A request Alice sends to Bob inside the dialog, as Bob receives it."""
    contact_line = f"Contact: {contact}" if contact else ""
    return req(f"""
        {method} sip:bob@192.0.2.4 SIP/2.0
        Via: SIP/2.0/UDP ss2.biloxi.example.com:5060;branch=z9hG4bK{method}{seq}.1
        Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK{method}{seq}
        Max-Forwards: 69
        To: Bob <sip:bob@biloxi.example.com>;tag={BOB_TAG if to_bob else "x"}
        From: Alice <sip:alice@atlanta.example.com>;tag={ALICE_TAG}
        Call-ID: {CALL_ID}
        CSeq: {seq} {method}
        {contact_line}
        """)


# --- identifiers and randomness ----------------------------------------------------------------


def test_dialog_id_from_both_sides() -> None:
    uas = DialogId.of_received_request(in_dialog("BYE", 314160))
    uac = DialogId.of_received_response(resp(ALICE_200))
    assert uas == DialogId(CALL_ID, BOB_TAG, ALICE_TAG)
    assert uac == DialogId(CALL_ID, ALICE_TAG, BOB_TAG)
    assert DialogId.of_sent_request(req(ALICE_INVITE)) == DialogId(CALL_ID, ALICE_TAG, "")
    with pytest.raises(LocalProtocolError):
        DialogId.of_received_request(req(BOB_INVITE))  # no To tag: not in a dialog
    with pytest.raises(AttributeError):
        uas.call_id = "x"  # type: ignore[misc]


def test_random_values_are_injectable_and_well_formed() -> None:
    rng = counting_bytes()
    assert new_tag(rng) == "0000000000000001"
    assert new_branch(rng) == "z9hG4bK" + "00" * 9 + "02"
    assert new_call_id("pc33.atlanta.example.com", rng).endswith("03@pc33.atlanta.example.com")
    assert new_call_id().isalnum()
    assert len({new_tag() for _ in range(100)}) == 100
    assert new_branch().startswith("z9hG4bK")
    with pytest.raises(LocalProtocolError):
        new_call_id("bad host")


# --- creating dialogs --------------------------------------------------------------------------


def test_uac_dialog_from_200_with_record_route() -> None:
    dialog, _ = alice_dialog()
    assert dialog.id == DialogId(CALL_ID, ALICE_TAG, BOB_TAG)
    assert dialog.is_uac
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.local_seq == 314159
    assert dialog.remote_seq is None
    assert str(dialog.local_uri) == "sip:alice@atlanta.example.com"
    assert str(dialog.remote_uri) == "sip:bob@biloxi.example.com"
    assert str(dialog.remote_target) == "sip:bob@192.0.2.4"
    # §12.1.2: reversed, so the first hop (atlanta) comes first.
    assert [str(u) for u in dialog.route_set] == [
        "sip:ss1.atlanta.example.com;lr",
        "sip:ss2.biloxi.example.com;lr",
    ]
    assert not dialog.secure
    assert str(dialog.local_contact) == "<sip:alice@pc33.atlanta.example.com>"


def test_uas_dialog_from_invite_and_200() -> None:
    dialog, _, _ = bob_dialog()
    assert dialog.id == DialogId(CALL_ID, BOB_TAG, ALICE_TAG)
    assert not dialog.is_uac
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.local_seq is None
    assert dialog.remote_seq == 314159
    assert str(dialog.local_uri) == "sip:bob@biloxi.example.com"
    assert str(dialog.remote_uri) == "sip:alice@atlanta.example.com"
    assert str(dialog.remote_target) == "sip:alice@pc33.atlanta.example.com"
    # §12.1.1: in order, so the first hop back (biloxi) comes first.
    assert [str(u) for u in dialog.route_set] == [
        "sip:ss2.biloxi.example.com;lr",
        "sip:ss1.atlanta.example.com;lr",
    ]


def test_uas_early_dialog_is_confirmed_or_ended_by_the_final_response() -> None:
    dialog, invite, ringing = bob_dialog(180)
    assert dialog.state is DialogState.EARLY
    dialog.response_sent(invite, ringing)  # a retransmitted 180 changes nothing
    assert dialog.state is DialogState.EARLY
    ok = make_response(invite, 200, to_tag=BOB_TAG, extra=[("Contact", "<sip:bob@192.0.2.5>")])
    dialog.response_sent(invite, ok)
    assert dialog.state is DialogState.CONFIRMED
    assert str(dialog.local_contact) == "<sip:bob@192.0.2.5>"
    assert len(dialog.route_set) == 2

    declined, invite, _ = bob_dialog(183)
    declined.response_sent(invite, make_response(invite, 486, to_tag=BOB_TAG))
    assert declined.state is DialogState.TERMINATED

    other, invite, _ = bob_dialog(180)
    with pytest.raises(LocalProtocolError):
        other.response_sent(invite, make_response(invite, 200, to_tag="someone-else"))


def test_secure_flag_follows_sips_request_uri() -> None:
    invite = req(BOB_INVITE.replace("sip:bob@192.0.2.4", "sips:bob@192.0.2.4", 1))
    ok = make_response(invite, 200, to_tag=BOB_TAG, extra=[("Contact", "<sips:bob@192.0.2.4>")])
    assert Dialog.from_uas(invite, ok).secure
    assert not Dialog.from_uas(invite, ok, secure=False).secure
    assert not bob_dialog()[0].secure


def test_dialog_creation_rejects_what_cannot_create_a_dialog() -> None:
    invite = req(BOB_INVITE)
    no_contact = req(BOB_INVITE.replace("Contact: <sip:alice@pc33.atlanta.example.com>", ""))
    with pytest.raises(RemoteProtocolError) as info:
        Dialog.from_uas(no_contact, make_response(no_contact, 200, to_tag=BOB_TAG))
    assert info.value.status == 400
    assert info.value.headers is not None
    with pytest.raises(LocalProtocolError):
        Dialog.from_uas(invite, make_response(invite, 486, to_tag=BOB_TAG))
    with pytest.raises(LocalProtocolError):
        Dialog.from_uas(invite, make_response(invite, 200))  # no To tag
    alice_invite = req(ALICE_INVITE)
    trying = resp(ALICE_200.replace("200 OK", "100 Trying").replace(";tag=a6c85cf", ""))
    with pytest.raises(LocalProtocolError):
        Dialog.from_uac(alice_invite, trying)


def test_uac_drops_a_2xx_with_a_broken_record_route() -> None:
    broken = resp(ALICE_200.replace("<sip:ss1.atlanta.example.com;lr>", "<sip:ss1 atlanta>"))
    with pytest.raises(ParseError) as info:
        Dialog.from_uac(req(ALICE_INVITE), broken)
    assert info.value.drop


# --- building requests -------------------------------------------------------------------------


def test_bye_from_uac_goes_to_remote_target_through_loose_routes() -> None:
    dialog, _ = alice_dialog()
    bye = dialog.create_request("BYE", host="pc33.atlanta.example.com", port=5060)
    seen = roundtrip(bye)  # the peer can parse what we built
    assert seen == bye
    assert bye.method == "BYE"
    assert str(bye.uri) == "sip:bob@192.0.2.4"
    assert bye.headers.lines("Route") == [
        "<sip:ss1.atlanta.example.com;lr>",
        "<sip:ss2.biloxi.example.com;lr>",
    ]
    assert bye.to.tag == BOB_TAG
    assert bye.from_.tag == ALICE_TAG
    assert bye.to.display_name == "Bob"
    assert bye.call_id == CALL_ID
    assert (bye.cseq.seq, bye.cseq.method) == (314160, "BYE")
    assert bye.max_forwards == 70
    assert bye.top_via.transport == "UDP"
    assert bye.top_via.sent_by == ("pc33.atlanta.example.com", 5060)
    assert bye.top_via.is_rfc3261
    assert "Contact" not in bye.headers  # BYE is no target refresh
    assert dialog.local_seq == 314160


def test_each_request_gets_the_next_cseq_and_a_fresh_branch() -> None:
    dialog, _ = alice_dialog()
    via = "SIP/2.0/TCP pc33.atlanta.example.com;rport;branch=z9hG4bKstale"
    first = dialog.create_request("INFO", via=via, headers=[("Info-Package", "dtmf")])
    second = dialog.create_request("OPTIONS", via=Via("TLS", "192.0.2.101", 5061))
    assert [first.cseq.seq, second.cseq.seq] == [314160, 314161]
    assert first.top_via.branch != "z9hG4bKstale"
    assert first.top_via.branch != second.top_via.branch
    assert first.top_via.wants_rport
    assert first.headers.get("Info-Package") == "dtmf"
    assert second.top_via.transport == "TLS"


def test_uas_first_request_picks_a_random_cseq() -> None:
    dialog, _, _ = bob_dialog()
    bye = dialog.create_request("BYE", host="192.0.2.4")
    assert bye.cseq.seq == 2  # the counting rng gave 1, offset by one to stay above 0
    assert str(bye.uri) == "sip:alice@pc33.atlanta.example.com"
    assert bye.headers.lines("Route") == [
        "<sip:ss2.biloxi.example.com;lr>",
        "<sip:ss1.atlanta.example.com;lr>",
    ]
    assert bye.from_.tag == BOB_TAG
    assert bye.to.tag == ALICE_TAG
    assert dialog.local_seq == 2
    real = Dialog.from_uas(*bob_dialog()[1:])  # secrets by default
    assert 1 <= real.create_request("BYE", host="h").cseq.seq <= 2**30


def test_strict_router_goes_into_the_request_uri() -> None:
    strict = ALICE_200.replace(
        "<sip:ss2.biloxi.example.com;lr>, <sip:ss1.atlanta.example.com;lr>",
        "<sip:ss2.biloxi.example.com;lr>, <sip:ss1.atlanta.example.com;maddr=192.0.2.111>",
    )
    dialog = Dialog.from_uac(req(ALICE_INVITE), resp(strict))
    bye = dialog.create_request("BYE", host="pc33.atlanta.example.com")
    # §12.2.1.1: the strict first hop is the Request-URI; the remote target ends the Route.
    assert str(bye.uri) == "sip:ss1.atlanta.example.com;maddr=192.0.2.111"
    assert bye.headers.lines("Route") == ["<sip:ss2.biloxi.example.com;lr>", "<sip:bob@192.0.2.4>"]
    assert roundtrip(bye) == bye


def test_request_uri_loses_what_it_may_not_carry() -> None:
    odd = ALICE_200.replace("<sip:bob@192.0.2.4>", "<sip:bob@192.0.2.4;method=INVITE?Subject=x>")
    dialog = Dialog.from_uac(req(ALICE_INVITE), resp(odd))
    assert str(dialog.create_request("BYE", host="h").uri) == "sip:bob@192.0.2.4"


def test_target_refresh_requests_carry_our_contact() -> None:
    dialog, _ = alice_dialog()
    reinvite = dialog.create_request(
        "INVITE", host="pc33.atlanta.example.com", body=SDP.encode(), content_type="application/sdp"
    )
    assert reinvite.headers.get("Contact") == "<sip:alice@pc33.atlanta.example.com>"
    assert reinvite.content_type == "application/sdp"
    assert roundtrip(reinvite).body == SDP.encode()
    moved = dialog.create_request("UPDATE", host="h", contact="<sip:alice@192.0.2.200>")
    assert moved.headers.get("Contact") == "<sip:alice@192.0.2.200>"
    assert dialog.create_request("INVITE", host="h").headers.get("Contact") == (
        "<sip:alice@192.0.2.200>"
    )


def test_create_request_refuses_local_mistakes() -> None:
    dialog, _ = alice_dialog()
    with pytest.raises(LocalProtocolError):
        dialog.create_request("ACK", host="h")
    with pytest.raises(LocalProtocolError):
        dialog.create_request("CANCEL", host="h")
    with pytest.raises(LocalProtocolError):
        dialog.create_request("INFO")  # no Via
    with pytest.raises(LocalProtocolError):
        dialog.create_request("INFO", via="SIP/2.0/UDP h", host="h")
    with pytest.raises(LocalProtocolError):
        dialog.create_request("INFO", via="not a via")
    with pytest.raises(LocalProtocolError):
        dialog.create_request("INFO", host="h", headers=[("call-id", "x")])
    with pytest.raises(LocalProtocolError):
        dialog.create_request("INFO", host="h", body=b"x")  # no content type
    assert dialog.local_seq == 314159  # failed calls use no number
    dialog.terminate()
    with pytest.raises(LocalProtocolError):
        dialog.create_request("BYE", host="h")


def test_secure_dialog_needs_a_sips_contact() -> None:
    invite = req(ALICE_INVITE.replace("INVITE sip:bob", "INVITE sips:bob"))
    dialog = Dialog.from_uac(invite, resp(ALICE_200))
    assert dialog.secure
    with pytest.raises(LocalProtocolError):
        dialog.create_request("INVITE", host="h")
    reinvite = dialog.create_request("INVITE", host="h", contact="<sips:alice@192.0.2.101>")
    assert reinvite.headers.get("Contact") == "<sips:alice@192.0.2.101>"


# --- ACK and CANCEL ----------------------------------------------------------------------------


def test_ack_for_2xx_reuses_the_invite_number_with_a_new_branch() -> None:
    dialog, invite = alice_dialog()
    ack = dialog.create_ack(
        314159,
        host="pc33.atlanta.example.com",
        body=SDP.encode(),
        content_type="application/sdp",
        headers=[("Proxy-Authorization", 'Digest username="alice"')],
    )
    assert roundtrip(ack) == ack
    assert ack.method == "ACK"
    assert (ack.cseq.seq, ack.cseq.method) == (314159, "ACK")
    assert ack.top_via.branch != invite.top_via.branch
    assert ack.top_via.is_rfc3261
    assert str(ack.uri) == "sip:bob@192.0.2.4"
    assert len(ack.routes) == 2
    assert ack.to.tag == BOB_TAG
    assert ack.body == SDP.encode()
    assert ack.headers.get("Proxy-Authorization") == 'Digest username="alice"'
    assert dialog.local_seq == 314159  # ACK takes no number
    with pytest.raises(LocalProtocolError):
        dialog.create_ack(314160, host="h")  # no such INVITE yet


def test_no_ack_in_an_early_dialog() -> None:
    ringing = resp(ALICE_200.replace("200 OK", "180 Ringing"))
    dialog = Dialog.from_uac(req(ALICE_INVITE), ringing)
    with pytest.raises(LocalProtocolError):
        dialog.create_ack(314159, host="h")


def test_cancel_matches_the_invite_per_section_9_1() -> None:
    invite = req(
        ALICE_INVITE.replace(
            "Via: SIP/2.0/UDP pc33",
            "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKtop\nVia: SIP/2.0/UDP pc33",
        ),
        SDP,
    )
    cancel = make_cancel(invite)
    assert roundtrip(cancel) == cancel
    assert cancel.method == "CANCEL"
    assert cancel.uri == invite.uri
    assert cancel.call_id == invite.call_id
    for name in ("To", "From", "Call-ID"):
        assert cancel.headers.get(name) == invite.headers.get(name)
    assert cancel.to.tag is None
    assert (cancel.cseq.seq, cancel.cseq.method) == (314159, "CANCEL")
    assert cancel.headers.values("Via") == [
        "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKtop"
    ]
    assert cancel.headers.lines("Route") == invite.headers.lines("Route")
    assert cancel.max_forwards == 70
    assert cancel.body == b""
    assert "Content-Type" not in cancel.headers
    assert "Contact" not in cancel.headers
    with pytest.raises(LocalProtocolError):
        make_cancel(cancel)
    with pytest.raises(LocalProtocolError):
        make_cancel(req(ALICE_INVITE.replace("INVITE", "ACK")))


# --- receiving requests ------------------------------------------------------------------------


def test_cseq_rules_in_a_uas_dialog() -> None:
    dialog, _, _ = bob_dialog()
    for seq in (314159, 314158):  # equal to, then below, the INVITE's number
        with pytest.raises(RemoteProtocolError) as info:
            dialog.receive_request(in_dialog("INFO", seq))
        assert info.value.status == 500
        assert "out of order" in info.value.reason
        assert info.value.headers is not None  # enough to answer statelessly
        response = make_response(in_dialog("INFO", seq), 500, info.value.reason)
        assert response.reason == info.value.reason
    dialog.receive_request(in_dialog("ACK", 314159))  # the ACK of the INVITE
    dialog.receive_request(in_dialog("INFO", 314170))  # gaps are fine
    assert dialog.remote_seq == 314170
    dialog.receive_request(in_dialog("ACK", 314159))  # an ACK overtaken by the INFO is fine
    with pytest.raises(RemoteProtocolError) as info:
        dialog.receive_request(in_dialog("ACK", 314170))  # names no INVITE
    assert info.value.drop
    with pytest.raises(RemoteProtocolError) as info:
        dialog.receive_request(in_dialog("CANCEL", 314165))
    assert info.value.status == 481


def test_first_request_from_the_peer_sets_remote_seq() -> None:
    dialog, _ = alice_dialog()
    assert dialog.remote_seq is None
    bye = req(f"""
        BYE sip:alice@pc33.atlanta.example.com SIP/2.0
        Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKnashds10
        Max-Forwards: 70
        Route: <sip:ss2.biloxi.example.com;lr>, <sip:ss1.atlanta.example.com;lr>
        From: Bob <sip:bob@biloxi.example.com>;tag={BOB_TAG}
        To: Alice <sip:alice@atlanta.example.com>;tag={ALICE_TAG}
        Call-ID: {CALL_ID}
        CSeq: 7 BYE
        """)
    dialog.receive_request(bye)
    assert dialog.remote_seq == 7
    assert dialog.state is DialogState.CONFIRMED  # until the 200 goes out
    dialog.response_sent(bye, make_response(bye, 200))
    assert dialog.state is DialogState.TERMINATED
    with pytest.raises(RemoteProtocolError) as info:
        dialog.receive_request(bye.with_header("CSeq", "8 BYE"))
    assert info.value.status == 481


def test_receive_request_of_another_dialog_is_a_local_mistake() -> None:
    dialog, _, _ = bob_dialog()
    with pytest.raises(LocalProtocolError):
        dialog.receive_request(in_dialog("INFO", 314160, to_bob=False))


@given(st.lists(st.integers(min_value=1, max_value=2**31 - 1), min_size=1, max_size=12))
def test_requests_are_accepted_iff_cseq_strictly_increases(seqs: list[int]) -> None:
    dialog, _ = alice_dialog()
    template = req(f"""
        INFO sip:alice@pc33.atlanta.example.com SIP/2.0
        Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKinfo
        Max-Forwards: 70
        From: <sip:bob@biloxi.example.com>;tag={BOB_TAG}
        To: <sip:alice@atlanta.example.com>;tag={ALICE_TAG}
        Call-ID: {CALL_ID}
        CSeq: 1 INFO
        """)
    accepted: list[bool] = []
    highest: int | None = None
    for seq in seqs:
        try:
            dialog.receive_request(template.with_header("CSeq", f"{seq} INFO"))
        except RemoteProtocolError as exc:
            assert exc.status == 500
            accepted.append(False)
        else:
            accepted.append(True)
        assert accepted[-1] == (highest is None or seq > highest)
        if accepted[-1]:
            highest = seq
        assert dialog.remote_seq == highest
    assert all(accepted) == all(a < b for a, b in itertools.pairwise(seqs))


# --- target refresh ----------------------------------------------------------------------------


def test_reinvite_moves_the_remote_target_only_when_accepted() -> None:
    dialog, _, _ = bob_dialog()
    reinvite = in_dialog("INVITE", 314160, contact="<sip:alice@192.0.2.222>")
    dialog.receive_request(reinvite)
    assert str(dialog.remote_target) == "sip:alice@pc33.atlanta.example.com"  # not yet
    dialog.response_sent(reinvite, make_response(reinvite, 100))
    dialog.response_sent(reinvite, make_response(reinvite, 488))
    assert str(dialog.remote_target) == "sip:alice@pc33.atlanta.example.com"  # rejected

    again = in_dialog("INVITE", 314161, contact="<sip:alice@192.0.2.222>")
    dialog.receive_request(again)
    dialog.response_sent(again, make_response(again, 200, extra=[BOB_CONTACT]))
    assert str(dialog.remote_target) == "sip:alice@192.0.2.222"
    assert len(dialog.route_set) == 2  # a re-INVITE never touches the route set
    dialog.receive_request(in_dialog("ACK", 314161))

    update = in_dialog("UPDATE", 314162, contact="<sip:alice@192.0.2.223>")
    dialog.receive_request(update)
    dialog.apply_target_refresh(update)  # the primitive response_sent builds on
    assert str(dialog.remote_target) == "sip:alice@192.0.2.223"

    info = in_dialog("INFO", 314163, contact="<sip:alice@192.0.2.224>")
    dialog.receive_request(info)
    dialog.response_sent(info, make_response(info, 200))
    assert str(dialog.remote_target) == "sip:alice@192.0.2.223"  # INFO refreshes nothing


def test_extra_target_refresh_methods() -> None:
    invite = req(BOB_INVITE)
    ok = make_response(invite, 200, to_tag=BOB_TAG, extra=[BOB_CONTACT])
    dialog = Dialog.from_uas(invite, ok, target_refresh=frozenset({"INVITE", "UPDATE", "NOTIFY"}))
    notify = in_dialog("NOTIFY", 314160, contact="<sip:alice@192.0.2.9>")
    dialog.receive_request(notify)
    dialog.response_sent(notify, make_response(notify, 200))
    assert str(dialog.remote_target) == "sip:alice@192.0.2.9"
    assert "NOTIFY" in dialog.target_refresh_methods


def test_uac_reinvite_2xx_moves_target_but_not_route_set() -> None:
    dialog, _ = alice_dialog()
    reinvite = dialog.create_request("INVITE", host="pc33.atlanta.example.com")
    ok = make_response(
        reinvite,
        200,
        extra=[
            ("Record-Route", "<sip:elsewhere.example.com;lr>"),
            ("Contact", "<sip:bob@[2001:db8::4]>"),
        ],
    )
    dialog.receive_response(reinvite, make_response(reinvite, 100))
    dialog.receive_response(reinvite, ok)
    assert str(dialog.remote_target) == "sip:bob@[2001:db8::4]"
    assert [u.host for u in dialog.route_set if isinstance(u, SipUri)] == [
        "ss1.atlanta.example.com",
        "ss2.biloxi.example.com",
    ]


# --- responses ending dialogs ------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 481])
def test_481_or_408_to_an_in_dialog_request_ends_the_dialog(status: int) -> None:
    dialog, _ = alice_dialog()
    info = dialog.create_request("INFO", host="h")
    dialog.receive_response(info, make_response(info, status))
    assert dialog.state is DialogState.TERMINATED


def test_timeout_ends_the_dialog() -> None:
    dialog, _ = alice_dialog()
    dialog.timed_out()
    assert dialog.state is DialogState.TERMINATED


def test_bye_response_ends_the_dialog_unless_challenged() -> None:
    dialog, _ = alice_dialog()
    bye = dialog.create_request("BYE", host="h")
    dialog.receive_response(bye, make_response(bye, 407))
    assert dialog.state is DialogState.CONFIRMED  # send it again with credentials
    bye = dialog.create_request("BYE", host="h", headers=[("Proxy-Authorization", "Digest x")])
    dialog.receive_response(bye, make_response(bye, 200))
    assert dialog.state is DialogState.TERMINATED


def test_receive_response_of_another_dialog_is_a_local_mistake() -> None:
    dialog, _ = alice_dialog()
    info = dialog.create_request("INFO", host="h")
    with pytest.raises(LocalProtocolError):
        dialog.receive_response(info, make_response(info, 200).with_header("To", "<sip:x@y>;tag=z"))


# --- the table: matching, 481, forking ---------------------------------------------------------


def test_table_matches_in_dialog_requests_and_answers_481_otherwise() -> None:
    table = DialogTable()
    dialog = table.add(bob_dialog()[0])
    assert table.match(in_dialog("BYE", 314160)) is dialog
    assert table.match(req(BOB_INVITE)) is None  # no To tag: a new request

    stranger = in_dialog("BYE", 314160, to_bob=False)
    assert table.match(stranger) is None
    answer = table.unknown_dialog_response(stranger)
    assert answer is not None
    assert answer.status == 481
    assert answer.to.tag == "x"
    assert table.unknown_dialog_response(in_dialog("ACK", 314160, to_bob=False)) is None
    with pytest.raises(LocalProtocolError):
        table.unknown_dialog_response(req(BOB_INVITE))

    dialog.terminate()
    assert table.match(in_dialog("BYE", 314160)) is None
    assert table.prune() == [dialog]
    assert len(table) == 0
    table.remove(dialog.id)  # already gone: fine


def test_table_rejects_duplicates() -> None:
    table = DialogTable()
    table.add(bob_dialog()[0])
    with pytest.raises(LocalProtocolError):
        table.add(bob_dialog()[0])


FORK_180 = """
SIP/2.0 180 Ringing
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;received=192.0.2.101
Record-Route: <sip:ss1.atlanta.example.com;lr>
To: Bob <sip:bob@biloxi.example.com>;tag={tag}
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Contact: <sip:bob@{host}>
"""


def test_forked_invite_makes_two_early_dialogs_then_one_is_confirmed() -> None:
    table = DialogTable(random_bytes=counting_bytes())
    invite = req(ALICE_INVITE, SDP)
    assert (
        table.receive_response(
            invite, resp(ALICE_200.replace("200 OK", "100 Trying").replace(";tag=a6c85cf", ""))
        )
        is None
    )
    desk = table.receive_response(invite, resp(FORK_180.format(tag="desk", host="192.0.2.4")))
    mobile = table.receive_response(invite, resp(FORK_180.format(tag="mobile", host="192.0.2.8")))
    assert desk is not None and mobile is not None and desk is not mobile
    assert {d.id.remote_tag for d in table.dialogs_of(invite)} == {"desk", "mobile"}
    assert desk.state is mobile.state is DialogState.EARLY
    assert [str(u) for u in desk.route_set] == ["sip:ss1.atlanta.example.com;lr"]

    # The desk phone answers; its 2xx brings another Contact and the full route set.
    ok = resp(ALICE_200.replace("a6c85cf", "desk").replace("192.0.2.4", "192.0.2.44"))
    assert table.receive_response(invite, ok) is desk
    assert desk.state is DialogState.CONFIRMED
    assert str(desk.remote_target) == "sip:bob@192.0.2.44"
    assert len(desk.route_set) == 2  # recomputed from the 2xx (§13.2.2.4)
    assert mobile.state is DialogState.EARLY

    # A retransmitted 2xx with other Record-Route cannot change a confirmed dialog's route set.
    table.receive_response(invite, ok.with_header("Record-Route", "<sip:other.example.com;lr>"))
    assert len(desk.route_set) == 2

    # The remaining branch is cancelled; its 487 ends only the early dialog.
    gone = resp(
        FORK_180.format(tag="mobile", host="192.0.2.8").replace(
            "180 Ringing", "487 Request Terminated"
        )
    )
    assert table.receive_response(invite, gone) is None
    assert mobile.state is DialogState.TERMINATED
    assert desk.state is DialogState.CONFIRMED
    assert table.prune() == [mobile]
    assert list(table) == [desk]


def test_failure_ends_every_early_fork() -> None:
    table = DialogTable()
    invite = req(ALICE_INVITE)
    for tag in ("a", "b"):
        table.receive_response(invite, resp(FORK_180.format(tag=tag, host="192.0.2.4")))
    busy = resp(ALICE_200.replace("200 OK", "486 Busy Here").replace("a6c85cf", "proxy"))
    assert table.receive_response(invite, busy) is None
    assert [d.state for d in table.dialogs_of(invite)] == [DialogState.TERMINATED] * 2


def test_reliable_provisional_refreshes_an_early_dialog_target() -> None:
    table = DialogTable()
    invite = req(ALICE_INVITE)
    first = table.receive_response(invite, resp(FORK_180.format(tag="a", host="192.0.2.4")))
    assert first is not None
    unreliable = resp(FORK_180.format(tag="a", host="192.0.2.5"))
    table.receive_response(invite, unreliable)
    assert str(first.remote_target) == "sip:bob@192.0.2.4"
    reliable = resp(FORK_180.format(tag="a", host="192.0.2.6") + "Require: 100rel\nRSeq: 1")
    table.receive_response(invite, reliable)
    assert str(first.remote_target) == "sip:bob@192.0.2.6"
    assert first.state is DialogState.EARLY


def test_table_routes_in_dialog_responses_and_ignores_non_creating_methods() -> None:
    table = DialogTable()
    invite = req(ALICE_INVITE)
    dialog = table.receive_response(invite, resp(ALICE_200))
    assert dialog is not None
    info = dialog.create_request("INFO", host="h")
    assert table.receive_response(info, make_response(info, 481)) is dialog
    assert dialog.state is DialogState.TERMINATED
    options = req(ALICE_INVITE.replace("INVITE", "OPTIONS"))
    ok = resp(ALICE_200.replace("INVITE", "OPTIONS"))
    assert table.receive_response(options, ok) is None
    assert len(table) == 1
    assert dialog.id in table


# --- the state machine -------------------------------------------------------------------------


def test_transition_table_is_total_and_never_goes_back() -> None:
    order = [DialogState.EARLY, DialogState.CONFIRMED, DialogState.TERMINATED]
    for state in DialogState:
        for event in DialogInput:
            after = TRANSITIONS[state, event]
            assert order.index(after) >= order.index(state)
    assert all(
        TRANSITIONS[DialogState.TERMINATED, e] is DialogState.TERMINATED for e in DialogInput
    )
    assert TRANSITIONS[DialogState.EARLY, DialogInput.SUCCESS] is DialogState.CONFIRMED
    assert TRANSITIONS[DialogState.CONFIRMED, DialogInput.FAILURE] is DialogState.CONFIRMED


# --- properties --------------------------------------------------------------------------------

HOSTS = st.from_regex(r"[a-z]{1,8}(\.[a-z]{1,8}){0,2}", fullmatch=True)


def _record_route_200(hosts: list[str], loose: list[bool]) -> Response:
    lines = "\n".join(
        f"Record-Route: <sip:{host};{'lr' if lr else 'transport=tcp'}>"
        for host, lr in zip(hosts, loose, strict=True)
    )
    return resp(
        ALICE_200.replace(
            "Record-Route: <sip:ss2.biloxi.example.com;lr>, <sip:ss1.atlanta.example.com;lr>", lines
        )
    )


@given(st.lists(st.tuples(HOSTS, st.booleans()), max_size=6))
def test_uac_route_set_is_the_reversed_record_route(hops: list[tuple[str, bool]]) -> None:
    response = _record_route_200([h for h, _ in hops], [lr for _, lr in hops])
    dialog = Dialog.from_uac(req(ALICE_INVITE), response)
    assert list(dialog.route_set) == [rr.uri for rr in reversed(response.record_routes)]


@given(st.lists(st.tuples(HOSTS, st.booleans()), min_size=1, max_size=6), HOSTS)
def test_strict_routing_round_trips(hops: list[tuple[str, bool]], target: str) -> None:
    """A strict next hop holds the route set and target in Request-URI + Route; unfolding
    them (as the strict router and those after it do) gives the dialog's values back."""
    response = _record_route_200([h for h, _ in hops], [lr for _, lr in hops])
    response = response.with_header("Contact", f"<sip:bob@{target}>")
    dialog = Dialog.from_uac(req(ALICE_INVITE), response)
    request = roundtrip(dialog.create_request("BYE", host="pc33.atlanta.example.com"))
    routes = [r.uri for r in request.routes]
    first = dialog.route_set[0]
    if isinstance(first, SipUri) and "lr" in first.params:
        assert request.uri == dialog.remote_target
        assert routes == list(dialog.route_set)
    else:
        assert [request.uri, *routes[:-1]] == list(dialog.route_set)
        assert routes[-1] == dialog.remote_target
        assert routes[-1] == parse_uri(f"sip:bob@{target}")

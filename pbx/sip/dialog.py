"""Dialogs: RFC 3261 §12, with the ACK of §13.2.2.4, the re-INVITE of §14 and the CANCEL of §9.1.

A dialog is the peer-to-peer relation an INVITE (or SUBSCRIBE, REFER) sets up between two UAs.
:class:`Dialog` keeps its state (§12: ID, sequence numbers, URIs, remote target, route set,
secure flag) and follows the early -> confirmed -> terminated machine in :data:`TRANSITIONS`.
It is sans-IO: it is told about messages (``receive_request``, ``receive_response``,
``response_sent``) and builds requests (``create_request``, ``create_ack``) that the caller
hands to a transaction. Randomness (tags, branches, the first CSeq) comes from an injectable
``random_bytes`` callable, :data:`pbx.sip.randomness.random_bytes` (os.urandom in blocks)
by default.

Choices where the RFCs leave room:

* A target refresh request moves the remote target only once it is accepted: when a 2xx (or a
  reliable 1xx) to it is sent or received (§12.2.2 read with RFC 6141 §4), so a rejected
  re-INVITE leaves the dialog as it was. The UAS side reports what it sent with
  :meth:`Dialog.response_sent`, which calls :meth:`Dialog.apply_target_refresh`.
* ACK and CANCEL inside a dialog carry the CSeq of the INVITE they belong to, which may be
  lower than a later request's (an INFO can overtake the ACK of a re-INVITE). They are checked
  against the last INVITE received, not against the ordering rule of §12.2.2.
* A BYE ends the dialog when it is answered: on the 2xx sent by the UAS, and on any final
  response but 401/407 received by the UAC (a challenged BYE is sent again in the dialog).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import MappingProxyType

from pbx.sip import abnf
from pbx.sip import headers as h
from pbx.sip.errors import LocalProtocolError, ParseError, RemoteProtocolError
from pbx.sip.message import Request, Response, build_request, make_response
from pbx.sip.params import Params
from pbx.sip.randomness import random_bytes as pooled_random
from pbx.sip.uri import SipUri, Uri

RandomBytes = Callable[[int], bytes]

MAX_FORWARDS = 70  # §8.1.1.6
BRANCH_COOKIE = "z9hG4bK"  # §8.1.1.7
# The first CSeq we choose stays far below 2**31 so the dialog can count up (§8.1.1.5).
_FIRST_CSEQ_RANGE = 2**30

# Requests that may change the remote target (§12.2; RFC 3311 adds UPDATE). Dialogs of
# RFC 6665 (SUBSCRIBE, NOTIFY) or RFC 3515 (REFER) pass a larger set.
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE"})
# Requests whose 1xx/2xx responses create dialogs (§12.1; RFC 6665 SUBSCRIBE, RFC 3515 REFER).
DIALOG_CREATING_METHODS = frozenset({"INVITE", "SUBSCRIBE", "REFER"})

# Headers the dialog writes itself; a caller's copy would contradict it.
_DIALOG_HEADERS = frozenset(
    {"Via", "Max-Forwards", "Route", "To", "From", "Call-ID", "CSeq", "Contact", "Content-Type"}
)
# Parameters a Request-URI may not carry (§19.1.1, table 1): ``method``, and URI headers.
_NOT_IN_REQUEST_URI = ("method",)


# ------------------------------------------------------------------------------ randomness


def new_tag(random_bytes: RandomBytes = pooled_random) -> str:
    """A From/To tag with 64 random bits (§19.3 asks for at least 32)."""
    return random_bytes(8).hex()


def new_branch(random_bytes: RandomBytes = pooled_random) -> str:
    """A Via branch with the RFC 3261 magic cookie (§8.1.1.7), unique over space and time."""
    return BRANCH_COOKIE + random_bytes(10).hex()


def new_call_id(host: str | None = None, random_bytes: RandomBytes = pooled_random) -> str:
    """A Call-ID (§8.1.1.4): 128 random bits, ``@host`` appended when given."""
    call_id = random_bytes(16).hex() if host is None else f"{random_bytes(16).hex()}@{host}"
    if not abnf.CALL_ID.fullmatch(call_id):
        raise LocalProtocolError(f"host {host!r} cannot be part of a Call-ID")
    return call_id


def _first_cseq(random_bytes: RandomBytes) -> int:
    return int.from_bytes(random_bytes(4), "big") % _FIRST_CSEQ_RANGE + 1


# ----------------------------------------------------------------------------- identifiers


@dataclass(frozen=True, slots=True)
class DialogId:
    """Call-ID, local tag and remote tag (§12): the key of a dialog, as seen from this UA.

    A tag is ``""`` when the peer sent none (RFC 2543 peers, which §12.1.2 tells a UAC to
    accept as a null tag).
    """

    call_id: str
    local_tag: str
    remote_tag: str

    @classmethod
    def of_received_request(cls, request: Request) -> DialogId:
        """The ID a UAS reads from a request it received: its To tag is ours (§12.2.2)."""
        local = request.to.tag
        if not local:
            raise LocalProtocolError(f"{request.method} has no To tag: it is outside any dialog")
        return cls(request.call_id, local, request.from_.tag or "")

    @classmethod
    def of_received_response(cls, response: Response) -> DialogId:
        """The ID a UAC reads from a response it received: its From tag is ours (§12.1.2)."""
        local = response.from_.tag
        if not local:
            raise RemoteProtocolError("response without a From tag", None)
        return cls(response.call_id, local, response.to.tag or "")

    @classmethod
    def of_sent_request(cls, request: Request) -> DialogId:
        """The ID of the dialog a request we sent belongs to: From tag ours, To tag theirs."""
        local = request.from_.tag
        if not local:
            raise LocalProtocolError(f"{request.method} we sent has no From tag")
        return cls(request.call_id, local, request.to.tag or "")


# ---------------------------------------------------------------------------- state machine


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogInput(enum.Enum):
    """What can move a dialog from one state to another."""

    SUCCESS = "2xx to the dialog-creating request"  # §12.1: sent (UAS) or received (UAC)
    FAILURE = "non-2xx final response to the dialog-creating request"  # §12.3
    GONE = "481 or 408 (or no answer) to an in-dialog request"  # §12.2.1.2
    BYE = "BYE answered"  # §15
    TERMINATE = "the TU ends the dialog"


_E, _C, _T = DialogState.EARLY, DialogState.CONFIRMED, DialogState.TERMINATED
TRANSITIONS: Mapping[tuple[DialogState, DialogInput], DialogState] = MappingProxyType(
    {
        (_E, DialogInput.SUCCESS): _C,
        (_E, DialogInput.FAILURE): _T,
        (_E, DialogInput.GONE): _T,
        (_E, DialogInput.BYE): _T,
        (_E, DialogInput.TERMINATE): _T,
        # A retransmitted 2xx changes nothing; a late failure cannot undo a 2xx (§13.2.2.4).
        (_C, DialogInput.SUCCESS): _C,
        (_C, DialogInput.FAILURE): _C,
        (_C, DialogInput.GONE): _T,
        (_C, DialogInput.BYE): _T,
        (_C, DialogInput.TERMINATE): _T,
        **{(_T, event): _T for event in DialogInput},
    }
)


# --------------------------------------------------------------------------------- dialogs


class Dialog:
    """One dialog's state (§12) and its rules for requests and responses inside it.

    Build one with :meth:`from_uas` or :meth:`from_uac`. The attributes are read-only views;
    the dialog changes only through the ``receive_*``, ``response_sent`` and ``create_*``
    methods and :meth:`terminate`.
    """

    def __init__(
        self,
        *,
        dialog_id: DialogId,
        is_uac: bool,
        state: DialogState,
        local: h.Address,
        remote: h.Address,
        remote_target: Uri,
        route_set: tuple[Uri, ...],
        secure: bool,
        local_seq: int | None,
        remote_seq: int | None,
        creating: h.CSeq,
        local_contact: h.Address | None,
        target_refresh: frozenset[str] = TARGET_REFRESH_METHODS,
        random_bytes: RandomBytes = pooled_random,
    ) -> None:
        self._id = dialog_id
        self._is_uac = is_uac
        self._state = state
        # From/To as they go into requests: URI, display name and tag only (§12.2.1.1).
        self._local = h.Address(local.uri, local.display_name, _tag_params(dialog_id.local_tag))
        self._remote = h.Address(remote.uri, remote.display_name, _tag_params(dialog_id.remote_tag))
        self._remote_target = remote_target
        self._route_set = route_set
        self._secure = secure
        self._local_seq = local_seq
        self._remote_seq = remote_seq
        self._creating = creating
        self._local_contact = local_contact
        self._target_refresh = target_refresh
        self._random_bytes = random_bytes
        # The CSeq of the last INVITE received: the only one an ACK or CANCEL may name.
        self._last_invite_seq = creating.seq if not is_uac and creating.method == "INVITE" else None

    # ------------------------------------------------------------------------ construction

    @classmethod
    def from_uas(
        cls,
        request: Request,
        response: Response,
        *,
        secure: bool | None = None,
        target_refresh: frozenset[str] = TARGET_REFRESH_METHODS,
        random_bytes: RandomBytes = pooled_random,
    ) -> Dialog:
        """The dialog a UAS creates by sending ``response`` (101-299, with a To tag) to the
        dialog-creating ``request`` (§12.1.1).

        ``secure``: whether the request arrived over TLS with a SIPS Request-URI; by default
        the SIPS scheme alone decides (RFC 5630 requires TLS on every hop for SIPS).
        Raises :class:`RemoteProtocolError` (400) when the request cannot set up a dialog, so
        the TU answers that instead of ``response``.
        """
        _check_pair(request, response)
        if not 101 <= response.status <= 299:
            raise LocalProtocolError(f"a {response.status} response does not create a dialog")
        local_tag = response.to.tag
        if not local_tag:
            raise LocalProtocolError("a dialog-creating response needs a To tag")
        if request.to.tag:
            raise LocalProtocolError("the request is already inside a dialog (To has a tag)")
        contacts = request.contacts
        if contacts:
            remote_target = contacts[0].uri
        elif request.top_via.is_rfc3261:
            raise RemoteProtocolError(
                f"{request.method} creating a dialog lacks a Contact", 400, request.headers
            )
        else:
            # An RFC 2543 peer (no magic cookie) may omit Contact: its From URI is where it
            # takes requests (RFC 2543 §6.13; RFC 4475 §3.4.1 asks to accept such INVITEs).
            remote_target = request.from_.uri
        return cls(
            dialog_id=DialogId(request.call_id, local_tag, request.from_.tag or ""),
            is_uac=False,
            state=DialogState.CONFIRMED if response.success else DialogState.EARLY,
            local=request.to,
            remote=request.from_,
            remote_target=remote_target,
            # §12.1.1: the Record-Route URIs in order, parameters kept.
            route_set=tuple(rr.uri for rr in request.record_routes),
            secure=_is_sips(request.uri) if secure is None else secure,
            local_seq=None,
            remote_seq=request.cseq.seq,
            creating=request.cseq,
            local_contact=_first(response.contacts),
            target_refresh=target_refresh,
            random_bytes=random_bytes,
        )

    @classmethod
    def from_uac(
        cls,
        request: Request,
        response: Response,
        *,
        secure: bool | None = None,
        target_refresh: frozenset[str] = TARGET_REFRESH_METHODS,
        random_bytes: RandomBytes = pooled_random,
    ) -> Dialog:
        """The dialog a UAC creates on receiving ``response`` to the dialog-creating
        ``request`` it sent (§12.1.2): early from a 101-199 with a To tag, confirmed from a 2xx.

        ``secure``: whether the request was sent over TLS with a SIPS Request-URI; by default
        the SIPS scheme alone decides. A response too broken to use raises
        :class:`RemoteProtocolError` with ``status None`` (drop it).
        """
        _check_pair(request, response)
        if response.success:
            state = DialogState.CONFIRMED
        elif 101 <= response.status <= 199 and response.to.tag:
            state = DialogState.EARLY
        else:
            raise LocalProtocolError(f"a {response.status} response does not create a dialog")
        local_tag = request.from_.tag
        if not local_tag:
            raise LocalProtocolError("a dialog-creating request needs a From tag")
        with _dropping_broken_response():
            contact = _first(response.contacts)
            # §12.1.2: the Record-Route URIs in reverse order, parameters kept.
            route_set = tuple(rr.uri for rr in reversed(response.record_routes))
        return cls(
            dialog_id=DialogId(request.call_id, local_tag, response.to.tag or ""),
            is_uac=True,
            state=state,
            local=request.from_,
            remote=request.to,
            # A Contact is mandatory here (§12.1.1); without one the Request-URI is the best
            # guess, and a later 2xx may still correct it.
            remote_target=request.uri if contact is None else contact.uri,
            route_set=route_set,
            secure=_is_sips(request.uri) if secure is None else secure,
            local_seq=request.cseq.seq,
            remote_seq=None,
            creating=request.cseq,
            local_contact=_first(request.contacts),
            target_refresh=target_refresh,
            random_bytes=random_bytes,
        )

    # -------------------------------------------------------------------------- state views

    @property
    def id(self) -> DialogId:
        return self._id

    @property
    def is_uac(self) -> bool:
        """Whether this UA sent the dialog-creating request."""
        return self._is_uac

    @property
    def state(self) -> DialogState:
        return self._state

    @property
    def local_seq(self) -> int | None:
        """The CSeq number of the last request we sent; ``None`` until we send one."""
        return self._local_seq

    @property
    def remote_seq(self) -> int | None:
        """The CSeq number of the last request accepted from the peer; ``None`` until then."""
        return self._remote_seq

    @property
    def local_uri(self) -> Uri:
        return self._local.uri

    @property
    def remote_uri(self) -> Uri:
        return self._remote.uri

    @property
    def remote_target(self) -> Uri:
        """Where requests in the dialog go: the peer's Contact URI (§12.1)."""
        return self._remote_target

    @property
    def route_set(self) -> tuple[Uri, ...]:
        """The URIs of the proxies requests traverse, in the order they are visited."""
        return self._route_set

    @property
    def secure(self) -> bool:
        return self._secure

    @property
    def local_contact(self) -> h.Address | None:
        """Our Contact, put into target refresh requests (§12.2.1.1)."""
        return self._local_contact

    @property
    def target_refresh_methods(self) -> frozenset[str]:
        return self._target_refresh

    def __repr__(self) -> str:
        role = "UAC" if self._is_uac else "UAS"
        return f"<Dialog {role} {self._state.value} {self._id!r}>"

    def terminate(self) -> None:
        """End the dialog on the TU's decision (e.g. no ACK came for a 2xx, §13.3.1.4)."""
        self._move(DialogInput.TERMINATE)

    def _move(self, event: DialogInput) -> None:
        self._state = TRANSITIONS[self._state, event]

    # ---------------------------------------------------------------------- building requests

    def create_request(
        self,
        method: str,
        *,
        via: h.Via | str | None = None,
        host: str | None = None,
        port: int | None = None,
        transport: str = "UDP",
        contact: h.Address | str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        """A request inside the dialog (§12.2.1.1) with the next local CSeq number.

        The Via comes from ``via`` (a :class:`Via` or its text) or from ``host``, ``port`` and
        ``transport``; either way it gets a fresh branch. Target refresh requests carry our
        Contact; ``contact`` puts another one into this request (and, for a target refresh,
        into later ones).
        ``headers`` are appended; the headers the dialog owns may not be among them. ACK and
        CANCEL reuse an INVITE's number: see :meth:`create_ack` and :func:`make_cancel`.
        """
        if method in ("ACK", "CANCEL"):
            raise LocalProtocolError(f"build {method} with create_ack / make_cancel")
        if not abnf.is_token(method):
            raise LocalProtocolError(f"invalid method {method!r}")
        if self._state is DialogState.TERMINATED:
            raise LocalProtocolError(f"cannot send {method}: the dialog is terminated")
        refresh = method in self._target_refresh
        given = None if contact is None else _as_address(contact, "Contact")
        contact_value = given or (self._local_contact if refresh else None)
        if contact_value is not None and self._secure and not _is_sips(contact_value.uri):
            raise LocalProtocolError("a secure dialog needs a SIPS Contact (§12.2.1.1)")
        if self._local_seq is None:
            seq = _first_cseq(self._random_bytes)
        elif self._local_seq >= h.MAX_CSEQ:
            raise LocalProtocolError("the local CSeq number is exhausted")
        else:
            seq = self._local_seq + 1
        request = self._build(
            method,
            seq,
            via=_via(via, host, port, transport, new_branch(self._random_bytes)),
            contact=contact_value,
            extra=headers,
            body=body,
            content_type=content_type,
        )
        # Commit only once the request is built: a failed call changes nothing.
        if given is not None and refresh:
            self._local_contact = given
        self._local_seq = seq
        return request

    def create_ack(
        self,
        invite_cseq: int,
        *,
        via: h.Via | str | None = None,
        host: str | None = None,
        port: int | None = None,
        transport: str = "UDP",
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        """The ACK for a 2xx to the INVITE numbered ``invite_cseq`` (§13.2.2.4).

        Built like any request in the dialog (route set, tags, a new branch) but with the
        INVITE's CSeq number and method ACK; the local CSeq does not move. An SDP answer goes
        in ``body``. The INVITE's credentials (Authorization, Proxy-Authorization) must be
        repeated: pass them in ``headers``.
        """
        if self._state is DialogState.EARLY:
            raise LocalProtocolError("an early dialog has no 2xx to acknowledge")
        if self._local_seq is None or not 0 <= invite_cseq <= self._local_seq:
            raise LocalProtocolError(f"no INVITE with CSeq {invite_cseq} was sent in the dialog")
        return self._build(
            "ACK",
            invite_cseq,
            via=_via(via, host, port, transport, new_branch(self._random_bytes)),
            contact=None,
            extra=headers,
            body=body,
            content_type=content_type,
        )

    def _build(
        self,
        method: str,
        seq: int,
        *,
        via: h.Via,
        contact: h.Address | None,
        extra: Iterable[tuple[str, str]],
        body: bytes,
        content_type: str | None,
    ) -> Request:
        added = [(h.canonical_name(name), value) for name, value in extra]
        clashing = sorted({name for name, _ in added} & _DIALOG_HEADERS)
        if clashing:
            raise LocalProtocolError(f"the dialog sets {', '.join(clashing)} itself")
        if body and content_type is None:
            raise LocalProtocolError("a body needs a content_type (§20.15)")
        request_uri, routes = self._routing()
        lines: list[tuple[str, str]] = [
            ("Via", str(via)),
            ("Max-Forwards", str(MAX_FORWARDS)),
            *(("Route", f"<{uri}>") for uri in routes),
            ("To", str(self._remote)),
            ("From", str(self._local)),
            ("Call-ID", self._id.call_id),
            ("CSeq", f"{seq} {method}"),
        ]
        if contact is not None:
            lines.append(("Contact", str(contact)))
        lines.extend(added)
        if content_type is not None:
            lines.append(("Content-Type", content_type))
        return build_request(method, request_uri, lines, body)

    def _routing(self) -> tuple[Uri, tuple[Uri, ...]]:
        """Request-URI and Route values for the next request (§12.2.1.1)."""
        routes = self._route_set
        if not routes:
            return _request_uri(self._remote_target), ()
        first = routes[0]
        if _is_loose(first):
            return _request_uri(self._remote_target), routes
        # A strict router (RFC 2543) expects itself in the Request-URI and takes the real
        # target from the last Route value.
        return _request_uri(first), (*routes[1:], self._remote_target)

    # ---------------------------------------------------------------------- receiving requests

    def receive_request(self, request: Request) -> None:
        """Check a request the peer sent in this dialog (§12.2.2) and record its CSeq.

        Raises :class:`RemoteProtocolError` carrying the answer: 500 for a CSeq out of order,
        481 when the dialog is terminated or a CANCEL names no INVITE, and ``status None``
        (drop) for an ACK that names no INVITE. A target refresh does not change the remote
        target yet: see :meth:`response_sent`.
        """
        if DialogId.of_received_request(request) != self._id:
            raise LocalProtocolError(f"{request.method} belongs to another dialog")
        method, seq = request.method, request.cseq.seq
        if self._state is DialogState.TERMINATED:
            if method == "ACK":
                raise RemoteProtocolError("ACK for a terminated dialog", None)
            raise RemoteProtocolError("the dialog is terminated", 481, request.headers)
        if method in ("ACK", "CANCEL"):
            # Both name the INVITE they belong to, which may be older than the last request.
            if seq != self._last_invite_seq:
                status = None if method == "ACK" else 481
                raise RemoteProtocolError(
                    f"{method} with CSeq {seq} matches no INVITE of the dialog",
                    status,
                    None if status is None else request.headers,
                )
            return
        if self._remote_seq is not None and seq <= self._remote_seq:
            raise RemoteProtocolError(
                f"CSeq {seq} is not above {self._remote_seq}: out of order", 500, request.headers
            )
        self._remote_seq = seq
        if method == "INVITE":
            self._last_invite_seq = seq

    def response_sent(self, request: Request, response: Response) -> None:
        """Tell the dialog how the UAS answered ``request`` (one it received in the dialog,
        or the dialog-creating request): a 2xx confirms an early dialog, a failure ends it,
        an accepted target refresh moves the remote target, a 2xx to BYE ends the dialog."""
        status = response.status
        if status < 101 or request.method == "ACK":
            return
        if not self._is_uac and request.cseq == self._creating:
            if response.to.tag != self._id.local_tag:
                raise LocalProtocolError("the response carries another To tag than the dialog")
            if response.success and self._state is DialogState.EARLY:
                # The 2xx may name another Contact than the 1xx that made the dialog.
                self._local_contact = _first(response.contacts) or self._local_contact
            if status >= 200:
                self._move(DialogInput.SUCCESS if status < 300 else DialogInput.FAILURE)
            return
        if _accepts_refresh(response) and request.method in self._target_refresh:
            self.apply_target_refresh(request)
        if request.method == "BYE" and response.success:
            self._move(DialogInput.BYE)

    def apply_target_refresh(self, request: Request) -> None:
        """Take the remote target from an accepted target refresh request's Contact (§12.2.2);
        a request without Contact leaves it unchanged."""
        contact = _first(request.contacts)
        if contact is not None:
            self._remote_target = contact.uri

    # --------------------------------------------------------------------- receiving responses

    def receive_response(self, request: Request, response: Response) -> None:
        """Update the dialog from a response to ``request``, which we sent in it or which
        created it (§12.1.2, §12.2.1.2, §13.2.2.4).

        A 2xx to the creating request confirms an early dialog and recomputes its route set,
        and a failure to it ends the early dialog whatever its To tag (§12.3: it may come from
        another fork or a proxy). An accepted target refresh moves the remote target; 481 and
        408 end the dialog, as does a final response to BYE but 401/407 (send it again).
        """
        _check_pair(request, response)
        sent = DialogId.of_sent_request(request)
        if (sent.call_id, sent.local_tag) != (self._id.call_id, self._id.local_tag):
            raise LocalProtocolError("the request belongs to another dialog")
        status = response.status
        if status == 100:
            return  # hop-by-hop, says nothing about the dialog
        if self._is_uac and request.cseq == self._creating and status >= 300:
            self._move(DialogInput.FAILURE)
            return
        if DialogId.of_received_response(response) != self._id:
            raise LocalProtocolError("the response belongs to another dialog")
        if self._is_uac and request.cseq == self._creating:
            self._creating_response(response)
        elif status in (408, 481):
            self._move(DialogInput.GONE)
        elif request.method == "BYE" and status >= 200 and status not in (401, 407):
            self._move(DialogInput.BYE)
        elif _accepts_refresh(response) and request.method in self._target_refresh:
            with _dropping_broken_response():
                contact = _first(response.contacts)
            if contact is not None:
                self._remote_target = contact.uri

    def _creating_response(self, response: Response) -> None:
        early = self._state is DialogState.EARLY
        if not (early and (response.success or _is_reliable(response))):
            return  # the route set is fixed once confirmed; unreliable 1xx refresh nothing
        with _dropping_broken_response():
            contact = _first(response.contacts)
            record_routes = response.record_routes
        if contact is not None:
            self._remote_target = contact.uri
        if response.success:
            # §12.1.2 / §13.2.2.4: the 2xx that confirms an early dialog recomputes its route set.
            self._route_set = tuple(rr.uri for rr in reversed(record_routes))
            self._move(DialogInput.SUCCESS)

    def timed_out(self) -> None:
        """An in-dialog request got no response at all: same as a 408 (§12.2.1.2)."""
        self._move(DialogInput.GONE)


# ---------------------------------------------------------------------------------- CANCEL


def make_cancel(invite: Request) -> Request:
    """The CANCEL for a request we sent (§9.1): same Request-URI, Call-ID, To, From and CSeq
    number, method CANCEL, only the top Via, the same Route headers, no body."""
    if invite.method in ("ACK", "CANCEL"):
        raise LocalProtocolError(f"{invite.method} cannot be cancelled")
    vias = invite.headers.values("Via")
    if not vias:
        raise LocalProtocolError("the request to cancel has no Via")
    max_forwards = invite.max_forwards
    lines: list[tuple[str, str]] = [
        ("Via", vias[0]),  # as sent: a proxy matches the CANCEL by it (§9.2, §17.2.3)
        ("Max-Forwards", str(MAX_FORWARDS if max_forwards is None else max_forwards)),
        *(("Route", line) for line in invite.headers.lines("Route")),
        ("To", _single_line(invite, "To")),
        ("From", _single_line(invite, "From")),
        ("Call-ID", _single_line(invite, "Call-ID")),
        ("CSeq", f"{invite.cseq.seq} CANCEL"),
    ]
    return build_request("CANCEL", invite.uri, lines)


def _single_line(request: Request, name: str) -> str:
    line = request.headers.get(name)
    if line is None:
        raise LocalProtocolError(f"the request to cancel has no {name}")
    return line


# ----------------------------------------------------------------------------------- table


class DialogTable:
    """The dialogs of a UA, by :class:`DialogId`.

    One INVITE can fork into several early dialogs that share Call-ID and local tag and differ
    in the remote tag; :meth:`dialogs_of` lists them, and a failure to the INVITE ends them all.
    Terminated dialogs match nothing; :meth:`prune` forgets them.
    """

    def __init__(
        self,
        *,
        creating_methods: frozenset[str] = DIALOG_CREATING_METHODS,
        target_refresh: frozenset[str] = TARGET_REFRESH_METHODS,
        random_bytes: RandomBytes = pooled_random,
    ) -> None:
        # (Call-ID, local tag) -> remote tag -> dialog: forks of one request sit together.
        self._legs: dict[tuple[str, str], dict[str, Dialog]] = {}
        self._creating_methods = creating_methods
        self._target_refresh = target_refresh
        self._random_bytes = random_bytes

    def __len__(self) -> int:
        return sum(len(forks) for forks in self._legs.values())

    def __iter__(self) -> Iterator[Dialog]:
        for forks in list(self._legs.values()):
            yield from list(forks.values())

    def __contains__(self, dialog_id: object) -> bool:
        return isinstance(dialog_id, DialogId) and self.get(dialog_id) is not None

    def get(self, dialog_id: DialogId) -> Dialog | None:
        forks = self._legs.get((dialog_id.call_id, dialog_id.local_tag))
        return None if forks is None else forks.get(dialog_id.remote_tag)

    def add(self, dialog: Dialog) -> Dialog:
        dialog_id = dialog.id
        forks = self._legs.setdefault((dialog_id.call_id, dialog_id.local_tag), {})
        if dialog_id.remote_tag in forks:
            raise LocalProtocolError(f"{dialog_id!r} is already in the table")
        forks[dialog_id.remote_tag] = dialog
        return dialog

    def remove(self, dialog_id: DialogId) -> None:
        """Forget a dialog; forgetting one that is not there is fine."""
        leg = (dialog_id.call_id, dialog_id.local_tag)
        forks = self._legs.get(leg)
        if forks is not None:
            forks.pop(dialog_id.remote_tag, None)
            if not forks:
                del self._legs[leg]

    def prune(self) -> list[Dialog]:
        """Forget the terminated dialogs and return them."""
        gone = [d for d in self if d.state is DialogState.TERMINATED]
        for dialog in gone:
            self.remove(dialog.id)
        return gone

    def dialogs_of(self, request: Request) -> list[Dialog]:
        """The dialogs (forks) created by a request we sent outside any dialog."""
        tag = request.from_.tag
        forks = self._legs.get((request.call_id, tag)) if tag else None
        return [] if forks is None else list(forks.values())

    def match(self, request: Request) -> Dialog | None:
        """The live dialog a received request belongs to, by Call-ID, To tag (ours) and From
        tag (theirs) (§12.2.2); ``None`` for a request without To tag or an unknown dialog."""
        if not request.to.tag:
            return None
        dialog = self.get(DialogId.of_received_request(request))
        if dialog is None or dialog.state is DialogState.TERMINATED:
            return None
        return dialog

    @staticmethod
    def unknown_dialog_response(request: Request) -> Response | None:
        """The answer to a request with a To tag that :meth:`match` found no dialog for: 481
        (§12.2.2); ``None`` for an ACK, which is never answered and is dropped."""
        if not request.to.tag:
            raise LocalProtocolError(f"{request.method} without To tag is outside any dialog")
        if request.method == "ACK":
            return None
        return make_response(request, 481)

    def receive_response(
        self, request: Request, response: Response, *, secure: bool | None = None
    ) -> Dialog | None:
        """Route a response to a request we sent to its dialog, creating one when a response
        to a dialog-creating request first carries a new To tag (§12.1.2, §13.2.2.4).

        A non-2xx final response to a dialog-creating request ends all the early dialogs it
        made (§12.3) and returns ``None``; so does a response that concerns no dialog.
        """
        if request.to.tag:  # sent inside a dialog
            dialog = self.get(DialogId.of_sent_request(request))
            if dialog is not None:
                dialog.receive_response(request, response)
            return dialog
        if request.method not in self._creating_methods:
            return None
        status = response.status
        if status >= 300:
            for dialog in self.dialogs_of(request):
                dialog.receive_response(request, response)  # ends it if still early
            return None
        if status == 100 or (status < 200 and not response.to.tag):
            return None
        dialog = self.get(DialogId.of_received_response(response))
        if dialog is None:
            dialog = self.add(
                Dialog.from_uac(
                    request,
                    response,
                    secure=secure,
                    target_refresh=self._target_refresh,
                    random_bytes=self._random_bytes,
                )
            )
        else:
            dialog.receive_response(request, response)
        return dialog


# --------------------------------------------------------------------------------- helpers


def _check_pair(request: Request, response: Response) -> None:
    if request.call_id != response.call_id or request.cseq != response.cseq:
        raise LocalProtocolError("the response does not answer the request")


def _tag_params(tag: str) -> Params:
    return Params((("tag", tag),)) if tag else Params()


def _first(addresses: tuple[h.Address, ...]) -> h.Address | None:
    return addresses[0] if addresses else None


def _is_sips(uri: Uri) -> bool:
    return isinstance(uri, SipUri) and uri.secure


def _is_loose(uri: Uri) -> bool:
    return isinstance(uri, SipUri) and "lr" in uri.params


def _is_reliable(response: Response) -> bool:
    """A provisional response sent reliably (RFC 3262 §4: it carries RSeq)."""
    return response.provisional and "RSeq" in response.headers


def _accepts_refresh(response: Response) -> bool:
    return response.success or _is_reliable(response)


def _request_uri(uri: Uri) -> Uri:
    """``uri`` without what a Request-URI may not carry (§19.1.1 table 1, §12.2.1.1)."""
    if not isinstance(uri, SipUri) or not (uri.headers or "method" in uri.params):
        return uri
    return replace(uri.without_params(*_NOT_IN_REQUEST_URI), headers=())


def _via(
    via: h.Via | str | None, host: str | None, port: int | None, transport: str, branch: str
) -> h.Via:
    if via is None:
        if host is None:
            raise LocalProtocolError("give either via or host")
        return h.Via(transport.upper(), host, port, Params((("branch", branch),)))
    if host is not None:
        raise LocalProtocolError("give either via or host, not both")
    if isinstance(via, str):
        try:
            via = h.parse_via(via)
        except ParseError as exc:
            raise LocalProtocolError(f"invalid Via {via!r}: {exc.reason}") from None
    return via.with_params(branch=branch)


def _as_address(value: h.Address | str, what: str) -> h.Address:
    if isinstance(value, h.Address):
        return value
    try:
        return h.parse_address(value, what=what)
    except ParseError as exc:
        raise LocalProtocolError(f"invalid {what} {value!r}: {exc.reason}") from None


@contextmanager
def _dropping_broken_response() -> Iterator[None]:
    """Turn a parse error in a received response into "drop it": responses get no answer."""
    try:
        yield
    except ParseError as exc:
        if exc.status is None:
            raise
        raise ParseError(exc.reason, None) from exc

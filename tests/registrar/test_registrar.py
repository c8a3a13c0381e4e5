"""pbx.registrar: the Authenticator and REGISTER processing (RFC 3261 §10.3), sans-IO, on the
in-memory store twins with a real DigestServer and DigestClient; the restart test runs on
SQLite."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from support.imports import loaded
from support.phone import KEY, NOW, PASSWORD, REALM, Phone

from appliance.store import SqliteStore, open_store
from pbx.registrar import Authenticator, Registrar
from pbx.sip import Response
from pbx.sip.auth import DigestClient, parse_challenge
from pbx.sip.events import Peer
from pbx.store import Binding, BindingStore, Extension, MemoryBindingStore, MemoryStore, StoreError

Login = Callable[..., Response]  # the conftest fixture: challenge, answer, final response


def contacts_of(response: Response) -> list[str]:
    return [str(a) for a in response.contacts]


def expires_of(response: Response) -> dict[str, int]:
    return {str(a.uri): int(a.params.get("expires") or -1) for a in response.contacts}


def assert_to_tag(response: Response) -> None:
    assert response.to.tag, f"{response.status} without To tag"


# ----------------------------------------------------------------------------- Authenticator


def test_missing_credentials_get_a_401_with_every_algorithm_in_order(
    registrar: Registrar, phone: Phone, store: MemoryStore
) -> None:
    response = registrar.handle(phone.register(), phone.source, NOW)
    assert response.status == 401
    assert_to_tag(response)
    offered = [parse_challenge(v) for v in response.headers.lines("WWW-Authenticate")]
    assert [c.algorithm for c in offered] == ["SHA-256", "MD5"]
    assert all(c.realm == REALM and c.qop == ("auth",) and not c.stale for c in offered)
    assert store.bindings.list("1001") == []


def test_algorithm_order_is_the_constructors_md5_first_for_sipp(
    store: MemoryStore, phone: Phone
) -> None:
    """DigestServer itself sorts strongest first; the Authenticator keeps the order it was
    given, because SIPp and many phones answer only the first challenge."""
    authenticator = Authenticator(store.directory, REALM, KEY, algorithms=("MD5", "SHA-256"))
    answer = authenticator.check(phone.register(), NOW)
    assert isinstance(answer, Response)
    offered = [parse_challenge(v) for v in answer.headers.lines("WWW-Authenticate")]
    assert [c.algorithm for c in offered] == ["MD5", "SHA-256"]
    # A phone answering the first (MD5) challenge gets in.
    assert authenticator.check(phone.register(challenge=answer), NOW) == "1001"


def test_proxy_mode_answers_407_and_reads_proxy_authorization(
    authenticator: Authenticator, phone: Phone
) -> None:
    answer = authenticator.check(phone.register(), NOW, proxy=True)
    assert isinstance(answer, Response) and answer.status == 407
    assert_to_tag(answer)
    assert "WWW-Authenticate" not in answer.headers
    challenge = parse_challenge(answer.headers.lines("Proxy-Authenticate")[0])
    creds = DigestClient("1001", PASSWORD).authorize(challenge, "REGISTER", "sip:pbx.test")
    request = phone.register().with_header("Proxy-Authorization", creds.to_header())
    assert authenticator.check(request, NOW, proxy=True) == "1001"
    # Authorization is not what a proxy challenge is answered with.
    plain = phone.register().with_header("Authorization", creds.to_header())
    assert isinstance(authenticator.check(plain, NOW, proxy=True), Response)


def test_registration_with_the_right_password(
    login: Login, phone: Phone, store: MemoryStore
) -> None:
    response = login(phone)
    assert response.status == 200, response
    assert_to_tag(response)
    assert expires_of(response) == {phone.contact: 3600}
    assert response.headers.get("Date") == "Tue, 14 Nov 2023 22:13:20 GMT"
    [binding] = store.bindings.list("1001")
    assert binding == Binding(
        aor="1001",
        contact=phone.contact,
        expires_at=NOW + 3600,
        call_id=phone.call_id,
        cseq=2,
        source_transport="UDP",
        source_host="192.168.1.20",
        source_port=5060,
        updated_at=NOW,
        user_agent="test-phone/1.0",
    )


def test_a_stale_nonce_gets_a_stale_challenge(
    registrar: Registrar, login: Login, phone: Phone
) -> None:
    assert login(phone).status == 200
    # The phone reuses its nonce (next nonce-count) after the nonce's 300 s lifetime.
    response = registrar.handle(phone.register(), phone.source, NOW + 301)
    assert response.status == 401
    offered = [parse_challenge(v) for v in response.headers.lines("WWW-Authenticate")]
    assert offered and all(c.stale for c in offered)
    # Within the lifetime the same nonce keeps working.
    assert registrar.handle(phone.register(), phone.source, NOW + 200).status == 200


def test_wrong_password_is_forbidden(login: Login, store: MemoryStore) -> None:
    response = login(Phone("1001", "not-the-password"))
    assert response.status == 403
    assert_to_tag(response)
    assert store.bindings.list("1001") == []


@pytest.mark.parametrize("number", ["1003", "1999"], ids=["disabled", "unknown"])
def test_disabled_or_unknown_users_are_forbidden(login: Login, number: str) -> None:
    assert login(Phone(number, PASSWORD)).status == 403


def test_a_replayed_nonce_count_is_forbidden(
    registrar: Registrar, login: Login, phone: Phone
) -> None:
    assert login(phone).status == 200
    request = phone.register()
    assert registrar.handle(request, phone.source, NOW).status == 200
    # The same Authorization (same nonce and nc) in a new request: a captured answer replayed.
    replay = request.with_header("CSeq", f"{phone.cseq + 1} REGISTER")
    response = registrar.handle(replay, phone.source, NOW)
    assert response.status == 403


def test_the_digest_uri_must_name_the_request_uri(
    authenticator: Authenticator, phone: Phone
) -> None:
    challenge = authenticator.check(phone.register(), NOW)
    assert isinstance(challenge, Response)
    offered = parse_challenge(challenge.headers.lines("WWW-Authenticate")[0])
    client = DigestClient("1001", PASSWORD)

    def with_uri(uri: str) -> str | Response:
        creds = client.authorize(offered, "REGISTER", uri).to_header()
        return authenticator.check(phone.register().with_header("Authorization", creds), NOW)

    refused = with_uri("sip:elsewhere.test")
    assert isinstance(refused, Response) and refused.status == 403
    # An equivalent spelling (§19.1.4: host case) is the same URI.
    assert with_uri("sip:PBX.test") == "1001"
    assert with_uri("sip:pbx.test") == "1001"


def test_other_schemes_get_a_challenge_and_bad_syntax_a_400(
    authenticator: Authenticator, phone: Phone
) -> None:
    basic = phone.register().with_header("Authorization", "Basic MTAwMTpzM2NyZXQ=")
    answer = authenticator.check(basic, NOW)
    assert isinstance(answer, Response) and answer.status == 401
    broken = phone.register().with_header("Authorization", 'Digest username="1001", realm')
    answer = authenticator.check(broken, NOW)
    assert isinstance(answer, Response) and answer.status == 400
    assert_to_tag(answer)


def test_credentials_for_another_realm_get_a_challenge(
    store: MemoryStore, authenticator: Authenticator, phone: Phone
) -> None:
    other = Authenticator(store.directory, "other.test", KEY)
    challenge = other.check(phone.register(), NOW)
    assert isinstance(challenge, Response)
    answer = authenticator.check(phone.register(challenge=challenge), NOW)
    assert isinstance(answer, Response) and answer.status == 401


def test_a_nonce_from_another_key_gets_a_fresh_challenge(
    store: MemoryStore, authenticator: Authenticator, phone: Phone
) -> None:
    """E.g. a box restarted with a new key: phones reusing their cached nonce must be able to
    recover instead of being refused."""
    before = Authenticator(store.directory, REALM, b"the-previous-boot-key-0123456789")
    challenge = before.check(phone.register(), NOW)
    assert isinstance(challenge, Response)
    answer = authenticator.check(phone.register(challenge=challenge), NOW)
    assert isinstance(answer, Response) and answer.status == 401
    assert not any(
        parse_challenge(v).stale for v in answer.headers.lines("WWW-Authenticate")
    )  # stale=true would claim the password was right, which nobody checked


def test_secrets_never_reach_the_log(
    login: Login, phone: Phone, store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    login(Phone("1001", "wrong-password"))
    login(phone)
    secret = store.directory.secret("1001")
    assert secret is not None
    for needle in (PASSWORD, "wrong-password", secret.ha1_md5, secret.ha1_sha256, "response="):
        assert needle not in caplog.text


# ------------------------------------------------------------------------ domain and the AoR


def test_request_uri_of_another_domain_is_not_found(registrar: Registrar, phone: Phone) -> None:
    response = registrar.handle(phone.register(uri="sip:other.example"), phone.source, NOW)
    assert response.status == 404
    assert_to_tag(response)


def test_the_box_answers_to_its_aliases_and_any_domain_without_one(
    store: MemoryStore, authenticator: Authenticator, login: Login
) -> None:
    by_ip = Phone("1001", PASSWORD, domain="192.168.1.1")
    assert login(by_ip).status == 200
    anything = Registrar(store.directory, store.bindings, authenticator)
    elsewhere = Phone("1002", PASSWORD, domain="whatever.example")
    challenge = anything.handle(elsewhere.register(), elsewhere.source, NOW)
    response = anything.handle(elsewhere.register(challenge=challenge), elsewhere.source, NOW)
    assert response.status == 200


def test_a_request_uri_that_is_not_sip_is_unsupported(registrar: Registrar, phone: Phone) -> None:
    response = registrar.handle(phone.register(uri="tel:+4930123"), phone.source, NOW)
    assert response.status == 416


def test_to_must_be_a_sip_uri(login: Login, phone: Phone) -> None:
    response = login(phone, to="<tel:1001>")
    assert response.status == 400  # RFC 4475 §3.3.4


def test_registering_another_users_aor_is_forbidden(login: Login, phone: Phone) -> None:
    response = login(phone, to="<sip:1002@pbx.test>")
    assert response.status == 403
    assert_to_tag(response)


def test_registering_an_unknown_extension_is_not_found(login: Login, phone: Phone) -> None:
    assert login(phone, to="<sip:1999@pbx.test>").status == 404
    assert login(phone, to="<sip:pbx.test>").status == 404  # no user part at all


def test_to_of_another_domain_is_not_found(login: Login, phone: Phone) -> None:
    assert login(phone, to="<sip:1001@other.example>").status == 404


# ----------------------------------------------------------------------------------- contacts


def test_star_removes_every_binding(login: Login, registrar: Registrar, phone: Phone) -> None:
    desk = Phone("1001", PASSWORD, host="192.168.1.30")
    assert login(phone).status == 200
    assert login(desk).status == 200
    assert len(registrar.lookup("1001", NOW)) == 2
    response = registrar.handle(phone.register(["*"], expires=0), phone.source, NOW)
    assert response.status == 200 and contacts_of(response) == []
    assert registrar.lookup("1001", NOW) == []


@pytest.mark.parametrize(
    ("contacts", "expires"),
    [(["*"], 3600), (["*"], None), (["*", "<sip:1001@192.168.1.20>"], 0)],
    ids=["nonzero-expires", "no-expires", "with-another-contact"],
)
def test_star_needs_expires_zero_and_no_other_contact(
    login: Login, registrar: Registrar, phone: Phone, contacts: list[str], expires: int | None
) -> None:
    assert login(phone).status == 200
    # Built past the parser, which already refuses "*" among other contacts.
    request = phone.register([], expires=expires).with_header("Contact", *contacts)
    response = registrar.handle(request, phone.source, NOW)
    assert response.status == 400
    assert_to_tag(response)
    assert len(registrar.lookup("1001", NOW)) == 1


def test_too_brief_an_interval_gets_423_with_min_expires(
    login: Login, registrar: Registrar, phone: Phone
) -> None:
    response = login(phone, expires=30)
    assert response.status == 423
    assert response.headers.get("Min-Expires") == "60"
    assert_to_tag(response)
    assert registrar.lookup("1001", NOW) == []
    # The phone retries with the minimum and gets in.
    assert registrar.handle(phone.register(expires=60), phone.source, NOW).status == 200


def test_a_contact_parameter_below_the_minimum_fails_the_whole_request(
    login: Login, registrar: Registrar, phone: Phone
) -> None:
    good, brief = "<sip:1001@192.168.1.20>", "<sip:1001@192.168.1.21>;expires=5"
    assert login(phone, contacts=[good, brief]).status == 423
    assert registrar.lookup("1001", NOW) == []


def test_long_intervals_are_clamped_and_parameters_beat_the_header(
    login: Login, registrar: Registrar, phone: Phone
) -> None:
    contacts = [
        "<sip:1001@10.0.0.1>",  # the header's 7200, clamped to 3600
        "<sip:1001@10.0.0.2>;expires=120",
        "<sip:1001@10.0.0.3>;expires=99999999999999",
    ]
    response = login(phone, contacts=contacts, expires=7200)
    assert response.status == 200
    assert expires_of(response) == {
        "sip:1001@10.0.0.1": 3600,
        "sip:1001@10.0.0.2": 120,
        "sip:1001@10.0.0.3": 3600,
    }
    by_contact = {b.contact: b.expires_at for b in registrar.lookup("1001", NOW)}
    assert by_contact["sip:1001@10.0.0.2"] == NOW + 120


def test_no_expiry_anywhere_gets_the_default(
    store: MemoryStore, authenticator: Authenticator
) -> None:
    registrar = Registrar(store.directory, store.bindings, authenticator, default_expires=1800)
    phone = Phone("1001", PASSWORD)
    challenge = registrar.handle(phone.register(expires=None), phone.source, NOW)
    response = registrar.handle(
        phone.register(expires=None, challenge=challenge), phone.source, NOW
    )
    assert expires_of(response) == {phone.contact: 1800}


def test_expires_zero_removes_one_binding(login: Login, registrar: Registrar, phone: Phone) -> None:
    assert login(phone, contacts=["<sip:1001@10.0.0.1>", "<sip:1001@10.0.0.2>"]).status == 200
    response = registrar.handle(
        phone.register(["<sip:1001@10.0.0.1>;expires=0"]), phone.source, NOW
    )
    assert response.status == 200
    assert contacts_of(response) == ["<sip:1001@10.0.0.2>;expires=3600"]


@pytest.mark.parametrize("q", ["=1.5", "=-0.1", "=abc", "=nan", "=1e-1", "=0.5000", ""])
def test_q_values_out_of_range_are_bad_requests(
    login: Login, registrar: Registrar, phone: Phone, q: str
) -> None:
    response = login(phone, contacts=[f"<{phone.contact}>;q{q}"])
    assert response.status == 400
    assert_to_tag(response)
    assert registrar.lookup("1001", NOW) == []


def test_bad_contact_expires_is_a_bad_request(login: Login, phone: Phone) -> None:
    assert login(phone, contacts=[f"<{phone.contact}>;expires=soon"]).status == 400


def test_a_malformed_contact_is_a_bad_request(registrar: Registrar, phone: Phone) -> None:
    """The parser refuses these already; the registrar does not count on it."""
    challenge = registrar.handle(phone.register(), phone.source, NOW)
    request = phone.register(challenge=challenge).with_header("Contact", "<sip:1001@10.0.0.1")
    response = registrar.handle(request, phone.source, NOW)
    assert response.status == 400
    assert_to_tag(response)


def test_multiple_contacts_with_q_values_ring_in_order(
    login: Login, registrar: Registrar, phone: Phone
) -> None:
    contacts = [
        "<sip:1001@10.0.0.1>;q=0.1",
        "<sip:1001@10.0.0.2>;q=0.9",  # one line with two values below
        "<sip:1001@10.0.0.3>, <sip:1001@10.0.0.4>;q=0.5",
    ]
    response = login(phone, contacts=contacts)
    assert response.status == 200
    assert len(response.contacts) == 4
    qs = {str(a.uri): a.params.get("q") for a in response.contacts}
    assert qs == {
        "sip:1001@10.0.0.1": "0.1",
        "sip:1001@10.0.0.2": "0.9",
        "sip:1001@10.0.0.3": None,
        "sip:1001@10.0.0.4": "0.5",
    }
    order = [b.contact for b in registrar.lookup("1001", NOW)]
    # no q ranks as 1.0
    assert order == [f"sip:1001@10.0.0.{i}" for i in (3, 2, 4, 1)]


def test_lookup_prefers_the_most_recent_among_equal_q(
    login: Login, registrar: Registrar, phone: Phone
) -> None:
    desk = Phone("1001", PASSWORD, host="192.168.1.30")
    assert login(phone, NOW).status == 200
    assert login(desk, NOW + 10).status == 200
    assert [b.contact for b in registrar.lookup("1001", NOW + 20)] == [desk.contact, phone.contact]
    # Past the first one's expiry only the second is left.
    assert [b.contact for b in registrar.lookup("1001", NOW + 3605)] == [desk.contact]
    assert registrar.lookup("1002", NOW) == []


def test_a_register_without_contact_is_a_query(
    login: Login, registrar: Registrar, phone: Phone, store: MemoryStore
) -> None:
    assert login(phone).status == 200
    puts = spy_puts(store.bindings)
    response = registrar.handle(phone.register([]), phone.source, NOW + 100)
    assert response.status == 200
    assert expires_of(response) == {phone.contact: 3500}
    assert puts == []


def test_the_200_lists_the_phones_own_contact_among_all(
    login: Login, registrar: Registrar, phone: Phone
) -> None:
    """Phones look for their own Contact in the 200 (§10.2.4) to learn their expiry."""
    desk = Phone("1001", PASSWORD, host="192.168.1.30")
    assert login(desk).status == 200
    contact = f"<{phone.contact};transport=udp;line=abc>"
    response = login(phone, contacts=[contact + ";expires=600"])
    assert response.status == 200
    assert f"{contact};expires=600" in contacts_of(response)
    assert f"<{desk.contact}>;expires=3600" in contacts_of(response)


def test_an_equivalent_spelling_updates_the_same_binding(
    login: Login, registrar: Registrar, phone: Phone
) -> None:
    assert login(phone, contacts=["<sip:1001@Phone.Example:5060>"]).status == 200
    response = registrar.handle(
        phone.register(["<sip:1001@phone.example:5060>;expires=600"]), phone.source, NOW
    )
    assert contacts_of(response) == ["<sip:1001@phone.example:5060>;expires=600"]
    assert [b.contact for b in registrar.lookup("1001", NOW)] == ["sip:1001@phone.example:5060"]


def test_instance_reg_id_user_agent_path_and_source_are_stored(
    login: Login, registrar: Registrar, store: MemoryStore
) -> None:
    behind_nat = Phone("1001", PASSWORD, source=Peer("UDP", "203.0.113.7", 40123))
    instance = "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"
    contact = f'<{behind_nat.contact}>;+sip.instance="{instance}";reg-id=1'
    response = login(
        behind_nat,
        contacts=[contact],
        headers=[("Path", "<sip:edge.pbx.test;lr>"), ("Supported", "path, outbound")],
    )
    assert response.status == 200
    [echoed] = response.contacts
    assert echoed.params.get("+sip.instance") == instance
    assert echoed.params.get("reg-id") == "1"
    assert response.headers.values("Path") == ["<sip:edge.pbx.test;lr>"]
    [binding] = store.bindings.list("1001")
    assert (binding.source_host, binding.source_port) == ("203.0.113.7", 40123)
    assert binding.instance_id == instance and binding.reg_id == 1
    assert binding.path == ("<sip:edge.pbx.test;lr>",)
    assert binding.user_agent == "test-phone/1.0"


# -------------------------------------------------------------- writes: one per changed binding


def spy_puts(bindings: BindingStore) -> list[tuple[str, str]]:
    """Record every put and remove on ``bindings`` (its methods wrapped in place)."""
    calls: list[tuple[str, str]] = []
    put, remove = bindings.put, bindings.remove

    def spied_put(binding: Binding) -> None:
        calls.append(("put", binding.contact))
        put(binding)

    def spied_remove(aor: str, contact: str) -> bool:
        calls.append(("remove", contact))
        return remove(aor, contact)

    bindings.put = spied_put  # type: ignore[method-assign]
    bindings.remove = spied_remove  # type: ignore[method-assign]
    return calls


def test_a_refresh_writes_only_the_binding_it_refreshes(
    login: Login, registrar: Registrar, phone: Phone, store: MemoryStore
) -> None:
    desk = Phone("1001", PASSWORD, host="192.168.1.30")
    assert login(phone).status == 200
    assert login(desk).status == 200
    calls = spy_puts(store.bindings)
    response = registrar.handle(phone.register(), phone.source, NOW + 200)
    assert response.status == 200
    assert calls == [("put", phone.contact)]  # the desk phone's binding is not rewritten
    [mine] = [b for b in store.bindings.list("1001") if b.contact == phone.contact]
    assert (mine.expires_at, mine.cseq, mine.updated_at) == (NOW + 3800, 3, NOW + 200)


def test_requests_that_change_nothing_write_nothing(
    login: Login, registrar: Registrar, phone: Phone, store: MemoryStore
) -> None:
    assert login(phone).status == 200
    calls = spy_puts(store.bindings)
    for request in (
        phone.register([]),  # a query
        phone.register(["<sip:1001@10.9.9.9>;expires=0"]),  # removes what was never bound
        phone.register(expires=5),  # 423
        phone.register(cseq=1),  # out of order
    ):
        assert registrar.handle(request, phone.source, NOW).status in (200, 423, 500)
    assert calls == []


# -------------------------------------------------------------------- §10.3 step 7: CSeq order


def test_an_out_of_order_register_fails_whole(
    login: Login, registrar: Registrar, phone: Phone, store: MemoryStore
) -> None:
    assert login(phone).status == 200  # CSeq 2
    before = store.bindings.list("1001")
    for cseq in (1, 2):
        # Even the new contact in the same request is not added: all or nothing.
        request = phone.register([f"<{phone.contact}>", "<sip:1001@10.0.0.9>"], cseq=cseq)
        response = registrar.handle(request, phone.source, NOW + 5)
        assert response.status == 500
        assert_to_tag(response)
    assert store.bindings.list("1001") == before
    # A higher CSeq updates.
    response = registrar.handle(phone.register(cseq=3, expires=600), phone.source, NOW + 5)
    assert expires_of(response) == {phone.contact: 600}


def test_an_out_of_order_star_fails_whole(login: Login, registrar: Registrar, phone: Phone) -> None:
    assert login(phone).status == 200
    response = registrar.handle(phone.register(["*"], expires=0, cseq=2), phone.source, NOW)
    assert response.status == 500
    assert len(registrar.lookup("1001", NOW)) == 1


def test_another_call_id_updates_whatever_its_cseq(
    login: Login, registrar: Registrar, phone: Phone
) -> None:
    """A rebooted phone starts a new Call-ID, maybe at a lower CSeq: not out of order."""
    assert login(phone).status == 200
    rebooted = Phone("1001", PASSWORD)  # same contact, new Call-ID
    response = login(rebooted, expires=900)
    assert response.status == 200
    [binding] = registrar.lookup("1001", NOW)
    assert (binding.call_id, binding.cseq) == (rebooted.call_id, 2)
    assert expires_of(response) == {phone.contact: 900}


def test_a_removal_with_an_old_cseq_is_refused_too(
    login: Login, registrar: Registrar, phone: Phone
) -> None:
    assert login(phone).status == 200
    response = registrar.handle(phone.register(expires=0, cseq=2), phone.source, NOW)
    assert response.status == 500
    assert len(registrar.lookup("1001", NOW)) == 1


# ------------------------------------------------------------------------- store failure


class FailingOnSecondPut(MemoryBindingStore):
    def __init__(self) -> None:
        super().__init__()
        self.puts = 0

    def put(self, binding: Binding) -> None:
        self.puts += 1
        if self.puts == 2:
            raise StoreError("disk full")
        super().put(binding)


def test_a_failed_write_undoes_the_others_and_answers_500(
    store: MemoryStore, authenticator: Authenticator
) -> None:
    bindings = FailingOnSecondPut()
    registrar = Registrar(store.directory, bindings, authenticator)
    phone = Phone("1001", PASSWORD)
    challenge = registrar.handle(phone.register(), phone.source, NOW)
    request = phone.register(["<sip:1001@10.0.0.1>", "<sip:1001@10.0.0.2>"], challenge=challenge)
    response = registrar.handle(request, phone.source, NOW)
    assert response.status == 500
    assert bindings.list("1001") == []


# ------------------------------------------------------------------------------- restart


def test_bindings_survive_a_restart_on_sqlite(tmp_path: Path) -> None:
    phone = Phone("1001", PASSWORD)

    def boot() -> tuple[Registrar, SqliteStore]:
        s = open_store(tmp_path)
        authenticator = Authenticator(s.directory, REALM, KEY)
        return Registrar(s.directory, s.bindings, authenticator, domain=REALM), s

    first = open_store(tmp_path)
    first.directory.create(Extension("1001"))
    first.directory.set_password("1001", PASSWORD, REALM)
    first.close()

    registrar, s = boot()
    challenge = registrar.handle(phone.register(), phone.source, NOW)
    assert registrar.handle(phone.register(challenge=challenge), phone.source, NOW).status == 200
    s.close()

    registrar, s = boot()  # a new process: new Registrar, same files
    try:
        [binding] = registrar.lookup("1001", NOW + 60)
        assert (binding.contact, binding.call_id, binding.cseq) == (phone.contact, phone.call_id, 2)
        # The nonce is signed with the same key: the phone's cached nonce still works, and
        # the stored CSeq still orders its requests.
        assert registrar.handle(phone.register(cseq=2), phone.source, NOW + 60).status == 500
        response = registrar.handle(phone.register(), phone.source, NOW + 60)
        assert response.status == 200
        assert expires_of(response) == {phone.contact: 3600}
    finally:
        s.close()


# ------------------------------------------------------------------------------ construction


def test_expiry_bounds_must_be_ordered(store: MemoryStore, authenticator: Authenticator) -> None:
    with pytest.raises(ValueError):
        Registrar(store.directory, store.bindings, authenticator, min_expires=600, max_expires=60)
    with pytest.raises(ValueError):
        Registrar(store.directory, store.bindings, authenticator, default_expires=7200)


def test_importing_the_registrar_loads_no_io() -> None:
    """The sans-IO part is importable without asyncio, sockets or SQLite (RegistrarJobs
    imports asyncio when it runs)."""
    assert loaded("import pbx.registrar", ("asyncio", "socket", "selectors", "sqlite3")) == []

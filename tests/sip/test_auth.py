"""Tests of pbx.sip.auth: Digest authentication (RFC 3261 §22, RFC 7616, RFC 8760)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.sip.auth import (
    SUPPORTED_ALGORITHMS,
    AuthStatus,
    Challenge,
    Credentials,
    DigestClient,
    DigestServer,
    UnsupportedChallengeError,
    UnsupportedSchemeError,
    best_challenge,
    compute_response,
    ha1,
    parse_challenge,
    parse_credentials,
    uri_matches,
)
from pbx.sip.errors import LocalProtocolError, ParseError, SipError

# --- known-answer vectors ---------------------------------------------------------------------

# RFC 7616 §3.9.1: the same request answered with MD5 and with SHA-256.
RFC7616 = {
    "username": "Mufasa",
    "password": "Circle of Life",
    "realm": "http-auth@example.org",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    "opaque": "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
    "uri": "/dir/index.html",
}
RFC7616_MD5 = "8ca523f5e9506fed4657c9700eebdbec"
RFC7616_SHA256 = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"

# RFC 2617 §3.5 (note "Circle Of Life" with a capital O there).
RFC2617_RESPONSE = "6629fae49393a05397450978507c4ef1"

RFC7616_CHALLENGE_SHA256 = """Digest
       realm="http-auth@example.org",
       qop="auth, auth-int",
       algorithm=SHA-256,
       nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
       opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"""".replace("\n", "\r\n")

RFC7616_CREDENTIALS_SHA256 = """Digest username="Mufasa",
       realm="http-auth@example.org",
       uri="/dir/index.html",
       algorithm=SHA-256,
       nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
       nc=00000001,
       cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
       qop=auth,
       response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
       opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"""".replace("\n", "\r\n")


@pytest.mark.parametrize(
    ("algorithm", "expected"), [("MD5", RFC7616_MD5), ("SHA-256", RFC7616_SHA256)]
)
def test_rfc7616_response(algorithm: str, expected: str) -> None:
    secret = ha1(RFC7616["username"], RFC7616["realm"], RFC7616["password"], algorithm)
    got = compute_response(
        ha1=secret,
        algorithm=algorithm,
        nonce=RFC7616["nonce"],
        method="GET",
        uri=RFC7616["uri"],
        qop="auth",
        nc="00000001",
        cnonce=RFC7616["cnonce"],
    )
    assert got == expected


def test_rfc2617_response() -> None:
    secret = ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
    got = compute_response(
        ha1=secret,
        algorithm=None,  # absent means MD5
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        method="GET",
        uri="/dir/index.html",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
    )
    assert got == RFC2617_RESPONSE


def test_ha1_matches_definition_and_sess_shares_base() -> None:
    assert ha1("u", "r", "p", "MD5") == hashlib.md5(b"u:r:p").hexdigest()
    assert ha1("u", "r", "p", "SHA-256") == hashlib.sha256(b"u:r:p").hexdigest()
    assert ha1("u", "r", "p", "md5-SESS") == ha1("u", "r", "p", "MD5")
    assert ha1("u", "r", "p", "SHA-256-sess") == ha1("u", "r", "p", "SHA-256")
    # UTF-8, as SIP and RFC 7616 charset=UTF-8 want.
    assert ha1("jäsøn", "r", "p", "MD5") == hashlib.md5("jäsøn:r:p".encode()).hexdigest()
    with pytest.raises(LocalProtocolError):
        ha1("u", "r", "p", "SHA-1")


def test_sess_and_auth_int_follow_rfc7616_formulas() -> None:
    base = ha1("u", "r", "p", "SHA-256")

    def h(text: str | bytes) -> str:
        return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()

    sess_key = h(f"{base}:N:C")
    got = compute_response(
        ha1=base,
        algorithm="SHA-256-sess",
        nonce="N",
        method="INVITE",
        uri="sip:bob@b.example",
        qop="auth-int",
        nc="00000002",
        cnonce="C",
        body=b"v=0\r\n",
    )
    body_hash = h(b"v=0\r\n")
    a2 = f"INVITE:sip:bob@b.example:{body_hash}"
    assert got == h(f"{sess_key}:N:00000002:C:auth-int:{h(a2)}")
    # RFC 2069: no qop.
    rfc2069 = compute_response(ha1=base, algorithm="SHA-256", nonce="N", method="M", uri="U")
    assert rfc2069 == h(f"{base}:N:{h('M:U')}")


def test_client_answers_rfc7616_challenge_like_the_rfc() -> None:
    challenge = parse_challenge(RFC7616_CHALLENGE_SHA256)
    assert challenge.qop == ("auth", "auth-int")
    assert challenge.algorithm == "SHA-256"
    client = DigestClient("Mufasa", "Circle of Life", random_bytes=lambda n: b"\x5a" * n)
    creds = client.authorize(challenge, "GET", RFC7616["uri"])
    rfc = parse_credentials(RFC7616_CREDENTIALS_SHA256)
    # Everything but the client's own cnonce (and so the response) is as in the RFC.
    assert dataclasses.replace(creds, cnonce=rfc.cnonce, response=rfc.response) == rfc
    assert creds.cnonce == "5a" * 16
    assert creds.response == compute_response(
        ha1=ha1("Mufasa", RFC7616["realm"], "Circle of Life", "SHA-256"),
        algorithm="SHA-256",
        nonce=RFC7616["nonce"],
        method="GET",
        uri=RFC7616["uri"],
        qop="auth",
        nc="00000001",
        cnonce=creds.cnonce,
    )


def test_parse_rfc7616_credentials_fields() -> None:
    creds = parse_credentials(RFC7616_CREDENTIALS_SHA256)
    assert creds == Credentials(
        username="Mufasa",
        realm=RFC7616["realm"],
        nonce=RFC7616["nonce"],
        uri=RFC7616["uri"],
        response=RFC7616_SHA256,
        algorithm="SHA-256",
        cnonce=RFC7616["cnonce"],
        opaque=RFC7616["opaque"],
        qop="auth",
        nc="00000001",
    )
    assert parse_credentials(creds.to_header()) == creds


# --- parsing ----------------------------------------------------------------------------------


def test_parse_is_case_insensitive_and_tolerates_lws() -> None:
    c = parse_challenge(
        'dIgEsT   REALM =\t"a, b" ,NONCE= "x\\"y\\\\z"  ,  Algorithm = md5,stale=TRUE, foo=bar'
    )
    assert c.realm == "a, b"
    assert c.nonce == 'x"y\\z'
    assert c.algorithm == "md5"
    assert c.stale is True
    assert c.params == (("foo", "bar"),)
    assert parse_challenge(c.to_header()) == c


def test_parse_quoted_qop_and_nc_leniently() -> None:
    creds = parse_credentials('Digest username="a", qop="auth", nc="00000001"')
    assert (creds.qop, creds.nc) == ("auth", "00000001")
    # Serialization uses tokens for those, as RFC 7616 §3.4 requires.
    assert "qop=auth" in creds.to_header()
    assert "nc=00000001" in creds.to_header()


def test_stale_other_values_mean_false() -> None:
    assert not parse_challenge('Digest realm="r", nonce="n", stale=false').stale
    assert not parse_challenge('Digest realm="r", nonce="n", stale="maybe"').stale


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "Digest",
        "Digest ",
        'Digest realm="r" nonce="n"',  # missing comma
        'Digest realm="r",, nonce="n"',
        'Digest realm="r", nonce="n",',
        'Digest realm="unterminated, nonce="n"',
        'Digest realm="r", nonce="n", realm="again"',  # duplicate
        'Digest realm="r", NONCE="n", nonce="m"',  # duplicate, other case
        'Digest realm=, nonce="n"',
        'Digest realm="r", nonce="n", =x',
        'Digest realm="r", nonce="n", a b=c',
        'Digest realm="r\x01", nonce="n"',  # control character
        'Digest realm="r"\r\n, nonce="n"',  # CRLF not followed by whitespace
        'Digest realm="r",\nnonce="n"',
        'Digest realm="r", nonce="n\\',
        "Digest realm=r/x, nonce=n",  # "/" is not a token character
    ],
)
def test_bad_syntax_raises_parse_error(value: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_challenge(value)
    assert info.value.status == 400
    assert info.value.reason
    with pytest.raises(ParseError):
        parse_credentials(value)


def test_invalid_utf8_is_parse_error() -> None:
    # The message parser decodes with surrogateescape: bad bytes arrive as lone surrogates.
    raw = b'Digest realm="caf\xe9", nonce="n"'.decode("utf-8", "surrogateescape")
    with pytest.raises(ParseError):
        parse_challenge(raw)
    ok = 'Digest realm="café", nonce="n"'.encode().decode("utf-8", "surrogateescape")
    assert parse_challenge(ok).realm == "café"


def test_challenge_without_realm_or_nonce_is_parse_error() -> None:
    with pytest.raises(ParseError):
        parse_challenge('Digest realm="r"')
    with pytest.raises(ParseError):
        parse_challenge('Digest nonce="n"')


def test_folded_header_is_accepted() -> None:
    c = parse_challenge('Digest realm="r",\r\n\tnonce="n"')
    assert (c.realm, c.nonce) == ("r", "n")


@pytest.mark.parametrize(
    "value", ["Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", 'NTLM realm="x"', "Bearer"]
)
def test_other_scheme_is_distinct_error(value: str) -> None:
    with pytest.raises(UnsupportedSchemeError) as info:
        parse_credentials(value)
    assert not isinstance(info.value, ParseError)
    assert info.value.scheme == value.split(maxsplit=1)[0]
    with pytest.raises(UnsupportedSchemeError):
        parse_challenge(value)


def test_serializer_refuses_what_cannot_be_sent() -> None:
    with pytest.raises(LocalProtocolError):
        Challenge(realm="a\r\nb", nonce="n").to_header()
    with pytest.raises(LocalProtocolError):
        Credentials(username="u", nc="0000 0001").to_header()
    with pytest.raises(LocalProtocolError):
        Credentials(username="u", params=(("realm", "again"),)).to_header()
    with pytest.raises(LocalProtocolError):
        Credentials().to_header()


# --- round-trip properties --------------------------------------------------------------------

TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
tokens = st.text(TOKEN_ALPHABET, min_size=1, max_size=12)
# Anything but CR and LF can be carried in a quoted string (escaped where needed);
# codec="utf-8" leaves out surrogates, which the parser rejects as bad UTF-8.
quotable = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=30)
tricky = st.one_of(quotable, st.text('"\\ ,=\tab', max_size=12))
CHALLENGE_KEYS = {"realm", "nonce", "algorithm", "qop", "opaque", "domain", "stale"}
CREDENTIAL_KEYS = {
    "username",
    "realm",
    "nonce",
    "uri",
    "response",
    "algorithm",
    "cnonce",
    "opaque",
    "qop",
    "nc",
}


def extras(known: set[str]) -> st.SearchStrategy[tuple[tuple[str, str], ...]]:
    names = tokens.filter(lambda n: n.lower() not in known)
    pairs = st.lists(st.tuples(names, tricky), max_size=3, unique_by=lambda p: p[0].lower())
    return pairs.map(tuple)


challenges = st.builds(
    Challenge,
    realm=tricky,
    nonce=tricky,
    algorithm=st.none() | tokens,
    qop=st.lists(tokens, max_size=3).map(tuple),
    opaque=st.none() | tricky,
    domain=st.none() | tricky,
    stale=st.booleans(),
    params=extras(CHALLENGE_KEYS),
)

credentials = st.builds(
    Credentials,
    username=st.none() | tricky,
    realm=st.none() | tricky,
    nonce=st.none() | tricky,
    uri=st.none() | tricky,
    response=st.none() | tricky,
    algorithm=st.none() | tokens,
    cnonce=st.none() | tricky,
    opaque=st.none() | tricky,
    qop=st.none() | tokens,
    nc=st.none() | tokens,
    params=extras(CREDENTIAL_KEYS),
).filter(lambda c: c != Credentials())


@given(challenges)
def test_challenge_round_trip(challenge: Challenge) -> None:
    assert parse_challenge(challenge.to_header()) == challenge


@given(credentials)
def test_credentials_round_trip(creds: Credentials) -> None:
    assert parse_credentials(creds.to_header()) == creds


@given(
    st.text(max_size=200)
    | st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF) | st.characters())
)
@settings(max_examples=500)
def test_garbage_raises_only_sip_errors(value: str) -> None:
    for parse in (parse_challenge, parse_credentials):
        with contextlib.suppress(SipError):
            parse(value)


digest_ish = st.lists(
    st.sampled_from(["Digest ", "realm", "nonce", "=", '"', "\\", ",", " ", "\t", "x", "\r\n "]),
    max_size=30,
).map("".join)


@given(digest_ish)
@settings(max_examples=500)
def test_near_miss_garbage_raises_only_sip_errors(value: str) -> None:
    for parse in (parse_challenge, parse_credentials):
        try:
            result = parse(value)
        except SipError:
            continue
        assert parse(result.to_header()) == result  # whatever parses also round-trips


# --- server and client together ---------------------------------------------------------------

KEY = b"k" * 32
REALM = "pbx.example"
USERS = {"alice": "wonderland", "bob": "b0b"}
URI = "sip:pbx.example"


def lookup(username: str, algorithm: str) -> str | None:
    password = USERS.get(username)
    return None if password is None else ha1(username, REALM, password, algorithm)


def counter_bytes() -> itertools.count[int]:
    return itertools.count()


def make_server(**kwargs: object) -> DigestServer:
    return DigestServer(REALM, KEY, **kwargs)  # type: ignore[arg-type]


def test_challenges_order_and_shape() -> None:
    server = make_server(algorithms=("MD5", "SHA-256"))
    cs = server.challenges(1000.0)
    assert [c.algorithm for c in cs] == ["SHA-256", "MD5"]  # strongest first (RFC 8760)
    assert all(c.realm == REALM and c.qop == ("auth",) and not c.stale for c in cs)
    assert len({c.nonce for c in cs}) == 2
    assert all(parse_challenge(c.to_header()) == c for c in cs)
    assert all(c.stale for c in server.challenges(1000.0, stale=True))


@pytest.mark.parametrize("algorithm", SUPPORTED_ALGORITHMS)
def test_round_trip_every_algorithm(algorithm: str) -> None:
    server = make_server(algorithms=(algorithm,))
    client = DigestClient("alice", "wonderland")
    challenge = parse_challenge(server.challenges(1000.0)[0].to_header())
    creds = parse_credentials(client.authorize(challenge, "REGISTER", URI).to_header())
    assert creds.algorithm == algorithm
    result = server.verify(creds, "REGISTER", lookup, 1001.0)
    assert result.status is AuthStatus.OK
    assert result.ok and result.username == "alice"


def test_client_picks_strongest_challenge() -> None:
    server = make_server()
    client = DigestClient("bob", "b0b")
    cs = list(reversed(server.challenges(5.0)))  # MD5 first on the wire
    creds = client.authorize(cs, "INVITE", "sip:x@pbx.example")
    assert creds.algorithm == "SHA-256"
    assert server.verify(creds, "INVITE", lookup, 6.0).ok


def test_best_challenge_skips_unsupported() -> None:
    md5 = Challenge(realm="r", nonce="1", algorithm="MD5")
    sha = Challenge(realm="r", nonce="2", algorithm="sha-256")
    sess = Challenge(realm="r", nonce="3", algorithm="SHA-256-sess")
    odd = Challenge(realm="r", nonce="4", algorithm="SHA3-512")
    odd_qop = Challenge(realm="r", nonce="5", algorithm="SHA-256", qop=("auth-conf",))
    assert best_challenge([md5, odd, sha, odd_qop]) is sha
    assert best_challenge([sess, sha]) is sha
    assert best_challenge([md5, sess]) is sess
    assert best_challenge([odd, odd_qop]) is None
    with pytest.raises(UnsupportedChallengeError):
        DigestClient("u", "p").authorize([odd, odd_qop], "REGISTER", URI)
    with pytest.raises(UnsupportedChallengeError):
        DigestClient("u", "p").authorize(odd, "REGISTER", URI)


def test_client_counts_nc_per_nonce_and_echoes_opaque() -> None:
    client = DigestClient("u", "p", random_bytes=lambda n: bytes(range(n)))
    a = Challenge(realm="r", nonce="A", qop=("auth",), opaque="op")
    b = Challenge(realm="r", nonce="B", qop=("auth",))
    ncs = [client.authorize(c, "REGISTER", URI).nc for c in (a, a, b, a)]
    assert ncs == ["00000001", "00000002", "00000001", "00000003"]
    creds = client.authorize(a, "REGISTER", URI)
    assert creds.opaque == "op"
    assert creds.cnonce == bytes(range(16)).hex()


def test_client_answers_rfc2069_and_auth_int_challenges() -> None:
    client = DigestClient("u", "p")
    plain = client.authorize(Challenge(realm="r", nonce="n"), "REGISTER", URI)
    assert (plain.qop, plain.nc, plain.cnonce, plain.algorithm) == (None, None, None, None)
    expected = compute_response(
        ha1=ha1("u", "r", "p"), algorithm=None, nonce="n", method="REGISTER", uri=URI
    )
    assert plain.response == expected
    body_only = Challenge(realm="r", nonce="n2", qop=("auth-int",))
    creds = client.authorize(body_only, "INVITE", URI, body=b"sdp")
    assert creds.qop == "auth-int"


def test_auth_int_round_trip_checks_body() -> None:
    server = make_server(qop="auth-int")
    client = DigestClient("alice", "wonderland")
    creds = client.authorize(server.challenges(0.0), "INVITE", URI, body=b"v=0\r\n")
    assert creds.qop == "auth-int"
    assert server.verify(creds, "INVITE", lookup, 1.0, body=b"v=0\r\n").ok
    creds = client.authorize(server.challenges(0.0), "INVITE", URI, body=b"v=0\r\n")
    assert server.verify(creds, "INVITE", lookup, 1.0, body=b"v=1\r\n").status is AuthStatus.BAD


def test_stale_nonce_after_ttl() -> None:
    server = make_server(nonce_ttl=60)
    client = DigestClient("alice", "wonderland")
    creds = client.authorize(server.challenges(100.0), "REGISTER", URI)
    assert server.verify(creds, "REGISTER", lookup, 160.0).ok
    creds = client.authorize(server.challenges(100.0), "REGISTER", URI)
    assert server.verify(creds, "REGISTER", lookup, 160.5).status is AuthStatus.STALE
    # A stale nonce with a wrong password is BAD, not STALE: STALE says "password was right".
    wrong = DigestClient("alice", "nope").authorize(server.challenges(100.0), "REGISTER", URI)
    assert server.verify(wrong, "REGISTER", lookup, 500.0).status is AuthStatus.BAD
    # A nonce from the future (clock went back) is stale too.
    future = client.authorize(server.challenges(1000.0), "REGISTER", URI)
    assert server.verify(future, "REGISTER", lookup, 900.0).status is AuthStatus.STALE


def test_replayed_nc_rejected_increasing_accepted() -> None:
    server = make_server()
    client = DigestClient("alice", "wonderland")
    challenge = server.challenges(0.0)[0]
    first = client.authorize(challenge, "REGISTER", URI)
    second = client.authorize(challenge, "REGISTER", URI)
    third = client.authorize(challenge, "REGISTER", URI)
    assert server.verify(first, "REGISTER", lookup, 1.0).ok
    assert server.verify(first, "REGISTER", lookup, 1.0).status is AuthStatus.REPLAY
    assert server.verify(third, "REGISTER", lookup, 2.0).ok  # gaps are fine
    assert server.verify(second, "REGISTER", lookup, 3.0).status is AuthStatus.REPLAY
    assert server.verify(third, "REGISTER", lookup, 3.0).status is AuthStatus.REPLAY


def test_wrong_response_does_not_poison_replay_table() -> None:
    server = make_server()
    client = DigestClient("alice", "wonderland")
    challenge = server.challenges(0.0)[0]
    good = client.authorize(challenge, "REGISTER", URI)
    forged = dataclasses.replace(good, nc="ffffffff", response="0" * 64)
    assert server.verify(forged, "REGISTER", lookup, 1.0).status is AuthStatus.BAD
    assert server.verify(good, "REGISTER", lookup, 1.0).ok


def test_replay_table_is_bounded() -> None:
    server = make_server(max_nonces=3)
    client = DigestClient("alice", "wonderland")
    old = [server.challenges(float(t))[0] for t in range(4)]
    for t, challenge in enumerate(old):
        assert server.verify(client.authorize(challenge, "R", URI), "R", lookup, 10.0 + t).ok
    assert len(server._seen) <= 3
    # The first nonce was forgotten while live: it must not replay, so it is now stale.
    replay = client.authorize(old[0], "R", URI)
    assert server.verify(replay, "R", lookup, 20.0).status is AuthStatus.STALE
    # Expired entries are evicted when new ones arrive.
    fresh = server.challenges(1000.0)[0]
    assert server.verify(client.authorize(fresh, "R", URI), "R", lookup, 1001.0).ok
    assert len(server._seen) == 1


def test_full_replay_table_forgets_oldest_and_keeps_protecting_recent() -> None:
    server = make_server(max_nonces=20)
    client = DigestClient("alice", "wonderland")
    issued = [server.challenges(float(t))[0] for t in range(25)]
    used = []
    for t, challenge in enumerate(issued):
        creds = client.authorize(challenge, "R", URI)
        assert server.verify(creds, "R", lookup, 100.0 + t).ok
        used.append(creds)
        assert len(server._seen) <= 20
    assert server.verify(used[-1], "R", lookup, 200.0).status is AuthStatus.REPLAY
    again = client.authorize(issued[0], "R", URI)
    assert server.verify(again, "R", lookup, 200.0).status is AuthStatus.STALE


@pytest.mark.parametrize(
    "change",
    [
        {"username": "mallory"},  # unknown user
        {"realm": "other.example"},
        {"response": "0" * 64},
        {"response": "not hex at all é"},
        {"uri": None},
        {"username": None},
        {"realm": None},
        {"nonce": None},
        {"response": None},
        {"cnonce": None},
        {"nc": None},
        {"qop": None},  # RFC 2069 answer when qop was offered
        {"qop": "auth-int"},  # not offered
        {"qop": "auth-conf"},
        {"nc": "1"},
        {"nc": "0000000g"},
        {"nc": "00000000"},
        {"algorithm": "MD5"},  # response was computed for SHA-256
        {"algorithm": "SHA-512-256"},  # not offered
        {"algorithm": "bogus"},
        {"params": (("userhash", "true"),)},
    ],
)
def test_bad_credentials(change: dict[str, object]) -> None:
    server = make_server()
    creds = DigestClient("alice", "wonderland").authorize(server.challenges(0.0), "R", URI)
    result = server.verify(dataclasses.replace(creds, **change), "R", lookup, 1.0)  # type: ignore[arg-type]
    assert result.status is AuthStatus.BAD
    assert result.username is None and result.reason


def test_wrong_password_and_unknown_user_look_alike() -> None:
    server = make_server()
    wrong = DigestClient("alice", "guess").authorize(server.challenges(0.0), "R", URI)
    unknown = DigestClient("zed", "guess").authorize(server.challenges(0.0), "R", URI)
    r1 = server.verify(wrong, "R", lookup, 1.0)
    r2 = server.verify(unknown, "R", lookup, 1.0)
    assert r1 == r2
    assert r1.status is AuthStatus.BAD


def test_tampered_nonce_is_bad() -> None:
    server = make_server()
    challenge = server.challenges(0.0)[0]
    nonce = challenge.nonce
    flipped = nonce[:10] + ("A" if nonce[10] != "A" else "B") + nonce[11:]
    for bad_nonce in (flipped, nonce + "A", nonce[:-1], "7ypf/xlj9XXwfDPEoM4URrv", ""):
        forged = dataclasses.replace(challenge, nonce=bad_nonce)
        creds = DigestClient("alice", "wonderland").authorize(forged, "R", URI)
        assert server.verify(creds, "R", lookup, 1.0).status is AuthStatus.BAD
    # A nonce made with another key or for another realm is not ours either.
    other = DigestServer(REALM, b"x" * 32).challenges(0.0)[0]
    creds = DigestClient("alice", "wonderland").authorize(other, "R", URI)
    assert server.verify(creds, "R", lookup, 1.0).status is AuthStatus.BAD


def test_wrong_method_is_bad() -> None:
    server = make_server()
    creds = DigestClient("alice", "wonderland").authorize(server.challenges(0.0), "INVITE", URI)
    assert server.verify(creds, "BYE", lookup, 1.0).status is AuthStatus.BAD


def test_ha1_can_be_given_directly() -> None:
    server = make_server(algorithms=("MD5",))
    creds = DigestClient("alice", "wonderland").authorize(server.challenges(0.0), "R", URI)
    secret = ha1("alice", REALM, "wonderland", "MD5").upper()  # hex case does not matter
    assert server.verify(creds, "R", secret, 1.0).ok
    assert server.verify(creds, "R", None, 1.0).status is AuthStatus.BAD


def test_lookup_gets_base_algorithm() -> None:
    seen: list[tuple[str, str]] = []

    def spy(username: str, algorithm: str) -> str | None:
        seen.append((username, algorithm))
        return lookup(username, algorithm)

    server = make_server(algorithms=("SHA-256-sess",))
    creds = DigestClient("alice", "wonderland").authorize(server.challenges(0.0), "R", URI)
    assert server.verify(creds, "R", spy, 1.0).ok
    assert seen == [("alice", "SHA-256")]


def test_rfc2069_only_when_allowed() -> None:
    strict = make_server()
    legacy = make_server(allow_rfc2069=True)
    for server, status in ((strict, AuthStatus.BAD), (legacy, AuthStatus.OK)):
        challenge = dataclasses.replace(server.challenges(0.0)[0], qop=())
        creds = DigestClient("alice", "wonderland").authorize(challenge, "R", URI)
        assert creds.qop is None
        assert server.verify(creds, "R", lookup, 1.0).status is status
    with pytest.raises(LocalProtocolError):
        make_server(qop=())
    no_qop = make_server(qop=(), allow_rfc2069=True)
    assert no_qop.challenges(0.0)[0].qop == ()


def test_server_config_checks() -> None:
    with pytest.raises(LocalProtocolError):
        DigestServer(REALM, b"short")
    with pytest.raises(LocalProtocolError):
        make_server(algorithms=("SHA-1",))
    with pytest.raises(LocalProtocolError):
        make_server(algorithms=())
    with pytest.raises(LocalProtocolError):
        make_server(qop="auth-conf")


def test_random_bytes_are_injectable_and_nonces_deterministic() -> None:
    counter = counter_bytes()

    def rnd(n: int) -> bytes:
        return bytes([next(counter) % 256]) * n

    a = DigestServer(REALM, KEY, random_bytes=rnd).challenges(7.0)
    counter = counter_bytes()
    b = DigestServer(REALM, KEY, random_bytes=rnd).challenges(7.0)
    assert [c.nonce for c in a] == [c.nonce for c in b]


def test_uri_matches_helper() -> None:
    assert uri_matches("sip:pbx.example", "sip:pbx.example")
    assert not uri_matches("sip:other.example", "sip:pbx.example")
    assert not uri_matches(None, "sip:pbx.example")


@given(tricky, tricky, st.sampled_from(["MD5", "SHA-256"]))
@settings(max_examples=50)
def test_any_username_and_password_round_trip(user: str, password: str, algorithm: str) -> None:
    realm = 'we"ird\\realm'
    server = DigestServer(realm, KEY, algorithms=(algorithm,))
    client = DigestClient(user, password)
    challenge = parse_challenge(server.challenges(0.0)[0].to_header())
    creds = parse_credentials(client.authorize(challenge, "MESSAGE", URI).to_header())
    secret = ha1(user, realm, password, algorithm)
    assert server.verify(creds, "MESSAGE", secret, 1.0).ok

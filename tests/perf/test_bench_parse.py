"""Parse and serialize throughput of the SIP message layer, against Python's own header
parser (email.parser, RFC 5322 headers without SIP semantics) on the same bytes."""

from __future__ import annotations

import email.parser
import email.policy
import itertools

import pytest
from support.bench import rate, report
from support.sip_messages import INVITE, REGISTER

from pbx.sip import parse

pytestmark = pytest.mark.bench


def _unique(data: bytes, n: int) -> list[bytes]:
    """Copies with fresh branch, tag and Call-ID, as new calls arrive (defeats caches)."""
    out = []
    for i in range(n):
        out.append(
            data.replace(b"z9hG4bK", b"z9hG4bK%06d" % i, 1)
            .replace(b";tag=", b";tag=%06d" % i, 1)
            .replace(b"Call-ID: ", b"Call-ID: %06d" % i, 1)
        )
    return out


def test_parse_and_serialize_throughput() -> None:
    email_parser = email.parser.BytesParser(policy=email.policy.compat32)
    rows: list[dict[str, object]] = []
    for name, data in (("INVITE+SDP", INVITE), ("REGISTER", REGISTER)):
        fresh = itertools.cycle(_unique(data, 20_000))
        msg = parse(data)
        head = data.split(b"\r\n", 1)[1]  # the header block, as email.parser sees it
        ours_new = rate(lambda f=fresh: parse(next(f)))
        ours_repeat = rate(lambda d=data: parse(d))
        ours_ser = rate(lambda m=msg: bytes(m))
        ours_cycle = rate(lambda f=fresh: bytes(parse(next(f))))
        baseline = rate(lambda b=head: email_parser.parsebytes(b))
        rows.append(
            {
                "message": name,
                "parse new/s": ours_new,
                "parse µs": 1e6 / ours_new,
                "parse repeat/s": ours_repeat,
                "serialize/s": ours_ser,
                "parse+serialize/s": ours_cycle,
                "email.parser/s": baseline,
                "ratio parse/email": ours_new / baseline,
            }
        )
    report("sip_parse", rows)
    assert all(float(str(r["parse new/s"])) > 0 for r in rows)

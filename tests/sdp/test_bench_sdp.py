"""Cost of the SDP work in a call setup: parse a peer's SDP, rewrite it for the other leg,
serialize it. Run with ``pytest -m bench -s tests/sdp/test_bench_sdp.py``; the table is saved
under var/bench/sdp_offer_answer.json."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from support.bench import rate, report

from pbx.sdp import SdpLeg, media_targets, parse_sdp

pytestmark = pytest.mark.bench

DATA = Path(__file__).parent / "data"
BUDGET_US = 100.0  # parse + rewrite + serialize of an INVITE-sized SDP must stay well under


def _unique(data: bytes, n: int) -> list[bytes]:
    """Copies as new calls bring them: another session id, address and port (defeats caches)."""
    out = []
    for i in range(n):
        copy = re.sub(rb"(?m)^o=(\S+) \d+", b"o=\\1 %d" % (10**6 + i), data)
        copy = re.sub(rb"(?m)^c=IN IP4 \S+", b"c=IN IP4 10.%d.%d.9" % (i // 250, i % 250), copy)
        out.append(re.sub(rb"(?m)^m=audio \d+", b"m=audio %d" % (10000 + 2 * i), copy))
    return out


@pytest.mark.parametrize(
    ("offer_name", "answer_name"),
    [
        ("yealink_offer.sdp", "baresip_answer_yealink.sdp"),
        ("polycom_offer.sdp", "baresip_answer_polycom.sdp"),
        ("baresip_offer.sdp", "baresip_answer_yealink.sdp"),
    ],
)
def test_parse_rewrite_serialize_cost(offer_name: str, answer_name: str) -> None:
    offer_bytes = (DATA / offer_name).read_bytes()
    answer_bytes = (DATA / answer_name).read_bytes()
    offer = parse_sdp(offer_bytes)
    fresh_offers = itertools.cycle(_unique(offer_bytes, 20_000))
    fresh_answers = itertools.cycle(_unique(answer_bytes, 20_000))
    leg_a = SdpLeg("203.0.113.10", [30000], session_id=1)
    leg_b = SdpLeg("203.0.113.10", [40000], session_id=2)

    def offer_cycle() -> bytes:  # INVITE from A in, INVITE to B out
        return bytes(leg_b.offer_from(parse_sdp(next(fresh_offers))))

    def answer_cycle() -> bytes:  # 200 from B in, 200 to A out
        return bytes(leg_a.answer_from(parse_sdp(next(fresh_answers)), offer))

    us = {
        "parse": 1e6 / rate(lambda: parse_sdp(next(fresh_offers))),
        "serialize": 1e6 / rate(lambda: bytes(offer)),
        "media_targets": 1e6 / rate(lambda: media_targets(offer)),
        "offer cycle": 1e6 / rate(offer_cycle),
        "answer cycle": 1e6 / rate(answer_cycle),
    }
    report(
        f"sdp_offer_answer_{offer_name.removesuffix('.sdp')}",
        [{"sdp": offer_name, "bytes": len(offer_bytes)} | {f"{k} µs": v for k, v in us.items()}],
    )
    assert us["offer cycle"] < BUDGET_US and us["answer cycle"] < BUDGET_US, us

"""A bounded mutation fuzz run of the parser and the stream framer.

Seeds are the torture-test fixtures and the sample messages; each round applies a few random
byte edits (flip, insert, delete, duplicate a slice, splice two seeds) and checks the two
properties every input must keep: only the stack's own errors escape, and whatever parses
serializes to bytes that parse to the same message. ``make test`` runs it for a minute;
``make fuzz`` for longer (EDGEPBX_FUZZ_SECONDS). The seed of a failing run is printed.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from support.sip_messages import INVITE, REGISTER, RESPONSE_200

from pbx.sip import SipError, StreamFramer, parse

TORTURE = Path(__file__).parent.parent / "data" / "torture"
INTERESTING = [
    b"\r\n", b"\r\n\r\n", b":", b";", b",", b"<", b">", b'"', b"\\", b"%", b"[", b"]", b" ",
    b"\t", b"\x00", b"\xff", b"SIP/2.0", b"Content-Length: 99999", b"\r\n ",
]  # fmt: skip


def seeds() -> list[bytes]:
    found = [p.read_bytes() for p in sorted(TORTURE.glob("*.sip"))]
    return [INVITE, REGISTER, RESPONSE_200, *found]


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(6)
        pos = rng.randint(0, len(buf))
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:
            buf[pos:pos] = rng.choice(INTERESTING)
        elif op == 2:
            del buf[pos : pos + rng.randint(1, 16)]
        elif op == 3:
            end = min(len(buf), pos + rng.randint(1, 64))
            buf[pos:pos] = buf[pos:end]
        elif op == 4:
            other = rng.choice(corpus)
            cut = rng.randint(0, len(other))
            buf = buf[:pos] + other[cut:]
        else:
            buf = buf[: rng.randint(0, len(buf))]
    return bytes(buf)


def check_datagram(data: bytes) -> None:
    try:
        msg = parse(data)
    except SipError:
        return
    assert parse(bytes(msg)) == msg


def check_stream(data: bytes, rng: random.Random) -> None:
    framer = StreamFramer()
    for i in range(0, len(data), rng.randint(1, 200)):
        framer.feed(data[i : i + 200])
        try:
            while (msg := framer.next_message()) is not None:
                assert parse(bytes(msg)) == msg
        except SipError:
            return


def test_fuzz_parser_bounded() -> None:
    budget = float(os.environ.get("EDGEPBX_FUZZ_SECONDS", "60"))
    seed = int(os.environ.get("EDGEPBX_FUZZ_SEED", str(random.randrange(2**32))))
    print(f"fuzz seed {seed}, {budget:.0f} s")
    rng = random.Random(seed)
    corpus = seeds()
    deadline = time.monotonic() + budget
    rounds = 0
    while time.monotonic() < deadline:
        data = mutate(rng, rng.choice(corpus), corpus)
        try:
            check_datagram(data)
            check_stream(data + data, rng)
        except Exception as exc:
            raise AssertionError(f"seed {seed} round {rounds}: {data!r}") from exc
        rounds += 1
    assert rounds > 0

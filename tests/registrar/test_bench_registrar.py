"""What a registration costs in Python on top of parsing: a refresh REGISTER with digest
credentials (nonce reused, nonce-count up, as phones do), the best of several batches.

Rows: parsing the request (the baseline, not the registrar's), the registrar with digest
stubbed out, the digest check alone (Authenticator.check: parse_credentials, HMAC nonce
check, the response hash), and the whole ``Registrar.handle`` on the in-memory store and on
SQLite (inline, and write-behind as the box runs it). Run with ``make bench`` (or
``pytest -m bench -s tests/registrar``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from support.bench import report
from support.phone import KEY, NOW, PASSWORD, REALM, Phone

from appliance.store import open_store
from pbx.registrar import Authenticator, Registrar
from pbx.sip import Request, parse
from pbx.store import BindingStore, Directory, Extension, MemoryStore

pytestmark = [pytest.mark.bench, pytest.mark.timeout(600)]

BATCH, ROUNDS = 2000, 7
T = TypeVar("T")


class Trusting:
    """An Authenticator stand-in that takes everyone as 1001: the registrar's own cost."""

    def check(self, request: Request, now: float, *, proxy: bool = False) -> str:
        return "1001"


def refreshes(authenticator: Authenticator, count: int) -> Iterator[Request]:
    phone = Phone("1001", PASSWORD)
    challenge = authenticator.check(phone.register(), NOW)
    assert not isinstance(challenge, str)
    phone.register(challenge=challenge)
    for _ in range(count):
        yield phone.register()


def best_us(items: list[T], fn: Callable[[T], object]) -> float:
    """Microseconds per call of ``fn``: the best of ROUNDS batches, each on fresh items."""
    best = float("inf")
    for r in range(ROUNDS):
        batch = items[r * BATCH : (r + 1) * BATCH]
        start = time.perf_counter()
        for item in batch:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return best / BATCH * 1e6


def parse_request(message: bytes) -> Request:
    request = parse(message)
    assert isinstance(request, Request)
    return request


def setup(directory: Directory, bindings: BindingStore) -> tuple[Authenticator, Registrar]:
    authenticator = Authenticator(directory, REALM, KEY, algorithms=("MD5",))
    return authenticator, Registrar(directory, bindings, authenticator, domain=REALM)


def test_registration_cost(tmp_path: Path) -> None:
    count = BATCH * ROUNDS
    memory = MemoryStore()
    memory.directory.create(Extension("1001"))
    memory.directory.set_password("1001", PASSWORD, REALM)
    authenticator, registrar = setup(memory.directory, memory.bindings)
    source = Phone("1001", PASSWORD).source
    raw = [bytes(r) for r in refreshes(authenticator, count)]
    parse_us = best_us(raw, parse)
    plain = Registrar(memory.directory, memory.bindings, Trusting())  # type: ignore[arg-type]
    own_us = best_us([parse_request(m) for m in raw], lambda r: plain.handle(r, source, NOW + 1))

    def check(request: Request) -> None:
        assert authenticator.check(request, NOW + 1) == "1001"

    digest_us = best_us(list(refreshes(authenticator, count)), check)

    def handle(request: Request) -> None:
        assert registrar.handle(request, source, NOW + 1).status == 200

    handle_us = best_us(list(refreshes(authenticator, count)), handle)

    def challenge(request: Request) -> None:
        assert registrar.handle(request, source, NOW + 1).status == 401

    fresh = Phone("1001", PASSWORD)
    challenge_us = best_us([fresh.register() for _ in range(count)], challenge)

    sqlite = open_store(tmp_path)
    try:
        sqlite.directory.create(Extension("1001"))
        sqlite.directory.set_password("1001", PASSWORD, REALM)
        authenticator, registrar = setup(sqlite.directory, sqlite.bindings)
        sqlite_us = best_us(list(refreshes(authenticator, count)), handle)
    finally:
        sqlite.close()
    behind = open_store(tmp_path / "behind", write_behind=True)
    try:
        behind.directory.create(Extension("1001"))
        behind.directory.set_password("1001", PASSWORD, REALM)
        authenticator, registrar = setup(behind.directory, behind.bindings)
        behind_us = best_us(list(refreshes(authenticator, count)), handle)
    finally:
        behind.close()

    report(
        "registrar",
        [
            {"what": "parse REGISTER (baseline)", "us": parse_us},
            {"what": "registrar, digest stubbed", "us": own_us},
            {"what": "Authenticator.check", "us": digest_us},
            {"what": "handle, memory store", "us": handle_us},
            {"what": "401 challenge for a REGISTER without credentials", "us": challenge_us},
            {"what": "handle, SQLite store", "us": sqlite_us},
            {"what": "handle, SQLite write-behind (the box)", "us": behind_us},
        ],
    )
    assert handle_us < 100, "a registration should cost well under 100 us on top of parsing"

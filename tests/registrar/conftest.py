"""Fixtures of the registrar tests: in-memory store twins with extensions, a real digest
server behind the Authenticator, and phones (tests/support/phone.py) that answer it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from support.phone import KEY, NOW, PASSWORD, REALM, Phone

from pbx.registrar import Authenticator, Registrar
from pbx.sip import Response
from pbx.store import Extension, MemoryStore


@pytest.fixture
def store() -> MemoryStore:
    s = MemoryStore(clock=lambda: NOW)
    for number in ("1001", "1002", "1003"):
        s.directory.create(Extension(number, enabled=number != "1003"))
        s.directory.set_password(number, PASSWORD, REALM)
    return s


@pytest.fixture
def authenticator(store: MemoryStore) -> Authenticator:
    return Authenticator(store.directory, REALM, KEY)


@pytest.fixture
def registrar(store: MemoryStore, authenticator: Authenticator) -> Registrar:
    return Registrar(
        store.directory, store.bindings, authenticator, domain=REALM, aliases=["192.168.1.1"]
    )


@pytest.fixture
def phone() -> Phone:
    return Phone("1001", PASSWORD)


@pytest.fixture
def login(registrar: Registrar) -> Callable[..., Response]:
    """REGISTER, get challenged, REGISTER again with the answer: the final response."""

    def run(phone: Phone, now: float = NOW, **register: object) -> Response:
        challenge = registrar.handle(phone.register(authorize=False), phone.source, now)
        assert challenge.status == 401, challenge
        request = phone.register(challenge=challenge, **register)  # type: ignore[arg-type]
        return registrar.handle(request, phone.source, now)

    return run

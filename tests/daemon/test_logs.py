"""Structured logs never carry a secret: registered values, secret-looking pairs and
``extra`` fields are redacted in the finished line, tracebacks included."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from appliance.logs import REDACTED, KeyValueFormatter, redact, register_secret


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(KeyValueFormatter())
    logger = logging.getLogger("edgepbx.test.logs")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, out, handler
    logger.handlers[:] = []


def test_registered_secret_never_logged(
    capture: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, out, _ = capture
    secret = "Zq9-link-credential-8Hk2"
    register_secret(secret)
    logger.info("paired with %s", secret)
    logger.info("in extra", extra={"detail": f"cred={secret}"})
    try:
        raise ValueError(f"bad credential {secret}")
    except ValueError:
        logger.exception("failed")
    text = out.getvalue()
    assert secret not in text
    assert text.count(REDACTED) >= 3


@pytest.mark.parametrize(
    "line",
    [
        "login password=hunter2xyz ok",
        'body {"password": "hunter2xyz"}',
        "Authorization: Bearer eyJhbGciOi.hunter2xyz",
        "url wss://box?token=hunter2xyz&x=1",
        "auth_pass=hunter2xyz",
        "sip digest ha1=hunter2xyz",
    ],
)
def test_secret_shaped_pairs(line: str) -> None:
    assert "hunter2xyz" not in redact(line)


def test_secret_named_extra_fields(
    capture: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, out, _ = capture
    logger.info("account created", extra={"password": "p4ssw0rd-x", "user": "admin"})
    text = out.getvalue()
    assert "p4ssw0rd-x" not in text and "user=admin" in text


def test_format_key_value_and_json(
    capture: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, out, handler = capture
    logger.warning("link down", extra={"retry_in": 1.5})
    line = out.getvalue().strip()
    assert " level=warning " in line and ' msg="link down"' in line and "retry_in=1.5" in line
    handler.setFormatter(KeyValueFormatter("json"))
    out.seek(0)
    out.truncate()
    logger.info("x", extra={"token": "abcdefgh123"})
    record = json.loads(out.getvalue())
    assert record["msg"] == "x" and record["token"] == REDACTED


def test_plain_words_survive() -> None:
    text = "passwords are never returned; tokens expire"
    assert redact(text) == text

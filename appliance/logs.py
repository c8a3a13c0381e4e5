"""The box's logs: one line per event, ``key=value`` (default) or JSON, and secrets never
written.

Redaction happens on the finished line, in the formatter, so it covers the message, its
arguments, ``extra`` fields and tracebacks alike, also for library loggers (uvicorn,
websockets) that propagate to the root logger:

* values registered with :func:`register_secret` (a link credential, demo passwords...) are
  replaced wherever they appear;
* ``password=...``, ``token: ...``, ``Authorization: Bearer ...``-shaped pairs and ``extra``
  fields whose name says secret are replaced by ``[redacted]``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from typing import Any, Literal

__all__ = ["REDACTED", "KeyValueFormatter", "redact", "register_secret", "setup_logging"]

REDACTED = "[redacted]"
_SECRET_WORDS = (
    r"(?:password|passwd|pass|secret|token|credential|authorization|api[_-]?key|ha1"
    r"|nonce[_-]?key|private[_-]?key)"
)
# name=value, name: value, "name": "value", with an optional auth scheme before the value
_PAIR = re.compile(
    rf"(?i)(\b[\w.-]*{_SECRET_WORDS}[\w.-]*\b[\"']?\s*[=:]\s*[\"']?)"
    r"(?:(?:bearer|basic|digest)\s+)?([^\s,;\"'&]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_SECRET_KEY = re.compile(rf"(?i){_SECRET_WORDS}")
# Record attributes that are not ``extra`` fields (uvicorn adds a terminal-colored copy).
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Never log ``value`` (at least 6 characters: shorter strings would redact words)."""
    if len(value) >= 6:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, REDACTED)
    text = _PAIR.sub(lambda m: m.group(1) + REDACTED, text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


def _quote(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' ="\n\t\\'):
        return text
    return json.dumps(text, ensure_ascii=False)


class KeyValueFormatter(logging.Formatter):
    """``ts=... level=info logger=... msg="..." key=value ...`` or one JSON object."""

    def __init__(self, style: Literal["kv", "json"] = "kv") -> None:
        super().__init__()
        self.style = style

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                fields[key] = REDACTED if _SECRET_KEY.search(key) else value
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        if self.style == "json":
            line = json.dumps(fields, default=str, ensure_ascii=False)
        else:
            line = " ".join(f"{k}={_quote(v)}" for k, v in fields.items())
        return redact(line)


def setup_logging(level: int = logging.INFO, style: Literal["kv", "json"] = "kv") -> None:
    """Route every logger (ours and the libraries') through one redacting handler on stderr
    (journald captures it under systemd)."""
    handler = logging.StreamHandler()
    handler.setFormatter(KeyValueFormatter(style))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "websockets"):
        lib = logging.getLogger(name)
        lib.handlers[:] = []
        lib.propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("websockets").setLevel(logging.WARNING)  # a line per connection

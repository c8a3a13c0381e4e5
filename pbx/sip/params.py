"""Ordered, case-insensitive parameter lists: ``;name=value;flag`` (RFC 3261 §19.1.1, §25.1)."""

from __future__ import annotations

from collections.abc import Iterator

from pbx.sip.abnf import find_quoted_end, unquote


class Params:
    """An immutable parameter list. Names compare case-insensitively and keep their spelling;
    values are kept as received (quoted strings keep their quotes) so a message round-trips."""

    __slots__ = ("_items",)

    def __init__(self, items: tuple[tuple[str, str | None], ...] = ()) -> None:
        self._items = items

    @classmethod
    def of(cls, **values: str | None) -> Params:
        return cls(tuple(values.items()))

    def __iter__(self) -> Iterator[tuple[str, str | None]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Params):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[tuple[str, str | None], ...]:
        return tuple((name.lower(), value) for name, value in self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._find(name) >= 0

    def __repr__(self) -> str:
        return f"Params({self})"

    def __str__(self) -> str:
        return "".join(f";{n}" if v is None else f";{n}={v}" for n, v in self._items)

    def _find(self, name: str) -> int:
        lname = name.lower()
        for i, (n, _) in enumerate(self._items):
            if n == name or n.lower() == lname:  # the exact spelling saves a lower()
                return i
        return -1

    def raw(self, name: str) -> str | None:
        """The value as received (quotes kept); ``None`` when absent or a flag without value."""
        i = self._find(name)
        return None if i < 0 else self._items[i][1]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value with quotes removed; ``default`` when absent; ``""`` for a bare flag."""
        # _find inlined: this runs several times for every message (branch, tag, rport...).
        lname = name.lower()
        for n, value in self._items:
            if n == name or n.lower() == lname:
                if value is None:
                    return ""
                return unquote(value) if value[:1] == '"' else value
        return default

    def with_(self, name: str, value: str | None) -> Params:
        """A copy with ``name`` set (replacing in place, or appended)."""
        i = self._find(name)
        if i < 0:
            return Params((*self._items, (name, value)))
        items = list(self._items)
        items[i] = (items[i][0], value)
        return Params(tuple(items))

    def without(self, name: str) -> Params:
        lname = name.lower()
        return Params(tuple(item for item in self._items if item[0].lower() != lname))

    def names(self) -> list[str]:
        return [n.lower() for n, _ in self._items]


def split_params(text: str) -> list[str]:
    """Split ``a=1;b="x;y";c`` on semicolons outside quoted strings."""
    if '"' not in text:
        return text.split(";")
    parts: list[str] = []
    begin = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            i = find_quoted_end(text, i)
        elif ch == ";":
            parts.append(text[begin:i])
            begin = i + 1
        i += 1
    parts.append(text[begin:])
    return parts

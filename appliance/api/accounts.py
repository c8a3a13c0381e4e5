"""Admin accounts, login tokens and login throttling, all in local.db (never replicated).

* Passwords are argon2id hashes (argon2-cffi); a hash made with older cost settings is
  re-hashed at the next successful login.
* A token is 32 random bytes shown to the client once; local.db keeps only its SHA-256, so a
  copy of the file does not hand out sessions. Tokens expire (``token_ttl``) and logout
  deletes them.
* Throttling: per account, ``lockout_after`` failures in a row lock it for
  ``lockout_seconds`` (unknown logins are counted too, so a lockout does not tell which
  logins exist); per source address, a token bucket. Both live in memory: a restart clears
  them, which costs an attacker a box restart per burst.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
import sqlite3
import threading
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from appliance.api.context import ApiSettings
from appliance.store.database import Database
from pbx.store import AlreadyExists, Clock, InvalidValue, NotFound

__all__ = [
    "Account",
    "AccountStore",
    "LoginRefused",
    "LoginThrottle",
    "Role",
    "Session",
    "check_login_name",
    "check_password",
]

LOGIN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MIN_PASSWORD = 10
MAX_TRACKED = 10000  # logins and addresses the throttle remembers
MAX_PASSWORD = 256


class Role(enum.Enum):
    """Ordered: each role may do what the ones below it may."""

    VIEWER = "viewer"
    SUPERVISOR = "supervisor"  # also listens to recordings and hangs up calls
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Role.VIEWER: 0, Role.SUPERVISOR: 1, Role.ADMIN: 2}


def check_login_name(login: str) -> None:
    if not LOGIN.fullmatch(login):
        raise InvalidValue(
            "login must be 1-64 characters: lower-case letters, digits, '.', '_', '-',"
            " starting with a letter or digit"
        )


def check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidValue(f"password must be {MIN_PASSWORD}-{MAX_PASSWORD} characters")


@dataclass(frozen=True, slots=True)
class Account:
    login: str
    role: Role
    enabled: bool
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class Session:
    login: str
    role: Role
    expires_at: float


class LoginRefused(Exception):
    """A login failed. ``retry_after`` is set when throttled (HTTP 429)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _account(row: tuple[str, str, int, float, float]) -> Account:
    return Account(row[0], Role(row[1]), bool(row[2]), row[3], row[4])


class AccountStore:
    """Accounts and sessions in local.db."""

    def __init__(self, local: Database, settings: ApiSettings, clock: Clock) -> None:
        self._db = local
        self._settings = settings
        self._clock = clock
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost, memory_cost=settings.argon2_memory_kib
        )
        # Verifying against this when the login is unknown costs the same time as a real
        # check, so response times do not tell which logins exist.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    # ------------------------------------------------------------------ accounts

    def count(self) -> int:
        n: int = self._db.one("SELECT count(*) FROM api_accounts")[0]
        return n

    def list(self) -> list[Account]:
        rows = self._db.query(
            "SELECT login, role, enabled, created_at, updated_at FROM api_accounts ORDER BY login"
        )
        return [_account(r) for r in rows]

    def get(self, login: str) -> Account | None:
        row = self._db.one(
            "SELECT login, role, enabled, created_at, updated_at FROM api_accounts WHERE login = ?",
            (login,),
        )
        return None if row is None else _account(row)

    def create(self, login: str, password: str, role: Role) -> Account:
        check_login_name(login)
        check_password(password)
        now = self._clock()
        try:
            self._db.execute(
                "INSERT INTO api_accounts (login, role, password_hash, enabled, created_at,"
                " updated_at) VALUES (?, ?, ?, 1, ?, ?)",
                (login, role.value, self._hasher.hash(password), now, now),
            )
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(login) from exc
        return Account(login, role, True, now, now)

    def create_first(self, login: str, password: str) -> Account | None:
        """Create an admin account only if no account exists (checked and inserted in one
        transaction, so two first-boot requests cannot both win); None if one exists."""
        check_login_name(login)
        check_password(password)
        hashed = self._hasher.hash(password)
        now = self._clock()
        with self._db.transaction() as conn:
            inserted = conn.execute(
                "INSERT INTO api_accounts (login, role, password_hash, enabled, created_at,"
                " updated_at) SELECT ?, 'admin', ?, 1, ?, ?"
                " WHERE NOT EXISTS (SELECT 1 FROM api_accounts)",
                (login, hashed, now, now),
            ).rowcount
        return Account(login, Role.ADMIN, True, now, now) if inserted else None

    def update(
        self, login: str, *, role: Role | None = None, enabled: bool | None = None
    ) -> Account:
        current = self.get(login)
        if current is None:
            raise NotFound(login)
        new_role = current.role if role is None else role
        new_enabled = current.enabled if enabled is None else enabled
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE api_accounts SET role = ?, enabled = ?, updated_at = ? WHERE login = ?",
                (new_role.value, int(new_enabled), self._clock(), login),
            )
            if not new_enabled or new_role != current.role:
                # Sessions carry the role they were opened with: close them.
                conn.execute("DELETE FROM api_sessions WHERE login = ?", (login,))
        updated = self.get(login)
        assert updated is not None
        return updated

    def set_password(self, login: str, password: str) -> None:
        check_password(password)
        with self._db.transaction() as conn:
            changed = conn.execute(
                "UPDATE api_accounts SET password_hash = ?, updated_at = ? WHERE login = ?",
                (self._hasher.hash(password), self._clock(), login),
            ).rowcount
            if not changed:
                raise NotFound(login)
            conn.execute("DELETE FROM api_sessions WHERE login = ?", (login,))

    def delete(self, login: str) -> bool:
        with self._db.transaction() as conn:  # sessions go with it (foreign key cascade)
            gone: int = conn.execute("DELETE FROM api_accounts WHERE login = ?", (login,)).rowcount
        return gone > 0

    def admins(self) -> int:
        n: int = self._db.one(
            "SELECT count(*) FROM api_accounts WHERE role = 'admin' AND enabled = 1"
        )[0]
        return n

    def verify_password(self, login: str, password: str) -> Account | None:
        """The account if the password is right and the account enabled, else None."""
        row = self._db.one(
            "SELECT password_hash FROM api_accounts WHERE login = ? AND enabled = 1", (login,)
        )
        stored = self._dummy_hash if row is None else row[0]
        try:
            self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if row is None:
            return None
        if self._hasher.check_needs_rehash(stored):
            self._db.execute(
                "UPDATE api_accounts SET password_hash = ? WHERE login = ?",
                (self._hasher.hash(password), login),
            )
        return self.get(login)

    # ------------------------------------------------------------------ sessions

    def open_session(self, login: str) -> tuple[str, Session]:
        account = self.get(login)
        if account is None:
            raise NotFound(login)
        token = secrets.token_urlsafe(32)
        now = self._clock()
        expires = now + self._settings.token_ttl
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM api_sessions WHERE expires_at <= ?", (now,))
            conn.execute(
                "INSERT INTO api_sessions (token_hash, login, created_at, expires_at)"
                " VALUES (?, ?, ?, ?)",
                (_token_hash(token), login, now, expires),
            )
        return token, Session(login, account.role, expires)

    def session(self, token: str) -> Session | None:
        """The live session of a token; None when unknown, expired or the account disabled."""
        row = self._db.one(
            "SELECT s.login, a.role, s.expires_at FROM api_sessions s"
            " JOIN api_accounts a ON a.login = s.login"
            " WHERE s.token_hash = ? AND a.enabled = 1",
            (_token_hash(token),),
        )
        if row is None or row[2] <= self._clock():
            return None
        return Session(row[0], Role(row[1]), row[2])

    def close_session(self, token: str) -> bool:
        gone = self._db.execute(
            "DELETE FROM api_sessions WHERE token_hash = ?", (_token_hash(token),)
        )
        return gone > 0


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


@dataclass(slots=True)
class _Failures:
    count: int = 0
    locked_until: float = 0.0


class LoginThrottle:
    """Login rate limit per source address and lockout per account (see the module doc)."""

    def __init__(self, settings: ApiSettings, clock: Clock) -> None:
        self._s = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._failures: dict[str, _Failures] = {}

    def before(self, login: str, address: str) -> None:
        """Raise :class:`LoginRefused` with ``retry_after`` if this attempt must wait."""
        now = self._clock()
        with self._lock:
            f = self._failures.get(login)
            if f is not None and f.locked_until > now:
                raise LoginRefused("account locked after failed logins", f.locked_until - now)
            b = self._buckets.get(address)
            if b is None:
                b = self._buckets[address] = _Bucket(float(self._s.login_burst), now)
            b.tokens = min(self._s.login_burst, b.tokens + (now - b.at) * self._s.login_rate)
            b.at = now
            if b.tokens < 1:
                raise LoginRefused(
                    "too many login attempts from this address", (1 - b.tokens) / self._s.login_rate
                )
            b.tokens -= 1
            if len(self._buckets) > MAX_TRACKED:  # forget full buckets: they restrict nothing
                full = [a for a, x in self._buckets.items() if x.tokens >= self._s.login_burst]
                for a in full:
                    del self._buckets[a]

    def failed(self, login: str) -> bool:
        """Count a failure; True if the account is now locked."""
        with self._lock:
            if len(self._failures) > MAX_TRACKED and login not in self._failures:
                # Guessed logins must not grow memory without end: forget unlocked ones.
                now = self._clock()
                for name in [n for n, f in self._failures.items() if f.locked_until <= now]:
                    del self._failures[name]
            f = self._failures.setdefault(login, _Failures())
            f.count += 1
            if f.count >= self._s.lockout_after:
                f.count = 0
                f.locked_until = self._clock() + self._s.lockout_seconds
                return True
            return False

    def succeeded(self, login: str) -> None:
        with self._lock:
            self._failures.pop(login, None)

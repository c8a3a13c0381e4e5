"""The one policy point of the management API.

Every route names the :class:`Permission` it needs with ``Depends(require(...))``;
:func:`decide` is the whole rule, as a table:

* the origin comes from the ASGI scope only (``scope["edgepbx.origin"]``, set by the cloud
  link; absent means the LAN listener). Anything but "lan"/"console" counts as the cloud, so
  an unexpected value fails closed;
* requests from the cloud never get a LAN-only permission (recordings, secrets, keys, admin
  credentials), whatever their credentials: 403, decided from the origin alone (the token is
  read only to name the actor in the audit event);
* every other request needs a live token whose role ranks at least the permission's.

Refusals of LAN-only permissions, and every refusal of an authenticated caller, are audit
events (``policy.denied``), so probing from the cloud leaves a trace.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from appliance.api.accounts import Role
from appliance.api.context import BoxContext
from pbx.audit import Origin

__all__ = [
    "LAN_ONLY",
    "ORIGIN_SCOPE_KEY",
    "Decision",
    "Permission",
    "Principal",
    "audit",
    "box",
    "decide",
    "enforce",
    "origin_of",
    "require",
]

ORIGIN_SCOPE_KEY = "edgepbx.origin"


class Permission(enum.Enum):
    SYSTEM_READ = "system.read"
    EXTENSIONS_READ = "extensions.read"
    EXTENSIONS_WRITE = "extensions.write"
    SECRETS_WRITE = "secrets.write"  # set an extension's password to a value the caller chose
    SECRETS_READ = "secrets.read"  # see a generated password
    REGISTRATIONS_READ = "registrations.read"
    CALLS_READ = "calls.read"
    CALLS_HANGUP = "calls.hangup"
    CDR_READ = "cdr.read"
    RECORDINGS_LIST = "recordings.list"
    RECORDINGS_PLAY = "recordings.play"  # stream and download
    RECORDINGS_DELETE = "recordings.delete"
    AUDIT_READ = "audit.read"
    OWN_PASSWORD = "own.password"  # change one's own login password (a credential: LAN only)
    CONFIG_READ = "config.read"
    CONFIG_WRITE = "config.write"
    SYNC_READ = "sync.read"
    ACCOUNTS_MANAGE = "accounts.manage"  # admin credentials are secrets of the box
    SELF = "self"  # any logged-in account: who am I, log out
    KEYS_MANAGE = "keys.manage"  # the site identity recordings are encrypted to


# The lowest role that holds each permission.
MINIMUM_ROLE: dict[Permission, Role] = {
    Permission.SYSTEM_READ: Role.VIEWER,
    Permission.EXTENSIONS_READ: Role.VIEWER,
    Permission.EXTENSIONS_WRITE: Role.ADMIN,
    Permission.SECRETS_WRITE: Role.ADMIN,
    Permission.SECRETS_READ: Role.ADMIN,
    Permission.REGISTRATIONS_READ: Role.VIEWER,
    Permission.CALLS_READ: Role.VIEWER,
    Permission.CALLS_HANGUP: Role.SUPERVISOR,
    Permission.CDR_READ: Role.VIEWER,
    Permission.RECORDINGS_LIST: Role.SUPERVISOR,
    Permission.RECORDINGS_PLAY: Role.SUPERVISOR,
    Permission.RECORDINGS_DELETE: Role.ADMIN,
    Permission.AUDIT_READ: Role.VIEWER,
    Permission.OWN_PASSWORD: Role.VIEWER,
    Permission.CONFIG_READ: Role.VIEWER,
    Permission.CONFIG_WRITE: Role.ADMIN,
    Permission.SYNC_READ: Role.VIEWER,
    Permission.ACCOUNTS_MANAGE: Role.ADMIN,
    Permission.SELF: Role.VIEWER,
    Permission.KEYS_MANAGE: Role.ADMIN,
}

# Never granted to the cloud origin.
LAN_ONLY = frozenset(
    {
        Permission.SECRETS_READ,
        Permission.OWN_PASSWORD,
        Permission.RECORDINGS_LIST,
        Permission.RECORDINGS_PLAY,
        Permission.RECORDINGS_DELETE,
        Permission.ACCOUNTS_MANAGE,
        Permission.KEYS_MANAGE,
    }
)

_LAN_ORIGINS: frozenset[str] = frozenset({"lan", "console"})


class Decision(enum.Enum):
    ALLOW = "allow"
    CLOUD_FORBIDDEN = "cloud_forbidden"  # 403
    UNAUTHENTICATED = "unauthenticated"  # 401
    ROLE_TOO_LOW = "role_too_low"  # 403


def origin_of(scope: Any) -> Origin:
    value = scope.get(ORIGIN_SCOPE_KEY, "lan")
    return "lan" if value == "lan" else "console" if value == "console" else "cloud"


def decide(origin: Origin, role: Role | None, permission: Permission) -> Decision:
    """The policy, whole. ``role`` is None when the request has no live token."""
    if origin not in _LAN_ORIGINS and permission in LAN_ONLY:
        return Decision.CLOUD_FORBIDDEN
    if role is None:
        return Decision.UNAUTHENTICATED
    if role.rank < MINIMUM_ROLE[permission].rank:
        return Decision.ROLE_TOO_LOW
    return Decision.ALLOW


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking, from where, and with which token."""

    login: str
    role: Role
    origin: Origin
    token: str


def principal_of(request: Request) -> Principal | None:
    """The principal a route's policy check admitted, if it ran."""
    found: Principal | None = getattr(request.state, "principal", None)
    return found


def box(request: Request) -> BoxContext:
    ctx: BoxContext = request.app.state.box
    return ctx


_bearer = HTTPBearer(auto_error=False, description="a token from POST /auth/login")


def audit(
    request: Request,
    actor: str,
    action: str,
    target: str = "",
    detail: Mapping[str, object] | None = None,
) -> None:
    box(request).store.audit.append(
        action, actor=actor, origin=origin_of(request.scope), target=target, detail=detail
    )


def enforce(request: Request, token: str | None, permission: Permission) -> Principal:
    """Apply :func:`decide` to a request; raises the HTTP error, audited, when refused."""
    ctx = box(request)
    origin = origin_of(request.scope)
    session = None if token is None else request.app.state.accounts.session(token)
    decision = decide(origin, None if session is None else session.role, permission)
    if decision is Decision.ALLOW:
        assert session is not None and token is not None
        principal = Principal(session.login, session.role, origin, token)
        request.state.principal = principal
        return principal
    actor = "anonymous" if session is None else session.login
    if decision is not Decision.UNAUTHENTICATED or permission in LAN_ONLY:
        ctx.store.audit.append(
            "policy.denied",
            actor=actor,
            origin=origin,
            target=f"{request.method} {request.url.path}"[:200],
            detail={"permission": permission.value, "reason": decision.value},
        )
    if decision is Decision.UNAUTHENTICATED:
        raise HTTPException(
            401, "a valid login token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    if decision is Decision.CLOUD_FORBIDDEN:
        raise HTTPException(403, f"{permission.value} is never allowed over the cloud link")
    raise HTTPException(
        403, f"{permission.value} needs the {MINIMUM_ROLE[permission].value} role or higher"
    )


def require(permission: Permission) -> Callable[..., Principal]:
    """A dependency that lets the request through only if :func:`decide` allows it."""

    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    ) -> Principal:
        token = None if credentials is None else credentials.credentials
        return enforce(request, token, permission)

    dependency.__name__ = f"require_{permission.name.lower()}"
    return dependency


def allowed(principal: Principal, permission: Permission) -> bool:
    """For a route that needs a second permission depending on its input."""
    return decide(principal.origin, principal.role, permission) is Decision.ALLOW


def also_require(request: Request, principal: Principal, permission: Permission) -> None:
    """Check a second permission inside a route (e.g. a generated password in an answer)."""
    enforce(request, principal.token, permission)

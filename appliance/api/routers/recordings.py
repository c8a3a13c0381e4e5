"""Recordings: LAN only, whatever the credentials (see the policy point). Supervisors and
admins list, play and download; admins delete. Every play, download and delete is an audit
event, and so is every refused attempt."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from appliance.api.accounts import LoginRefused, LoginThrottle
from appliance.api.errors import AUTH, Invalid, responses
from appliance.api.policy import Permission, Principal, audit, box, require
from appliance.api.recordings import (
    RangeError,
    RecordingInfo,
    RecordingLibrary,
    RecordingQuery,
    RecordingUnavailable,
    parse_range,
)
from appliance.api.routers.auth import source_address
from appliance.api.vault import IdentityVault, VaultRefused
from pbx.store import MAX_PAGE

VAULT = "vault:site-identity"  # the throttle's account name for passphrase attempts

router = APIRouter(prefix="/recordings", tags=["recordings"])

Lister = Annotated[Principal, Depends(require(Permission.RECORDINGS_LIST))]
Player = Annotated[Principal, Depends(require(Permission.RECORDINGS_PLAY))]
Deleter = Annotated[Principal, Depends(require(Permission.RECORDINGS_DELETE))]
RecordingId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,128}$")]
TIME = {"ge": 0, "le": 1e11}


class RecordingOut(BaseModel):
    id: str
    call_id: str | None
    started_at: float
    duration: float
    size: int = Field(description="bytes of playable audio")
    content_type: str
    sha256: str | None = Field(description="SHA-256 of the encrypted file")

    @classmethod
    def of(cls, r: RecordingInfo) -> RecordingOut:
        return cls(
            id=r.id,
            call_id=r.call_id,
            started_at=r.started_at,
            duration=r.duration,
            size=r.size,
            content_type=r.content_type,
            sha256=r.sha256,
        )


class RecordingPageOut(BaseModel):
    items: list[RecordingOut]
    total: int
    limit: int
    offset: int


def _library(request: Request) -> RecordingLibrary:
    library = box(request).recordings
    if library is None:
        raise HTTPException(503, "recordings are not available in this box")
    return library


def _existing(request: Request, recording_id: str) -> RecordingInfo:
    info = _library(request).get(recording_id)
    if info is None:
        raise HTTPException(404, f"no recording {recording_id}")
    return info


@router.get("", response_model=RecordingPageOut, responses=responses(*AUTH, 422, 503))
def list_recordings(  # noqa: PLR0917 (query parameters)
    request: Request,
    _: Lister,
    call_id: Annotated[str | None, Query(max_length=128)] = None,
    since: Annotated[float | None, Query(**TIME)] = None,
    until: Annotated[float | None, Query(**TIME)] = None,
    limit: Annotated[int, Query(ge=0, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> RecordingPageOut:
    if since is not None and until is not None and until < since:
        raise Invalid(["query", "until"], "must not be before since")
    page = _library(request).list(RecordingQuery(call_id, since, until), limit, offset)
    return RecordingPageOut(
        items=[RecordingOut.of(r) for r in page.items], total=page.total, limit=limit, offset=offset
    )


class UnlockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    passphrase: str = Field(min_length=1, max_length=1024)


class VaultOut(BaseModel):
    unlocked: bool
    unlocked_until: float | None = Field(description="when the identities are dropped again")


def _vault(request: Request) -> IdentityVault:
    vault = box(request).vault
    if vault is None:
        raise HTTPException(503, "this box has no site keyring to unlock")
    return vault


@router.get("/unlock", response_model=VaultOut, responses=responses(*AUTH, 503))
def vault_status(request: Request, _: Player) -> VaultOut:
    """Whether recordings can be played now (the site identity is unlocked)."""
    until = _vault(request).unlocked_until()
    return VaultOut(unlocked=until is not None, unlocked_until=until)


@router.post(
    "/unlock",
    response_model=VaultOut,
    responses=responses(*AUTH, 422, 429, 503),
    summary="Unlock the site identity for playback, for a limited time (LAN only)",
)
def unlock(request: Request, body: UnlockIn, who: Player) -> VaultOut:
    vault = _vault(request)
    throttle: LoginThrottle = request.app.state.throttle
    try:  # passphrase guesses are limited like logins
        throttle.before(VAULT, source_address(request))
    except LoginRefused as exc:
        wait = math.ceil(exc.retry_after or 1)
        raise HTTPException(429, exc.reason, headers={"Retry-After": str(wait)}) from None
    try:
        until = vault.unlock(body.passphrase)
    except VaultRefused:
        throttle.failed(VAULT)
        audit(request, who.login, "recordings.unlock_failed", "site-identity")
        raise Invalid(["body", "passphrase"], "the passphrase opens no site identity") from None
    throttle.succeeded(VAULT)
    audit(request, who.login, "recordings.unlocked", "site-identity", {"until": until})
    return VaultOut(unlocked=True, unlocked_until=until)


@router.delete("/unlock", status_code=204, responses=responses(*AUTH, 503))
def lock(request: Request, who: Player) -> None:
    """Drop the unlocked identities now."""
    _vault(request).lock()
    audit(request, who.login, "recordings.locked", "site-identity")


@router.get("/{recording_id}", response_model=RecordingOut, responses=responses(*AUTH, 404, 503))
def get_recording(request: Request, recording_id: RecordingId, _: Lister) -> RecordingOut:
    return RecordingOut.of(_existing(request, recording_id))


_AUDIO: dict[int | str, dict[str, Any]] = {
    200: {"content": {"audio/wav": {}}, "description": "the whole recording"},
    206: {"content": {"audio/wav": {}}, "description": "the requested byte range"},
    **responses(*AUTH, 404, 416, 503),
}


def _serve(
    request: Request, who: Principal, recording_id: str, range_header: str | None, action: str
) -> StreamingResponse:
    info = _existing(request, recording_id)
    try:
        span = parse_range(range_header, info.size)
    except RangeError as exc:
        raise HTTPException(
            416, str(exc), headers={"Content-Range": f"bytes */{info.size}"}
        ) from None
    start, end = span if span is not None else (0, info.size)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(end - start),
        "Cache-Control": "no-store",
    }
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{info.size}"
    if action == "recording.exported":
        headers["Content-Disposition"] = f'attachment; filename="{recording_id}.wav"'
    try:
        body = _library(request).open_range(recording_id, start, end) if end > start else iter(())
    except RecordingUnavailable as exc:
        raise HTTPException(exc.status, exc.detail) from None
    # Audited once the recording is open: what the caller is about to receive.
    audit(
        request,
        who.login,
        action,
        recording_id,
        {"call_id": info.call_id, "bytes": f"{start}-{end - 1}" if end > start else "none"},
    )
    return StreamingResponse(
        body,
        status_code=206 if span is not None else 200,
        media_type=info.content_type,
        headers=headers,
    )


@router.get(
    "/{recording_id}/audio",
    response_class=StreamingResponse,
    responses=_AUDIO,
    summary="Play: the audio, with HTTP Range for seeking",
)
def stream(
    request: Request,
    recording_id: RecordingId,
    who: Player,
    range: Annotated[str | None, Header(max_length=100)] = None,
) -> StreamingResponse:
    return _serve(request, who, recording_id, range, "recording.played")


@router.get(
    "/{recording_id}/download",
    response_class=StreamingResponse,
    responses=_AUDIO,
    summary="Download the audio as a file",
)
def download(
    request: Request,
    recording_id: RecordingId,
    who: Player,
    range: Annotated[str | None, Header(max_length=100)] = None,
) -> StreamingResponse:
    return _serve(request, who, recording_id, range, "recording.exported")


@router.delete("/{recording_id}", status_code=204, responses=responses(*AUTH, 503))
def delete_recording(request: Request, recording_id: RecordingId, who: Deleter) -> None:
    """Deleting a recording that is already gone succeeds too."""
    gone = _library(request).delete(recording_id)
    audit(request, who.login, "recording.deleted", recording_id, {"existed": gone})

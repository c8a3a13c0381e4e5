"""Call records: search with filters and pages."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from appliance.api.errors import AUTH, Invalid, responses
from appliance.api.policy import Permission, Principal, box, require
from appliance.store.sqlite import _where
from pbx.store import MAX_PAGE, CallRecord, CdrQuery, Disposition

router = APIRouter(prefix="/call-records", tags=["call-records"])

Reader = Annotated[Principal, Depends(require(Permission.CDR_READ))]


class MediaOut(BaseModel):
    packets: int
    bytes: int
    lost: int
    jitter_ms: float


class CallRecordOut(BaseModel):
    call_id: str
    sip_call_id: str
    caller_number: str
    caller_name: str
    dialed: str
    callee_number: str | None
    direction: Literal["internal", "inbound", "outbound"]
    start_time: float
    answer_time: float | None
    end_time: float
    duration: float
    billable: float
    disposition: Literal["ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CANCELLED", "CONGESTION"]
    hangup_side: Literal["caller", "callee", "system"]
    hangup_cause: str
    sip_code: int | None
    codec: str | None
    media_from_caller: MediaOut
    media_from_callee: MediaOut
    recording_ref: str | None
    recording_state: str | None

    @classmethod
    def of(cls, r: CallRecord) -> CallRecordOut:
        def media(m: object) -> MediaOut:
            return MediaOut.model_validate(m, from_attributes=True)

        return cls(
            call_id=r.call_id,
            sip_call_id=r.sip_call_id,
            caller_number=r.caller_number,
            caller_name=r.caller_name,
            dialed=r.dialed,
            callee_number=r.callee_number,
            direction=r.direction.value,
            start_time=r.start_time,
            answer_time=r.answer_time,
            end_time=r.end_time,
            duration=r.duration,
            billable=r.billable,
            disposition=r.disposition.value,
            hangup_side=r.hangup_side.value,
            hangup_cause=r.hangup_cause,
            sip_code=r.sip_code,
            codec=r.codec,
            media_from_caller=media(r.media_from_caller),
            media_from_callee=media(r.media_from_callee),
            recording_ref=r.recording_ref,
            recording_state=r.recording_state,
        )


class CallRecordPage(BaseModel):
    items: list[CallRecordOut]
    total: int = Field(description="records matching the filters, over all pages")
    limit: int
    offset: int


DispositionName = Literal["ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CANCELLED", "CONGESTION"]
TIME = {"ge": 0, "le": 1e11}  # unix seconds; keeps floats finite


@router.get("", response_model=CallRecordPage, responses=responses(*AUTH, 422))
def search(  # noqa: PLR0917 (query parameters)
    request: Request,
    _: Reader,
    since: Annotated[float | None, Query(description="start_time >= since", **TIME)] = None,
    until: Annotated[float | None, Query(description="start_time < until", **TIME)] = None,
    number: Annotated[
        str | None,
        Query(max_length=64, description="caller, dialed number or answering extension"),
    ] = None,
    disposition: DispositionName | None = None,
    limit: Annotated[int, Query(ge=0, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> CallRecordPage:
    """Newest first. ``total`` counts every match, for page links."""
    if since is not None and until is not None and until < since:
        raise Invalid(["query", "until"], "must not be before since")
    q = CdrQuery(
        since=since,
        until=until,
        number=number,
        disposition=None if disposition is None else Disposition(disposition),
    )
    ctx = box(request)
    items = ctx.store.cdr.search(q, limit, offset)
    where, params = _where(q)
    total: int = ctx.store.metadata.one(f"SELECT count(*) FROM call_records{where}", params)[0]
    return CallRecordPage(
        items=[CallRecordOut.of(r) for r in items], total=total, limit=limit, offset=offset
    )


@router.get("/{call_id}", response_model=CallRecordOut, responses=responses(*AUTH, 404))
def get_record(request: Request, call_id: str, _: Reader) -> CallRecordOut:
    record = box(request).store.cdr.get(call_id)
    if record is None:
        raise HTTPException(404, f"no call record {call_id}")
    return CallRecordOut.of(record)

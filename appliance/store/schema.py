"""The two databases' schemas, as ordered migrations. See ``SCHEMA.md`` beside this file for
what every table and column means; keep the two together.

Rules for adding a migration (the cloud reads metadata.db, so its schema is a contract):

* append, never edit or reorder an existing migration: version N is the N-th script;
* prefer additive changes (new tables, new nullable or defaulted columns); a rename or a
  removal breaks readers: say so in the description and in SCHEMA.md;
* a table rebuild runs inside the migration's transaction, where ``PRAGMA foreign_keys``
  cannot be switched off: copy, drop and rename so that no reference dangles (the runner
  checks ``PRAGMA foreign_key_check`` before committing);
* secrets (passwords, HA1, keys, tokens) go to LOCAL only, never to METADATA.
"""

from __future__ import annotations

from appliance.store.database import Migration, Schema

__all__ = ["LOCAL", "METADATA"]

_METADATA_1 = """
CREATE TABLE extensions (
    number        TEXT PRIMARY KEY NOT NULL CHECK (number GLOB '[0-9]*'),
    display_name  TEXT NOT NULL DEFAULT '',
    enabled       INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    call_limit    INTEGER NOT NULL DEFAULT 2 CHECK (call_limit >= 1),
    ring_timeout  INTEGER NOT NULL DEFAULT 30 CHECK (ring_timeout >= 1),
    record_calls  TEXT NOT NULL DEFAULT 'none'
                  CHECK (record_calls IN ('none', 'inbound', 'outbound', 'both')),
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL
) STRICT;

CREATE TABLE bindings (
    aor               TEXT NOT NULL REFERENCES extensions (number) ON DELETE CASCADE,
    contact           TEXT NOT NULL,
    expires_at        REAL NOT NULL,
    q                 REAL CHECK (q IS NULL OR q BETWEEN 0 AND 1),
    call_id           TEXT NOT NULL,
    cseq              INTEGER NOT NULL,
    source_transport  TEXT NOT NULL,
    source_host       TEXT NOT NULL,
    source_port       INTEGER NOT NULL CHECK (source_port BETWEEN 0 AND 65535),
    user_agent        TEXT,
    instance_id       TEXT,
    reg_id            INTEGER,
    path              TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(path)),
    updated_at        REAL NOT NULL,
    PRIMARY KEY (aor, contact)
) STRICT;
CREATE INDEX bindings_expires_at ON bindings (expires_at);

CREATE TABLE call_records (
    call_id           TEXT PRIMARY KEY NOT NULL,
    sip_call_id       TEXT NOT NULL,
    caller_number     TEXT NOT NULL,
    caller_name       TEXT NOT NULL DEFAULT '',
    dialed            TEXT NOT NULL,
    callee_number     TEXT,
    direction         TEXT NOT NULL CHECK (direction IN ('internal', 'inbound', 'outbound')),
    start_time        REAL NOT NULL,
    answer_time       REAL,
    end_time          REAL NOT NULL,
    duration          REAL GENERATED ALWAYS AS (end_time - start_time) STORED,
    billable          REAL GENERATED ALWAYS AS
                      (CASE WHEN answer_time IS NULL THEN 0.0 ELSE end_time - answer_time END)
                      STORED,
    disposition       TEXT NOT NULL CHECK (disposition IN
                      ('ANSWERED', 'NO ANSWER', 'BUSY', 'FAILED', 'CANCELLED', 'CONGESTION')),
    hangup_cause      TEXT NOT NULL DEFAULT '',
    sip_code          INTEGER CHECK (sip_code IS NULL OR sip_code BETWEEN 100 AND 699),
    hangup_side       TEXT NOT NULL CHECK (hangup_side IN ('caller', 'callee', 'system')),
    codec             TEXT,
    caller_packets    INTEGER NOT NULL DEFAULT 0,
    caller_bytes      INTEGER NOT NULL DEFAULT 0,
    caller_lost       INTEGER NOT NULL DEFAULT 0,
    caller_jitter_ms  REAL NOT NULL DEFAULT 0,
    callee_packets    INTEGER NOT NULL DEFAULT 0,
    callee_bytes      INTEGER NOT NULL DEFAULT 0,
    callee_lost       INTEGER NOT NULL DEFAULT 0,
    callee_jitter_ms  REAL NOT NULL DEFAULT 0,
    recording_ref     TEXT,
    recording_state   TEXT,
    CHECK (end_time >= start_time),
    CHECK (answer_time IS NULL OR answer_time BETWEEN start_time AND end_time),
    CHECK ((disposition = 'ANSWERED') = (answer_time IS NOT NULL))
) STRICT;
CREATE INDEX call_records_start ON call_records (start_time, call_id);
CREATE INDEX call_records_caller ON call_records (caller_number, start_time);
CREATE INDEX call_records_dialed ON call_records (dialed, start_time);
CREATE INDEX call_records_callee ON call_records (callee_number, start_time);
"""

_METADATA_2 = """
CREATE TABLE audit_events (
    seq        INTEGER PRIMARY KEY NOT NULL CHECK (seq >= 1),
    time       REAL NOT NULL,
    actor      TEXT NOT NULL CHECK (actor <> ''),
    origin     TEXT NOT NULL CHECK (origin IN ('box', 'lan', 'cloud', 'console')),
    action     TEXT NOT NULL CHECK (action <> ''),
    target     TEXT NOT NULL DEFAULT '',
    detail     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail)),
    prev_hash  TEXT NOT NULL CHECK (length(prev_hash) = 64),
    hash       TEXT NOT NULL UNIQUE CHECK (length(hash) = 64)
) STRICT;
CREATE INDEX audit_events_target ON audit_events (target, seq);
CREATE INDEX audit_events_time ON audit_events (time);
"""


_LOCAL_1 = """
CREATE TABLE extension_secrets (
    number      TEXT PRIMARY KEY NOT NULL,
    realm       TEXT NOT NULL,
    ha1_md5     TEXT NOT NULL CHECK (length(ha1_md5) = 32),
    ha1_sha256  TEXT NOT NULL CHECK (length(ha1_sha256) = 64),
    updated_at  REAL NOT NULL
) STRICT;
"""

_LOCAL_2 = """
CREATE TABLE audit_anchor (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL CHECK (seq >= 1),
    hash  TEXT NOT NULL CHECK (length(hash) = 64)
) STRICT;
"""

_METADATA_3 = """
CREATE TABLE config_documents (
    version     INTEGER PRIMARY KEY NOT NULL CHECK (version >= 1),
    document    TEXT NOT NULL CHECK (json_valid(document)),
    applied_at  REAL NOT NULL,
    actor       TEXT NOT NULL,
    origin      TEXT NOT NULL
) STRICT;

CREATE TABLE config_applies (
    id            INTEGER PRIMARY KEY,
    base_version  INTEGER NOT NULL,
    version       INTEGER,
    submitted_at  REAL NOT NULL,
    finished_at   REAL NOT NULL,
    result        TEXT NOT NULL
                  CHECK (result IN ('applied', 'rejected', 'conflict', 'rolled_back')),
    errors        TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(errors)),
    actor         TEXT NOT NULL,
    origin        TEXT NOT NULL
) STRICT;
"""

_METADATA_4 = """
CREATE TABLE recordings (
    id             TEXT PRIMARY KEY NOT NULL,
    call_id        TEXT NOT NULL,
    path           TEXT NOT NULL UNIQUE,
    started_at     REAL NOT NULL,
    state          TEXT NOT NULL CHECK (state IN
                   ('recording', 'complete', 'incomplete', 'failed', 'deleted')),
    caller_number  TEXT NOT NULL DEFAULT '',
    callee_number  TEXT NOT NULL DEFAULT '',
    ended_at       REAL,
    duration       REAL NOT NULL DEFAULT 0 CHECK (duration >= 0),
    size           INTEGER NOT NULL DEFAULT 0 CHECK (size >= 0),
    sha256         TEXT CHECK (sha256 IS NULL OR length(sha256) = 64),
    recipients     TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(recipients)),
    codec_note     TEXT NOT NULL DEFAULT '',
    deleted_at     REAL,
    CHECK (ended_at IS NULL OR ended_at >= started_at)
) STRICT;
CREATE INDEX recordings_call ON recordings (call_id);
CREATE INDEX recordings_started ON recordings (started_at, id);

CREATE TABLE alarms (
    id         INTEGER PRIMARY KEY,
    raised_at  REAL NOT NULL,
    source     TEXT NOT NULL CHECK (source <> ''),
    code       TEXT NOT NULL CHECK (code <> ''),
    message    TEXT NOT NULL DEFAULT '',
    cleared_at REAL
) STRICT;
CREATE INDEX alarms_active ON alarms (cleared_at, id);
"""

_LOCAL_4 = """
CREATE TABLE link_credentials (
    cabinet_url  TEXT PRIMARY KEY NOT NULL,
    box_id       TEXT NOT NULL CHECK (length(box_id) BETWEEN 1 AND 64),
    credential   TEXT NOT NULL CHECK (length(credential) BETWEEN 16 AND 200),
    paired_at    REAL NOT NULL
) STRICT;
"""

METADATA = Schema(
    name="metadata",
    description=(
        "edgepbx box metadata: extensions (no secrets), registrations, call records. "
        "Replicated to the cloud by Litestream; see appliance/store/SCHEMA.md."
    ),
    migrations=(
        Migration("extensions, bindings, call_records", _METADATA_1),
        Migration("audit_events: the hash-chained audit log", _METADATA_2),
        Migration("config_documents, config_applies: the desired-state document", _METADATA_3),
        Migration("recordings (metadata of encrypted call recordings), alarms", _METADATA_4),
    ),
)

_LOCAL_3 = """
CREATE TABLE api_accounts (
    login          TEXT PRIMARY KEY NOT NULL CHECK (length(login) BETWEEN 1 AND 64),
    role           TEXT NOT NULL CHECK (role IN ('admin', 'supervisor', 'viewer')),
    password_hash  TEXT NOT NULL,
    enabled        INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at     REAL NOT NULL,
    updated_at     REAL NOT NULL
) STRICT;

CREATE TABLE api_sessions (
    token_hash  TEXT PRIMARY KEY NOT NULL CHECK (length(token_hash) = 64),
    login       TEXT NOT NULL REFERENCES api_accounts (login) ON DELETE CASCADE,
    created_at  REAL NOT NULL,
    expires_at  REAL NOT NULL
) STRICT;
CREATE INDEX api_sessions_login ON api_sessions (login);
CREATE INDEX api_sessions_expires ON api_sessions (expires_at);
"""

LOCAL = Schema(
    name="local",
    description="edgepbx local-only secrets: extension HA1 digests. Never replicated.",
    migrations=(
        Migration("extension_secrets", _LOCAL_1),
        Migration("audit_anchor: the audit chain's newest seq and hash", _LOCAL_2),
        Migration("api_accounts, api_sessions: management API logins", _LOCAL_3),
        Migration("link_credentials: the cloud link's credential per cabinet", _LOCAL_4),
    ),
)

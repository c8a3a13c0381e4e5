"""Rebuilding ``metadata.db`` from the cloud copy (a replacement box, or a lost disk).

Litestream restores into a temporary file next to the destination; the file is checked
(``schema_info`` names the metadata schema, its version is one this build knows, SQLite's
quick check passes) before it takes the database's place. An existing database is never
overwritten without ``force``, and with ``force`` it is moved aside, not deleted. What the
cloud never had is listed for the installer: the recording identity and the local-only
secrets (extension passwords, admin and link credentials).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from appliance.files import create_private
from appliance.store import LOCAL_DB, METADATA_DB
from appliance.store.schema import METADATA
from appliance.sync.config import RuntimePaths, describe_target, litestream_env, render_config
from appliance.sync.config import render_text as render_config_text
from appliance.sync.litestream import ControlClient, ControlError, find_litestream, run_litestream
from appliance.sync.settings import SyncSettings

__all__ = [
    "BoxRunning",
    "IncompatibleSchema",
    "LiveDatabase",
    "NothingToRestore",
    "RestoreError",
    "RestoreReport",
    "restore_metadata",
]


class RestoreError(Exception):
    """The restore did not happen; nothing in the destination was changed."""


class LiveDatabase(RestoreError):
    pass


class BoxRunning(RestoreError):
    pass


class NothingToRestore(RestoreError):
    pass


class IncompatibleSchema(RestoreError):
    pass


@dataclass(frozen=True, slots=True)
class RestoreReport:
    database: Path
    source: str
    schema_version: int
    extensions: tuple[str, ...]
    call_records: int
    passwords_to_reset: tuple[str, ...]
    moved_aside: Path | None = None
    next_steps: tuple[str, ...] = field(default=())

    def summary(self) -> str:
        lines = [
            f"Restored {self.database} from {self.source}",
            f"  schema version {self.schema_version}, {len(self.extensions)} extension(s), "
            f"{self.call_records} call record(s)",
        ]
        if self.moved_aside is not None:
            lines.append(f"  the database that was there is kept in {self.moved_aside}")
        lines.append("What the cloud does not hold (it must come from elsewhere):")
        lines.extend(f"  - {step}" for step in self.next_steps)
        return "\n".join(lines)


def _box_is_running(dest_dir: Path) -> bool:
    """A Litestream of a running box answers on the destination's control socket."""
    socket = RuntimePaths.for_data(dest_dir).socket
    if not socket.exists():
        return False

    async def probe() -> bool:
        try:
            await ControlClient(socket, timeout=2).request("GET", "/info", timeout=2)
        except ControlError:
            return False
        return True

    return asyncio.run(probe())


def check_restored(path: Path) -> int:
    """The restored file's metadata schema version, or :class:`IncompatibleSchema`."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise IncompatibleSchema(f"restored file cannot be opened: {exc}") from exc
    try:
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise IncompatibleSchema(f"restored file is damaged: {check}")
        try:
            info = conn.execute("SELECT name, version FROM schema_info WHERE id = 1").fetchone()
            applied = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")
            applied_version = applied.fetchone()[0]
        except sqlite3.Error as exc:
            raise IncompatibleSchema(f"restored file is not an edgepbx database: {exc}") from exc
    finally:
        conn.close()
    if info is None or info[0] != METADATA.name:
        found = "no schema_info" if info is None else f"the {info[0]!r} schema"
        raise IncompatibleSchema(f"restored file has {found}, not {METADATA.name!r}")
    version = int(info[1])
    if version != applied_version:
        raise IncompatibleSchema(
            f"restored file is inconsistent: schema_info says {version}, "
            f"schema_version has {applied_version}"
        )
    if version > METADATA.version:
        raise IncompatibleSchema(
            f"the cloud copy has metadata schema version {version}, this edgepbx knows up to "
            f"{METADATA.version}: install the edgepbx version the old box ran (or newer)"
        )
    if version < 1:
        raise IncompatibleSchema("restored file has no applied migrations")
    return version


def _contents(path: Path) -> tuple[tuple[str, ...], int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        numbers = tuple(r[0] for r in conn.execute("SELECT number FROM extensions ORDER BY 1"))
        calls = int(conn.execute("SELECT count(*) FROM call_records").fetchone()[0])
    finally:
        conn.close()
    return numbers, calls


def _with_secrets(dest_dir: Path) -> set[str]:
    local = dest_dir / LOCAL_DB
    if not local.exists():
        return set()
    conn = sqlite3.connect(f"file:{local}?mode=ro", uri=True)
    try:
        return {r[0] for r in conn.execute("SELECT number FROM extension_secrets")}
    except sqlite3.Error:
        return set()
    finally:
        conn.close()


def _move_aside(dest_dir: Path, now: float) -> Path:
    """Move the current database, its WAL and Litestream's local state into a dated folder."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    aside = dest_dir / f"replaced-{stamp}"
    aside.mkdir(mode=0o700, exist_ok=False)
    for name in (
        METADATA_DB,
        f"{METADATA_DB}-wal",
        f"{METADATA_DB}-shm",
        f".{METADATA_DB}-litestream",
    ):
        source = dest_dir / name
        if source.exists():
            shutil.move(source, aside / name)
    return aside


def _next_steps(passwords: tuple[str, ...]) -> tuple[str, ...]:
    steps = [
        "The recording identity (the site's age key) is never replicated: restore it from "
        "its backup, or recordings made by the old box cannot be decrypted. The recordings "
        "themselves stayed on the old box's disk.",
    ]
    if passwords:
        steps.append(
            "Local secrets (local.db) are never replicated: extension passwords must be reset "
            f"for {', '.join(passwords)}; phones stay unregistered until they are."
        )
    steps.append(
        "Admin credentials and the cloud link's credentials are local-only too: set them again."
    )
    return tuple(steps)


def restore_metadata(
    settings: SyncSettings,
    source_data: Path,
    dest_dir: Path,
    *,
    force: bool = False,
    environ: dict[str, str] | None = None,
    clock_now: float | None = None,
) -> RestoreReport:
    """Restore ``metadata.db`` from the target named by ``settings`` (relative to
    ``source_data`` for the default folder target) into ``dest_dir``."""
    dest_dir = dest_dir.absolute()
    dest = dest_dir / METADATA_DB
    if _box_is_running(dest_dir):
        raise BoxRunning(f"edgepbx is running on {dest_dir}: stop it before restoring")
    if dest.exists() and dest.stat().st_size > 0 and not force:
        raise LiveDatabase(
            f"{dest} already exists (a live database): restoring would replace it. "
            "Use --force to replace it (it is moved aside, not deleted)."
        )
    dest_dir.mkdir(parents=True, exist_ok=True)
    binary = find_litestream(settings.litestream)
    # Litestream names the replica by the source box's settings; the output goes to a
    # temporary file in the destination (same filesystem: the final rename is atomic).
    source_paths = RuntimePaths.for_data(source_data)
    work = dest_dir / f".restore-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(mode=0o700)
    try:
        config = work / "litestream.yml"
        config_data = render_config(settings, source_paths)
        del config_data["socket"]
        create_private(config, render_config_text(config_data))
        output = work / METADATA_DB
        env = litestream_env(settings, dict(os.environ if environ is None else environ))
        result = run_litestream(
            binary,
            [
                "restore",
                "-config",
                str(config),
                "-no-expand-env",
                "-o",
                str(output),
                str(source_paths.database),
            ],
            env,
        )
        source = describe_target(settings.target, source_paths.data_dir)
        if result.returncode != 0 or not output.exists():
            message = (result.stderr or result.stdout).strip().splitlines()
            detail = message[-1] if message else f"exit code {result.returncode}"
            if "no matching backup" in detail or "no backups" in detail or "not found" in detail:
                raise NothingToRestore(f"nothing to restore in {source}: {detail}")
            raise RestoreError(f"litestream restore from {source} failed: {detail}")
        version = check_restored(output)
        numbers, calls = _contents(output)
        now = time.time() if clock_now is None else clock_now
        aside = _move_aside(dest_dir, now) if dest.exists() else None
        for name in (f"{METADATA_DB}-wal", f"{METADATA_DB}-shm"):
            (dest_dir / name).unlink(missing_ok=True)
        os.replace(output, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    have = _with_secrets(dest_dir)
    passwords = tuple(n for n in numbers if n not in have)
    return RestoreReport(
        database=dest,
        source=source,
        schema_version=version,
        extensions=numbers,
        call_records=calls,
        passwords_to_reset=passwords,
        moved_aside=aside,
        next_steps=_next_steps(passwords),
    )

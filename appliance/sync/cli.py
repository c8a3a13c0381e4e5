"""``edgepbx sync status`` and ``edgepbx sync restore``: the sync subcommand group."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.sync.litestream import LitestreamMissing
from appliance.sync.restore import RestoreError, restore_metadata
from appliance.sync.settings import SettingsError, load_settings
from appliance.sync.status import SyncStatus
from appliance.sync.supervisor import read_status

__all__ = ["add_sync_commands", "format_status", "run_sync_command"]


def add_sync_commands(sub: Any) -> None:
    """Add ``sync status`` and ``sync restore`` to the ``edgepbx`` parser."""
    sync = sub.add_parser("sync", help="cloud sync of the metadata database (Litestream)")
    commands = sync.add_subparsers(dest="sync_command", required=True)
    status = commands.add_parser("status", help="replication state, lag and alarms")
    status.add_argument("--data", type=Path, default=Path("var"), help="the box's data folder")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    restore = commands.add_parser(
        "restore", help="rebuild metadata.db from the cloud copy (a replacement box)"
    )
    restore.add_argument(
        "--data",
        type=Path,
        default=Path("var"),
        help="the data folder whose sync settings (sync.json) name the cloud copy",
    )
    restore.add_argument(
        "--to", type=Path, default=None, help="restore into this folder (default: --data)"
    )
    restore.add_argument(
        "--force",
        action="store_true",
        help="replace an existing metadata.db (it is moved aside, not deleted)",
    )


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "never"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_status(status: SyncStatus) -> str:
    lag = "-" if status.lag_seconds is None else f"{status.lag_seconds:.1f} s"
    lines = [
        f"state:      {status.state.value}",
        f"target:     {status.target}",
        f"last sync:  {_when(status.last_sync_at)}",
        f"lag:        {lag}",
        f"position:   local txid {status.local_txid or '-'}",
        f"restarts:   {status.restarts}",
    ]
    if status.last_error:
        lines.append(f"last error: {status.last_error}")
    for alarm in status.alarms:
        lines.append(f"ALARM {alarm.severity.value} {alarm.code}: {alarm.message}")
    return "\n".join(lines)


def run_sync_command(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.data)
    except SettingsError as exc:
        print(f"edgepbx sync: {exc}", file=sys.stderr)
        return 2
    if args.sync_command == "status":
        status = read_status(settings, args.data, time.time())
        print(json.dumps(status.to_json(), indent=2) if args.json else format_status(status))
        return 0
    dest = args.to if args.to is not None else args.data
    try:
        report = restore_metadata(settings, args.data, dest, force=args.force)
    except (RestoreError, LitestreamMissing) as exc:
        print(f"edgepbx sync restore: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0

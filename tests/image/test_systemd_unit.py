"""The systemd unit: systemd itself parses it without complaint, and it asks for what the
daemon implements (notify, watchdog) with least privilege."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[2] / "image" / "systemd" / "edgepbx.service"


def unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


def test_notify_watchdog_and_least_privilege() -> None:
    service = unit()["Service"]
    assert service["Type"] == "notify"
    assert int(service["WatchdogSec"]) > 0
    assert service["KillMode"] == "mixed"
    assert service["User"] == "edgepbx"
    assert service["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert service["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "yes"
    assert "/var/lib/edgepbx" in service["ReadWritePaths"]
    assert "--data /var/lib/edgepbx" in service["ExecStart"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # Point ExecStart at this venv's edgepbx so verify can check the command exists.
    text = UNIT.read_text().replace(
        "/opt/edgepbx/bin/edgepbx", str(Path(sys.executable).parent / "edgepbx")
    )
    copy = tmp_path / "edgepbx.service"
    copy.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, check=False
    )
    problems = [line for line in result.stderr.splitlines() if "edgepbx.service" in line]
    assert problems == [], result.stderr

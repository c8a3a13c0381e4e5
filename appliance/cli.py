"""``edgepbx``: the box's command line. ``edgepbx run`` starts the box with embedded defaults
(see :mod:`appliance.daemon`)."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version
from pathlib import Path

from appliance import keys_cli
from appliance.daemon import RunOptions, run_box, run_part
from appliance.link.cli import add_link_commands, run_link_command
from appliance.recordings import add_commands as add_recording_commands
from appliance.recordings import run_command as run_recording_command
from appliance.sync.cli import add_sync_commands, run_sync_command


def _port_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    if not (sep and low.isdigit() and high.isdigit()):
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH, e.g. 20000-20999, not {text!r}")
    return int(low), int(high)


def _run_options(args: argparse.Namespace) -> RunOptions:
    return RunOptions(
        data=str(args.data),
        sip_host=args.host,
        sip_port=args.port,
        rtp_ports=args.rtp_ports,
        api_host=args.api_host,
        api_port=args.api_port,
        cabinet_url=args.cabinet_url,
        cabinet_port=args.cabinet_port,
        cabinet_operator_port=args.cabinet_operator_port,
        pairing_code=args.pairing_code,
        ca_file=str(args.ca_file) if args.ca_file else None,
        log_format=args.log_format,
        child_watchdog=args.child_watchdog,
        record=args.record,
        recipients=tuple(args.recipient),
        journal=str(args.journal) if args.journal else None,
        retention_days=args.retention_days,
        retention_by_extension=_extension_days(args.retention_extension),
    )


def _extension_days(items: list[str]) -> dict[str, float]:
    """``--retention-extension 101=90`` values, refused with the option named when bad."""
    days = {}
    for item in items:
        number, _, value = item.partition("=")
        try:
            days[number] = float(value)
        except ValueError:
            days[number] = 0.0
        if not number.isdigit() or days[number] <= 0:
            raise SystemExit(f"edgepbx run: --retention-extension {item!r}: expected NUMBER=DAYS")
    return days


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgepbx", description="edgepbx office telephony box")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the box (embedded defaults: loopback)")
    run.add_argument("--host", default="127.0.0.1", help="SIP listen address")
    run.add_argument("--port", "--sip-port", type=int, default=5060, help="SIP port (UDP, TCP)")
    run.add_argument(
        "--rtp-ports",
        type=_port_range,
        default=None,
        metavar="LOW-HIGH",
        help="RTP port range of the media relay (default 20000-29999)",
    )
    run.add_argument("--data", default="var", help="the box's data folder")
    run.add_argument("--api-host", default="127.0.0.1", help="management API listen address")
    run.add_argument("--api-port", type=int, default=8780, help="management API port (0: any)")
    run.add_argument(
        "--cabinet-url",
        default=None,
        help="the cloud cabinet's link URL (wss://...); default: an embedded reference "
        "cabinet on loopback",
    )
    run.add_argument("--cabinet-port", type=int, default=8782, help="embedded cabinet link port")
    run.add_argument(
        "--cabinet-operator-port", type=int, default=8781, help="embedded cabinet HTTP port"
    )
    run.add_argument("--pairing-code", default=None, help="pair the link with this code")
    run.add_argument("--ca-file", default=None, help="CA bundle for the cabinet's certificate")
    run.add_argument("--log-format", choices=("kv", "json"), default="kv")
    run.add_argument(
        "--child-watchdog",
        type=float,
        default=10.0,
        help="seconds a child process may stay silent before it is restarted",
    )
    part = sub.add_parser("part", help=argparse.SUPPRESS)
    part.add_argument("name", choices=("core", "manager", "registrar-worker"))
    sub.add_parser("version", help="print the version")
    run.add_argument(
        "--record",
        choices=("none", "inbound", "outbound", "both"),
        default="none",
        help="record calls box-wide (each extension's record_calls applies too)",
    )
    run.add_argument(
        "--recipient",
        action="append",
        default=[],
        help="an age recipient (age1...) recordings are encrypted to, besides the site key",
    )
    run.add_argument("--journal", type=Path, default=None, help="RAM folder for the key journal")
    run.add_argument(
        "--retention-days", type=float, default=None, help="delete recordings older than this"
    )
    run.add_argument(
        "--retention-extension",
        action="append",
        default=[],
        metavar="NUMBER=DAYS",
        help="retention for one extension's calls (repeatable)",
    )
    add_recording_commands(sub)
    add_link_commands(sub)
    add_sync_commands(sub)
    _add_setup_commands(sub)
    keys_cli.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "recordings":
        return run_recording_command(args)
    if args.command == "keys":
        return keys_cli.run(args)
    if args.command in ("setup", "serve-api", "network"):
        # imported here: the SIP core's start-up should not load Textual; and before logging
        # is set up, since log lines on stderr would tear the console's screen
        from appliance.setup.cli import run_setup_command  # noqa: PLC0415

        return run_setup_command(args)
    if args.command == "version":
        print(version("edgepbx"))
        return 0
    if args.command == "part":
        return run_part(args.name)
    if args.command == "link":
        return run_link_command(args)
    if args.command == "sync":
        return run_sync_command(args)
    return run_box(_run_options(args))


def _add_setup_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    setup = sub.add_parser("setup", help="the setup console (first-boot wizard, status)")
    setup.add_argument("--socket", type=Path, help="the management API's unix socket")
    setup.add_argument("--api", help="the management API's URL (default: edgepbx run's)")
    setup.add_argument("--refresh", type=float, default=2.0, help="status refresh, seconds")
    setup.add_argument("--export-dir", default="/media/usb", help="suggested key export folder")
    api = sub.add_parser("serve-api", help="serve the management API (for the console)")
    api.add_argument("--data", type=Path, default=Path("var"), help="the box's data folder")
    api.add_argument("--socket", type=Path, help="listen on this unix socket")
    api.add_argument("--port", type=int, default=8080, help="else on 127.0.0.1:PORT")
    api.add_argument("--network", choices=("netlink", "memory"), default="netlink")
    api.add_argument("--netns", help="manage this network namespace instead of the host's")
    net = sub.add_parser("network", help="network settings")
    net.add_argument("action", choices=("show", "apply-saved"))
    net.add_argument("--data", type=Path, default=Path("var"), help="the box's data folder")
    net.add_argument("--netns", help="a network namespace instead of the host's")
    net.add_argument("--resolv-conf", type=Path, help="default: /etc/resolv.conf (or the netns')")


if __name__ == "__main__":
    sys.exit(main())

"""``edgepbx link pair CODE`` and ``edgepbx link status``: the installer's side of pairing,
usable while the box runs (the running link picks the stored credential up by itself).

The link client (websockets) is imported when a link command runs: every ``edgepbx``
process imports this module for its argument parser, the SIP core's too."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from pydantic import ValidationError

__all__ = ["EMBEDDED_CABINET_URL", "add_link_commands", "run_link_command"]

EMBEDDED_CABINET_URL = "ws://127.0.0.1:8782/link"  # make run's reference cabinet


def add_link_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    link = sub.add_parser("link", help="the cloud link: pair this box, show the pairing")
    actions = link.add_subparsers(dest="link_command", required=True)
    pair = actions.add_parser("pair", help="pair with a code from the cabinet")
    pair.add_argument("code", help="the pairing code the cabinet issued (e.g. ABCD-EFGH)")
    status = actions.add_parser("status", help="show whether this box is paired")
    for p in (pair, status):
        p.add_argument("--data", type=Path, default=Path("var"), help="the box's data folder")
        p.add_argument("--cabinet-url", default=EMBEDDED_CABINET_URL)
    pair.add_argument("--ca-file", type=Path, default=None)


def run_link_command(args: argparse.Namespace) -> int:
    from appliance.link.client import LinkSettings, PairingRefused, pair_once  # noqa: PLC0415
    from appliance.link.credentials import SqliteCredentials  # noqa: PLC0415
    from appliance.store import open_store  # noqa: PLC0415

    store = open_store(args.data)
    try:
        credentials = SqliteCredentials(store.local)
        if args.link_command == "status":
            saved = credentials.load(args.cabinet_url)
            if saved is None:
                print(f"not paired with {args.cabinet_url}")
                return 1
            print(f"paired with {args.cabinet_url} as box {saved.box_id}")
            return 0
        try:
            settings = LinkSettings(cabinet_url=args.cabinet_url, ca_file=args.ca_file)
            saved = asyncio.run(pair_once(settings, args.code, credentials))
        except ValidationError as exc:
            print(f"edgepbx link pair: {exc.errors()[0]['msg']} (cabinet_url)", file=sys.stderr)
            return 2
        except PairingRefused as exc:
            print(f"edgepbx link pair: refused by the cabinet: {exc}", file=sys.stderr)
            return 1
        except (OSError, TimeoutError) as exc:
            print(f"edgepbx link pair: cannot reach {args.cabinet_url}: {exc}", file=sys.stderr)
            return 1
        print(f"paired with {args.cabinet_url} as box {saved.box_id}")
        return 0
    finally:
        store.close()

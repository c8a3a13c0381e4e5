"""A recorder stand-in run as its own process by the crash tests.

usage: writer_child.py PATH RECIPIENT JOURNAL_DIR [LIMIT]
Writes the deterministic stream ``stream(n)`` in 20 ms stereo frames (640 bytes) until LIMIT
bytes, then waits forever (a call in progress), never closing the file. With JOURNAL_DIR "-"
there is no key journal. Prints "started" once the header is on disk.

usage: writer_child.py --fill PATH RECIPIENT
Writes until the disk is full, then salvages; prints the salvage report as JSON.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time

from pbx.recording.age import AgeWriter, StorageFullError, X25519Recipient
from pbx.recording.journal import KeyJournal

FRAME = 640


def stream(size: int) -> bytes:
    return hashlib.shake_256(b"edgepbx recording test stream").digest(size)


def main() -> None:
    if sys.argv[1] == "--fill":
        fill(sys.argv[2], X25519Recipient.from_string(sys.argv[3]))
        return
    path, recipient, journal_dir = sys.argv[1:4]
    limit = int(sys.argv[4]) if len(sys.argv) > 4 else 64 << 20
    data = stream(limit)
    journal = None if journal_dir == "-" else KeyJournal(journal_dir)
    writer = AgeWriter.create(path, [X25519Recipient.from_string(recipient)], journal=journal)
    print("started", flush=True)
    for start in range(0, limit, FRAME):
        writer.write(data[start : start + FRAME])
        if start % (32 * FRAME) == 0:
            time.sleep(0.001)  # keep it a stream, not one burst
    while True:
        time.sleep(60)


def fill(path: str, recipient: X25519Recipient) -> None:
    data = stream(64 << 20)
    writer = AgeWriter.create(path, [recipient])
    try:
        for start in range(0, len(data), FRAME):
            writer.write(data[start : start + FRAME])
    except StorageFullError as exc:
        report = writer.salvage()
        print(json.dumps({"error": str(exc), **dataclasses.asdict(report)}), flush=True)
        return
    raise SystemExit("the disk never filled")


if __name__ == "__main__":
    main()

"""A real S3 peer on loopback for the sync tests: moto's server (the one ``moto_server``
runs), in this process so its buckets outlive an outage."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

from support.ports import free_port

ACCESS_KEY = "AKIAEDGEPBXTEST00001"
SECRET_KEY = "edgepbx-test-secret/" + "Zq8" * 8


class _OutageHandler(MotoRequestHandler):
    """moto's handler, but while the peer is down every connection is reset unanswered."""

    def handle(self) -> None:
        if getattr(self.server, "down", False):
            # Linger 0: the close sends RST, as a dead route or a crashed server would.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        super().handle()


class S3Peer:
    """moto's S3 on 127.0.0.1, ephemeral port. ``stop()``/``start()`` make an outage: every
    connection is reset, the objects stay. The listening socket stays ours all along: a
    released ephemeral port can be taken by any process's outgoing connection before it is
    bound again (and moto's own ``ThreadedMotoServer.start()`` then waits forever)."""

    def __init__(self) -> None:
        app = DomainDispatcherApplication(create_backend_app)
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, app, threaded=True, request_handler=_OutageHandler
        )
        self._server.down = False  # type: ignore[attr-defined]
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """The outage begins (requests in flight still finish)."""
        self._server.down = True  # type: ignore[attr-defined]

    def start(self) -> None:
        """The outage ends, same port."""
        self._server.down = False  # type: ignore[attr-defined]

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )

    def new_bucket(self) -> str:
        name = f"edgepbx-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str) -> Iterator[tuple[str, bytes]]:
        """Every object in the bucket: (key, bytes)."""
        client = self.client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                yield item["Key"], body


class MotoProcess:
    """``moto_server`` in its own process (its own GIL: for benchmarks), optionally checking
    credentials: with ``auth``, only the IAM access key made here (allowed ``s3:*``) gets in,
    and a wrong secret is refused with SignatureDoesNotMatch."""

    def __init__(self, *, auth: bool = False) -> None:
        self.port = free_port()
        env = dict(os.environ)
        if auth:
            # The first three requests (user, policy, key) are let in to set things up.
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "moto_server"),
                "-H",
                "127.0.0.1",
                "-p",
                str(self.port),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.close()
                    raise
                time.sleep(0.05)
        self.access_key, self.secret_key = ACCESS_KEY, SECRET_KEY
        if auth:
            iam = self._client("iam", "setup", "setup")
            iam.create_user(UserName="edgepbx")
            iam.put_user_policy(
                UserName="edgepbx",
                PolicyName="s3",
                PolicyDocument=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                    }
                ),
            )
            key = iam.create_access_key(UserName="edgepbx")["AccessKey"]
            self.access_key, self.secret_key = key["AccessKeyId"], key["SecretAccessKey"]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _client(self, service: str, key: str, secret: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            region_name="us-east-1",
        )

    def client(self) -> Any:
        return self._client("s3", self.access_key, self.secret_key)

    def new_bucket(self) -> str:
        name = f"edgepbx-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

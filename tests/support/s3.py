"""A real S3 peer on loopback for the sync tests: moto's server (the one ``moto_server``
runs), in this process so its buckets outlive a stop/start on the same port (an outage)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

ACCESS_KEY = "AKIAEDGEPBXTEST00001"
SECRET_KEY = "edgepbx-test-secret/" + "Zq8" * 8


class S3Peer:
    """moto's S3 on 127.0.0.1, ephemeral port. ``stop()``/``start()`` make an outage: the
    port stops answering, the objects stay."""

    def __init__(self) -> None:
        self.port = 0
        self._server: ThreadedMotoServer | None = None
        self.start()

    def start(self) -> None:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        server.start()
        self.port = server.get_host_and_port()[1]
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

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

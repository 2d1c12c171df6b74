"""What one all-or-nothing batch costs on an object store against a local disk: a reanalysis
backfill's 24 monthly Parquet partitions, written with `lake.write_partitions_atomic`.

S3 here is moto's server on loopback, so its times say little about a real store; the number
of requests per batch (counted from the server's request log) is what carries over.

Run: `.venv/bin/python benchmarks/object_batch_benchmark.py`
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import re
import socket
import tempfile
import time
import uuid

import numpy as np
import polars as pl

from dagster_project import lake

MONTHS = 24
REPEATS = 5
_REQUEST = re.compile(r"(GET|PUT|POST|DELETE|HEAD) /")


def _frames(root) -> dict:
    layout = lake.LakeLayout(root)
    rng = np.random.default_rng(0)
    return {
        layout.era5_land_month(dt.date(2001 + i // 12, i % 12 + 1, 1)): pl.DataFrame(
            {"band": np.arange(6), "t_air": rng.normal(260, 10, 6)}
        )
        for i in range(MONTHS)
    }


class _RequestCounter(logging.Handler):
    """Counts the requests moto's server logs, by HTTP method."""

    def __init__(self) -> None:
        super().__init__()
        self.methods: collections.Counter = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        request = _REQUEST.search(record.getMessage())  # the method may be wrapped in colour codes
        if request:
            self.methods[request.group(1)] += 1


def _best_seconds(write) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        write()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    from moto.server import ThreadedMotoServer
    from upath import UPath

    os.environ.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION="us-east-1")  # dummies
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    counter = _RequestCounter()
    requests_log = logging.getLogger("werkzeug")
    requests_log.setLevel(logging.INFO)
    requests_log.propagate = False
    requests_log.addHandler(counter)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        root = UPath(f"s3://{bucket}/lake", client_kwargs={"endpoint_url": f"http://127.0.0.1:{port}"})
        root.fs.mkdir(bucket)
        frames = _frames(root)
        lake.write_partitions_atomic(frames, root)  # warm: the client, the first listing
        counter.methods.clear()
        lake.write_partitions_atomic(frames, root)
        requests = dict(counter.methods)
        s3_seconds = _best_seconds(lambda: lake.write_partitions_atomic(frames, root))
        with tempfile.TemporaryDirectory() as folder:
            local = _frames(folder)
            lake.write_partitions_atomic(local)
            local_seconds = _best_seconds(lambda: lake.write_partitions_atomic(local))
    finally:
        server.stop()
    print(f"{MONTHS} partitions in one batch, best of {REPEATS}:")
    print(f"  local disk:            {local_seconds * 1000:7.1f} ms")
    print(f"  S3 (moto on loopback): {s3_seconds * 1000:7.1f} ms, requests per batch: {requests}")


if __name__ == "__main__":
    main()

"""Jobs the launcher's tests run in its worker process (`Launch(definitions="launcher_jobs:defs")`,
with this folder on PYTHONPATH): a warehouse step that stages a write and then computes for a
minute, and a step that outlasts the first wait report."""

import os
import time
from pathlib import Path

import dagster as dg

from dagster_project import lake
from dagster_project.launcher.runs import WAIT_REPORT_AFTER_SECONDS
from dagster_project.resources import WAREHOUSE_POOL

# The file `writes_windows` stages (set by the test).
TARGET = "LAUNCHER_TEST_TARGET"


@dg.asset(pool=WAREHOUSE_POOL)
def writes_windows():
    target = Path(os.environ[TARGET])
    with lake.atomic_batch() as batch:
        batch.file(target, lambda tmp: tmp.write_bytes(b"half the windows"))
        for _ in range(1200):  # a long computation before the batch ends
            time.sleep(0.05)


@dg.asset
def slow():
    time.sleep(WAIT_REPORT_AFTER_SECONDS + 1.5)
    return 1


defs = dg.Definitions(
    assets=[writes_windows, slow],
    jobs=[dg.define_asset_job("writes_windows_job", [writes_windows]), dg.define_asset_job("slow_job", [slow])],
)

"""Run the project's dbt CLI against a lake and warehouse under tmp_path."""

import os
import subprocess
import sys
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


def run_dbt(args: list[str], lake_root: Path, warehouse: Path, work: Path) -> subprocess.CompletedProcess:
    dbt = Path(sys.executable).with_name("dbt")
    env = {
        **os.environ,
        "PERMAFROST_LAKE_ROOT": str(lake_root),
        "PERMAFROST_WAREHOUSE": str(warehouse),
        # keep sql/target (the manifest Dagster loads) untouched
        "DBT_TARGET_PATH": str(work / "target"),
        "DBT_LOG_PATH": str(work / "logs"),
    }
    return subprocess.run(
        [str(dbt), *args, "--profiles-dir", str(SQL_DIR)], cwd=SQL_DIR, env=env, capture_output=True, text=True
    )

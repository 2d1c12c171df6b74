"""Run the project's dbt CLI against a lake and warehouse under tmp_path."""

import os
import subprocess

from dagster_project.dbt import SQL_DIR, dbt_executable

__all__ = ["SQL_DIR", "run_dbt"]


def run_dbt(args: list[str], lake_root, warehouse, work) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PERMAFROST_LAKE_ROOT": str(lake_root),
        "PERMAFROST_WAREHOUSE": str(warehouse),
        # keep sql/target (the manifest Dagster loads) untouched
        "DBT_TARGET_PATH": str(work / "target"),
        "DBT_LOG_PATH": str(work / "logs"),
    }
    return subprocess.run(
        [dbt_executable(), *args, "--profiles-dir", str(SQL_DIR)], cwd=SQL_DIR, env=env, capture_output=True, text=True
    )

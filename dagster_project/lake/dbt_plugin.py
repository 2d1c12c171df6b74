"""The lake's all-or-nothing folder writes, callable from dbt's SQL (a dbt-duckdb plugin).

DuckDB's `COPY ... (PARTITION_BY ...)` writes a folder of Parquet files but cannot rename one,
and dbt's Jinja cannot touch the file system. The profile (`sql/profiles.yml`, `plugins`) loads
this module, whose `Plugin` registers two SQL functions on dbt's DuckDB connection, so the
`lake_parquet` materialization (`sql/macros/lake.sql`) writes a model's folder the way
`AtomicBatch.folder` does:

- `lake_temporary_folder(target)`: a fresh temporary beside `target` (hidden, ending in `.tmp`,
  naming this process), after removing the temporaries of writers that are gone;
- `lake_replace_folder(temporary, target)`: the temporary renamed onto `target` (the old folder
  renamed aside first and removed once the new one is in place, as `AtomicBatch.commit` does).

A failed or killed write leaves only its temporary, which no `*.parquet` glob reads.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dbt.adapters.duckdb.plugins import BasePlugin

from dagster_project.lake.batches import clean_stale_temporaries, temporary_sibling


def _local(path: str) -> Path:
    if "://" in path:
        raise ValueError(f"{path}: dbt writes its Parquet folders to a local lake only (an object store has no rename)")
    return Path(path)


def temporary_folder(target: str) -> str:
    """An empty temporary folder beside `target`, named by this process (the parent is created)."""
    target_path = _local(target)
    target_path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(target_path.parent)
    temporary = temporary_sibling(target_path)
    temporary.mkdir()
    return str(temporary)


def replace_folder(temporary: str, target: str) -> str:
    """Put the folder `temporary` in place of `target`; the old `target` is removed afterwards."""
    temporary_path, target_path = _local(temporary), _local(target)
    if not temporary_path.is_dir():
        raise FileNotFoundError(f"{temporary}: no such temporary folder to put in place of {target}")
    aside = None
    if target_path.exists():
        aside = temporary_sibling(target_path)
        os.replace(target_path, aside)
    try:
        os.replace(temporary_path, target_path)
    except OSError:
        if aside is not None:
            os.replace(aside, target_path)  # the old folder back: nothing changed
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return target


class Plugin(BasePlugin):
    """Registers `lake_temporary_folder` and `lake_replace_folder` on dbt's DuckDB connection."""

    def configure_connection(self, conn) -> None:
        for name, function in (("lake_temporary_folder", temporary_folder), ("lake_replace_folder", replace_folder)):
            parameters = ["VARCHAR"] * (function.__code__.co_argcount)
            conn.create_function(name, function, parameters, "VARCHAR", side_effects=True)

"""The lake's all-or-nothing folder writes, callable from dbt's SQL (a dbt-duckdb plugin).

DuckDB's `COPY ... (PARTITION_BY ...)` writes a folder of Parquet files but cannot rename one,
and dbt's Jinja cannot touch the file system. The profile (`sql/profiles.yml`, `plugins`) loads
this module, whose `Plugin` registers two SQL functions on dbt's DuckDB connection, so the
`lake_parquet` materialization (`sql/macros/lake.sql`) writes a model's folder the way
`AtomicBatch.folder` does:

- `lake_temporary_folder(target)`: a fresh temporary beside `target` (hidden, ending in `.tmp`,
  naming this process), after removing the temporaries of writers that are gone;
- `lake_replace_folder(temporary, target)`: the temporary renamed onto `target` (the old folder
  renamed aside first and removed once the new one is in place, as `AtomicBatch.commit` does);
- `lake_partitions_at(target, depth)`: whether `target` is a folder whose Parquet files all lie
  `depth` hive folders down (`tile=r01c03/year=2001/*.parquet` is depth 2), holding at least one:
  a model may then rewrite some of its partitions only;
- `lake_replace_partitions(temporary, target, depth)`: each partition folder of the temporary
  (`depth` levels down) put in place of the target's same folder, the target's other partitions
  left as they are, in one batch (every old folder aside first, every new one renamed in, the
  old ones removed); the number of partitions replaced.

A failed or killed write leaves only its temporary, which no `*.parquet` glob reads.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dbt.adapters.duckdb.plugins import BasePlugin

from dagster_project.lake.batches import clean_stale_temporaries, is_temporary, temporary_sibling


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


def partitions_at(target: str, depth: int) -> bool:
    """Whether the folder `target` holds Parquet files, every one of them `depth` folders down."""
    target_path = _local(target)
    if not target_path.is_dir():
        return False
    depths = {len(path.relative_to(target_path).parts) - 1 for path in _parquet_files(target_path)}
    return depths == {depth}


def _parquet_files(folder: Path) -> list[Path]:
    """The Parquet files under `folder`, temporaries (and what lies in them) left out."""
    return [
        path
        for path in folder.rglob("*.parquet")
        if not any(is_temporary(Path(part)) for part in path.relative_to(folder).parts)
    ]


def replace_partitions(temporary: str, target: str, depth: int) -> int:
    """Put each partition folder of `temporary` (`depth` levels down: `tile=.../year=...`) in
    place of the same folder of `target`; the target's other partitions stay. One partition after
    another, as `AtomicBatch.commit` renames its targets: the old folder is moved into the
    temporary (out of every reader's glob: a hidden folder inside the target would match DuckDB's
    `*`), the new one renamed in; if a rename fails, the partitions already swapped are swapped
    back. The temporary, old folders included, is removed at the end. Returns the number of
    partitions replaced."""
    temporary_path, target_path = _local(temporary), _local(target)
    if not temporary_path.is_dir():
        raise FileNotFoundError(f"{temporary}: no such temporary folder to put into {target}")
    partitions = sorted(path.relative_to(temporary_path) for path in temporary_path.glob("/".join(["*"] * depth)))
    if any(not (temporary_path / p).is_dir() or "=" not in p.parts[-1] for p in partitions):
        raise ValueError(f"{temporary}: expected only hive partition folders {depth} level(s) down, got {partitions}")
    retired = temporary_path / ".retired"  # not a partition folder: the glob above never lists it
    swapped: list[tuple[Path, Path, Path | None]] = []  # (new, in place at, old one kept at)
    try:
        for partition in partitions:
            new, destination, old = temporary_path / partition, target_path / partition, None
            destination.parent.mkdir(parents=True, exist_ok=True)
            if destination.exists():
                old = retired / partition
                old.parent.mkdir(parents=True, exist_ok=True)
                os.replace(destination, old)
            swapped.append((new, destination, old))
            os.replace(new, destination)
    except OSError:
        for new, destination, old in reversed(swapped):  # back as it was
            if destination.exists() and not new.exists():
                os.replace(destination, new)
            if old is not None and old.exists():
                os.replace(old, destination)
        raise
    shutil.rmtree(temporary_path, ignore_errors=True)
    return len(partitions)


_FUNCTIONS = (
    ("lake_temporary_folder", temporary_folder, ["VARCHAR"], "VARCHAR"),
    ("lake_replace_folder", replace_folder, ["VARCHAR", "VARCHAR"], "VARCHAR"),
    ("lake_partitions_at", partitions_at, ["VARCHAR", "INTEGER"], "BOOLEAN"),
    ("lake_replace_partitions", replace_partitions, ["VARCHAR", "VARCHAR", "INTEGER"], "INTEGER"),
)


class Plugin(BasePlugin):
    """Registers the `lake_*` functions above on dbt's DuckDB connection."""

    def configure_connection(self, conn) -> None:
        for name, function, parameters, returns in _FUNCTIONS:
            conn.create_function(name, function, parameters, returns, side_effects=True)

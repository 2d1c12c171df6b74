"""The lake's all-or-nothing folder writes, callable from dbt's SQL (a dbt-duckdb plugin).

DuckDB's `COPY ... (PARTITION_BY ...)` writes a folder of Parquet files but cannot rename one,
and dbt's Jinja cannot touch the file system. The profile (`sql/profiles.yml`, `plugins`) loads
this module, whose `Plugin` registers these SQL functions on dbt's DuckDB connection, so the
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

A lake on an object store (`PERMAFROST_LAKE_ROOT=s3://bucket/prefix`, `lake.lake_root`): there is no
rename there. The temporary is then a local folder (DuckDB writes the files on this machine) and
the replacing functions upload it as one object-store batch (`object_store.ObjectStoreBatch`:
staged under `<root>/.batches/`, committed by its manifest, then copied onto the targets; a
partition folder is replaced whole). A writer killed before the manifest lands nothing. The
plugin also registers the lake's fsspec file system on dbt's connection, so the sources' globs,
`read_parquet` and the marts' views read `s3://` without DuckDB's `httpfs` extension (which is
not bundled with the Python package and cannot be installed offline); a connection outside dbt
that reads those views needs the same `con.register_filesystem(fs)`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from dbt.adapters.duckdb.plugins import BasePlugin

from dagster_project.lake.batches import clean_stale_temporaries, is_temporary, new_batch, temporary_sibling, writer_tag
from dagster_project.lake.layout import is_object_root, lake_root

# The lake root, as the profile's `lake_root()` macro reads it (sql/macros/lake.sql).
ENV_LAKE_ROOT = "PERMAFROST_LAKE_ROOT"


def _is_object(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _local(path: str) -> Path:
    if _is_object(path):
        raise ValueError(f"{path}: an object-store path where a local folder was expected")
    return Path(path)


def _object_root(target: str):
    """The object-store lake root (`PERMAFROST_LAKE_ROOT`) that `target` lies under."""
    configured = os.environ.get(ENV_LAKE_ROOT, "")
    root = lake_root(configured) if configured else None
    if root is None or not is_object_root(root) or not target.startswith(f"{str(root).rstrip('/')}/"):
        raise ValueError(f"{target}: not under the object-store lake root {ENV_LAKE_ROOT}={configured!r}")
    return root


def _upload(root, folders: dict[str, Path]) -> None:
    """Each local folder (value) in place of its target folder (key, under `root`), as one batch."""
    batch = new_batch(root)
    try:
        for target, local in folders.items():
            batch.folder(target, lambda tmp, local=local: shutil.copytree(local, tmp, dirs_exist_ok=True))
        batch.commit()
    finally:
        batch.discard()


def temporary_folder(target: str) -> str:
    """An empty temporary folder beside `target`, named by this process (the parent is created);
    for a target on an object store, a local one in the system's temporary folder."""
    if _is_object(target):
        _object_root(target)
        return tempfile.mkdtemp(prefix=f".{target.rstrip('/').rsplit('/', 1)[-1]}.{writer_tag()}.", suffix=".tmp")
    target_path = _local(target)
    target_path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(target_path.parent)
    temporary = temporary_sibling(target_path)
    temporary.mkdir()
    return str(temporary)


def replace_folder(temporary: str, target: str) -> str:
    """Put the folder `temporary` in place of `target`; the old `target` is removed afterwards."""
    if _is_object(target):
        try:
            _upload(_object_root(target), {target: _local(temporary)})
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
        return target
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
    if _is_object(target):
        fs, base = _object_root(target).fs, target.split("://", 1)[1].rstrip("/")
        keys = [key for key in fs.find(base) if key.endswith(".parquet")] if fs.exists(base) else []
        return {key[len(base) + 1 :].count("/") for key in keys} == {depth}
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
    temporary_path = _local(temporary)
    if not temporary_path.is_dir():
        raise FileNotFoundError(f"{temporary}: no such temporary folder to put into {target}")
    partitions = sorted(path.relative_to(temporary_path) for path in temporary_path.glob("/".join(["*"] * depth)))
    if any(not (temporary_path / p).is_dir() or "=" not in p.parts[-1] for p in partitions):
        raise ValueError(f"{temporary}: expected only hive partition folders {depth} level(s) down, got {partitions}")
    if _is_object(target):  # one batch: every partition lands, or none
        try:
            root, base = _object_root(target), target.rstrip("/")
            _upload(root, {f"{base}/{p.as_posix()}": temporary_path / p for p in partitions})
        finally:
            shutil.rmtree(temporary_path, ignore_errors=True)
        return len(partitions)
    target_path = _local(target)
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
        configured = os.environ.get(ENV_LAKE_ROOT, "")
        if configured and is_object_root(root := lake_root(configured)):
            conn.register_filesystem(root.fs)  # s3:// through fsspec: sources, COPY, the views
        for name, function, parameters, returns in _FUNCTIONS:
            conn.create_function(name, function, parameters, returns, side_effects=True)

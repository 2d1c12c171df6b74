"""Parquet lake and DuckDB warehouse primitives: atomic, idempotent writes and read-only readers.

Plain functions (no Dagster) so sources, assets and tests use the same code path.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import polars as pl

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def temporary_sibling(path: Path) -> Path:
    """A hidden temporary name beside `path` that keeps its suffix (np.savez appends .npz otherwise)."""
    return path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp{path.suffix}")


def write_file_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` for a temporary sibling of `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_directory_atomic(folder: Path, write: Callable[[Path], object]) -> Path:
    """Fill a temporary sibling folder with `write(tmp)`, then swap it in for `folder`.

    Two renames (old aside, new in) instead of one, since a folder cannot be replaced in one
    step; the old folder is removed only after the new one is in place.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staged = temporary_sibling(folder)
    retired = temporary_sibling(folder)
    try:
        staged.mkdir()
        write(staged)
        if folder.exists():
            os.replace(folder, retired)
        os.replace(staged, folder)
    finally:
        for leftover in (staged, retired):
            if leftover.exists():
                shutil.rmtree(leftover)
    return folder


def write_parquet_atomic(frame: pl.DataFrame, path: Path) -> Path:
    """Write one Parquet file atomically: a crash leaves the old file or the new, never half."""
    return write_partitions_atomic({Path(path): frame})[0]


def write_partitions_atomic(frames: dict[Path, pl.DataFrame]) -> list[Path]:
    """Write partition files so that a failed write changes none of them.

    Every file is first written to a temporary name beside its target; only when all writes
    succeeded are they renamed into place (a rename within one folder is atomic). Writing a
    partition again replaces its file: idempotent, never appends.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for path, frame in frames.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = temporary_sibling(path)
            staged.append((tmp, path))
            frame.write_parquet(tmp, compression="zstd", statistics=True)
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            if tmp.exists():
                tmp.unlink()
    return [path for _, path in staged]


def _quote_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def refresh_parquet_view(warehouse_path: Path, schema: str, view: str, parquet_glob: str) -> None:
    """(Re)create `schema.view` over the Parquet files matching `parquet_glob` (absolute)."""
    warehouse_path = Path(warehouse_path)
    warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(warehouse_path)) as con:
        con.execute(f"create schema if not exists {_quote_identifier(schema)}")
        con.execute(
            f"create or replace view {_quote_identifier(schema)}.{_quote_identifier(view)} as "
            f"select * from read_parquet({_quote_literal(parquet_glob)}, union_by_name = true)"
        )


@contextmanager
def read_only(warehouse_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only DuckDB connection; fails clearly if the warehouse was never built."""
    warehouse_path = Path(warehouse_path)
    if not warehouse_path.exists():
        raise FileNotFoundError(f"warehouse {warehouse_path} does not exist yet: materialize the raw assets first")
    con = duckdb.connect(str(warehouse_path), read_only=True)
    try:
        yield con
    finally:
        con.close()

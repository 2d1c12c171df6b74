"""Reading lake files back wherever the lake is: a local folder (`pathlib.Path`s) or an object
store (`UPath`s, read through the path's own fsspec file system, so the endpoint and credentials
are configured once, for fsspec, and not again for polars' or Keras' own cloud readers)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import polars as pl

from dagster_project.lake.layout import LakePath, is_object_root, lake_root


def _on_object_store(path: LakePath | str) -> bool:
    return is_object_root(lake_root(path))


def read_parquet(path: LakePath | str, **options) -> pl.DataFrame:
    """A lake Parquet file as a polars frame (`options`: `pl.read_parquet`'s, e.g. `columns`)."""
    if not _on_object_store(path):
        return pl.read_parquet(path, **options)
    path = lake_root(path)
    with path.open("rb") as file:
        return pl.read_parquet(file, **options)


def open_binary(path: LakePath | str) -> IO[bytes]:
    """A lake file opened for reading bytes (a figure, a JSON file)."""
    return lake_root(path).open("rb")


@contextmanager
def local_copy(path: LakePath | str) -> Iterator[Path]:
    """A local path holding what `path` holds (a file or a folder, e.g. a Keras model folder) for
    the block: the path itself on a local lake, a temporary download from an object store, removed
    after the block."""
    if not _on_object_store(path):
        yield Path(path)
        return
    path = lake_root(path)
    scratch = Path(tempfile.mkdtemp(prefix="permafrost-read-"))
    try:
        local = scratch / path.name
        path.fs.invalidate_cache(path.path)
        if path.fs.isdir(path.path):
            for key in path.fs.find(path.path):
                relative = key[len(path.path.rstrip("/")) + 1 :]
                (local / relative).parent.mkdir(parents=True, exist_ok=True)
                path.fs.get_file(key, os.fspath(local / relative))
        else:
            path.fs.get_file(path.path, os.fspath(local))
        yield local
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

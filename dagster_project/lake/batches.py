"""All-or-nothing writes: a batch's files land together (local renames; `object_store` for s3:// roots)."""

from __future__ import annotations

import abc
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from dagster_project import processes
from dagster_project.lake.layout import is_object_root, lake_root

if TYPE_CHECKING:
    from upath import UPath

    from dagster_project.lake.layout import LakePath

# A temporary is `.<target name>.<host>-<pid>.<uuid>.tmp`: hidden, ending in `.tmp` so no
# reader's `*.parquet` glob (DuckDB's globs match hidden files) nor any other suffix pattern
# sees it, and naming the process that writes it so the next run can tell a crashed writer's
# leftover from a live writer's work in progress.
_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)\.[0-9a-f]{32}\.tmp$")
# Leftovers of earlier versions, which named no owner: `.<name>.<uuid>.tmp`, and
# `.<stem>.<uuid>.tmp.parquet`, which every `*.parquet` glob reads as data (no version writes
# it any more, so it is always stale).
_OWNERLESS_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")
_READ_AS_DATA_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp\.parquet$")
# A temporary whose owner cannot be checked (no owner in its name, or written from another
# host sharing the lake) is stale only when it is older than this: no write takes that long.
STALE_TEMPORARY_AGE_SECONDS = 6 * 3600

log = logging.getLogger(__name__)


def writer_tag() -> str:
    """`<host>-<pid>`: names this process in what it stages, so a leftover can be told from work in progress."""
    return f"{processes.host_tag()}-{os.getpid()}"


def writer_is_gone(host: str, pid: int, written_at: float, now: float | None = None) -> bool:
    """Whether the process `pid` of host `host` that staged something at `written_at` (epoch
    seconds) no longer runs: on this host, its pid is gone or now names a process started
    later; another host's process cannot be checked, so it counts as gone once the staging is
    older than `STALE_TEMPORARY_AGE_SECONDS`."""
    if host == processes.host_tag():
        return not processes.is_alive(pid, since=written_at)
    now = time.time() if now is None else now
    return now - written_at > STALE_TEMPORARY_AGE_SECONDS


def temporary_sibling(path: Path) -> Path:
    """A hidden temporary name beside `path`, ending in `.tmp` and naming this process."""
    return path.with_name(f".{path.name}.{writer_tag()}.{uuid.uuid4().hex}.tmp")


def is_temporary(path: Path) -> bool:
    return any(pattern.match(path.name) for pattern in (_TEMPORARY, _OWNERLESS_TEMPORARY, _READ_AS_DATA_TEMPORARY))


def is_stale_temporary(path: Path, now: float | None = None) -> bool:
    """A temporary left by a writer that is gone: its process died (or its pid now names a
    process started after the temporary), or, when the owner cannot be checked, it is older
    than `STALE_TEMPORARY_AGE_SECONDS`. A live writer's temporaries are never stale (so two
    runs writing into one folder leave each other alone); a `.tmp.parquet` leftover of an
    earlier version always is."""
    try:
        modified = path.lstat().st_mtime
    except FileNotFoundError:
        return False
    now = time.time() if now is None else now
    if _READ_AS_DATA_TEMPORARY.match(path.name):
        return True
    owned = _TEMPORARY.match(path.name)
    if owned:
        return writer_is_gone(owned["host"], int(owned["pid"]), modified, now)
    if _OWNERLESS_TEMPORARY.match(path.name):
        return now - modified > STALE_TEMPORARY_AGE_SECONDS
    return False


def clean_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the stale temporaries (files or folders) directly inside `folder`; returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        if not is_temporary(path) or not is_stale_temporary(path):
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue  # another run cleaned it first
        log.warning("removed %s, a temporary left by a writer that no longer runs", path)
        removed.append(path)
    return removed


class Batch(abc.ABC):
    """Files and folders that land together or not at all (`atomic_batch`). A writer is given
    a local temporary path to write, whatever kind of root the target lies under."""

    cleaned: list  # what crashed writers left, removed by this batch

    @abc.abstractmethod
    def file(self, target: LakePath, write: Callable[[Path], object]) -> LakePath:
        """`write(tmp)` writes the whole file at the temporary path it is given."""

    def parquet(self, target: LakePath, frame: pl.DataFrame) -> LakePath:
        return self.file(target, lambda tmp: frame.write_parquet(tmp, compression="zstd", statistics=True))

    @abc.abstractmethod
    def folder(self, target: LakePath, write: Callable[[Path], object]) -> LakePath:
        """`write(tmp)` fills an empty temporary folder that replaces `target` as a whole."""

    @property
    @abc.abstractmethod
    def targets(self) -> list[LakePath]: ...

    @abc.abstractmethod
    def commit(self) -> list[LakePath]:
        """Make every staged file and folder land; returns their targets."""

    @abc.abstractmethod
    def discard(self) -> None:
        """Remove what was staged and not committed (called after `commit` too)."""


class AtomicBatch(Batch):
    """Files and folders written to temporaries, renamed into place together on `commit`.

    Each writer gets a temporary sibling of its target (a rename within one folder is atomic).
    Nothing is renamed until every writer has succeeded, so a failure in any of them leaves
    every target as it was; `discard` removes whatever was staged.
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path, bool]] = []  # (temporary, target, is_folder)
        self._targets: set[Path] = set()
        self._cleaned_folders: set[Path] = set()
        self.cleaned: list[Path] = []  # stale temporaries of crashed runs removed by this batch

    def _stage(self, target: Path, is_folder: bool) -> Path:
        if not isinstance(target, Path) and "://" in str(target):
            raise TypeError(f"{target} is not a local path: open the batch with its lake root, atomic_batch(root)")
        target = Path(target)
        if target in self._targets:
            raise ValueError(f"{target} is written twice in one batch")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.parent not in self._cleaned_folders:
            # the leftovers of a killed run go with the next run that writes beside them
            self.cleaned += clean_stale_temporaries(target.parent)
            self._cleaned_folders.add(target.parent)
        tmp = temporary_sibling(target)
        self._staged.append((tmp, target, is_folder))
        self._targets.add(target)
        return tmp

    def file(self, target: Path, write: Callable[[Path], object]) -> Path:
        write(self._stage(target, is_folder=False))
        return Path(target)

    def folder(self, target: Path, write: Callable[[Path], object]) -> Path:
        tmp = self._stage(target, is_folder=True)
        tmp.mkdir()
        write(tmp)
        return Path(target)

    @property
    def targets(self) -> list[Path]:
        return [target for _, target, _ in self._staged]

    def commit(self) -> list[Path]:
        """Rename every staged temporary onto its target.

        A folder cannot be replaced in one step: the old one is renamed aside first and
        removed only after the new one is in place.
        """
        retired: list[Path] = []
        try:
            for tmp, target, is_folder in self._staged:
                if is_folder and target.exists():
                    aside = temporary_sibling(target)
                    os.replace(target, aside)
                    retired.append(aside)
                os.replace(tmp, target)
        finally:
            for folder in retired:
                shutil.rmtree(folder, ignore_errors=True)
        return self.targets

    def discard(self) -> None:
        for tmp, _, _ in self._staged:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            elif tmp.exists():
                tmp.unlink()


def new_batch(root: str | os.PathLike | UPath | None = None) -> Batch:
    """A batch for targets under the lake root `root`: renames of local temporaries, or, for a
    root on an object store, a staging prefix and a manifest (`object_store.ObjectStoreBatch`).
    Without `root` the targets are local paths."""
    if root is not None and is_object_root(root := lake_root(root)):
        from dagster_project.lake.object_store import ObjectStoreBatch  # it builds on this module

        return ObjectStoreBatch(root)
    return AtomicBatch()


@contextmanager
def atomic_batch(root: str | os.PathLike | UPath | None = None) -> Iterator[Batch]:
    """Stage writes in the block; commit them together when it ends, discard them if it raises.
    `root`: the lake root, needed when it may be on an object store (`new_batch`)."""
    batch = new_batch(root)
    try:
        yield batch
        batch.commit()
    finally:
        batch.discard()


def write_partitions_atomic(
    frames: Mapping[LakePath, pl.DataFrame], root: str | os.PathLike | UPath | None = None
) -> list[LakePath]:
    """Write partition files so that a failed write changes none of them (`root`: as `atomic_batch`).

    Writing a partition again replaces its file: idempotent, never appends.
    """
    with atomic_batch(root) as batch:
        for path, frame in frames.items():
            batch.parquet(path, frame)
    return batch.targets


def write_file_atomic(
    path: LakePath, write: Callable[[Path], object], root: str | os.PathLike | UPath | None = None
) -> LakePath:
    """Call `write(tmp)` for a temporary path, then land it at `path` (`root`: as `atomic_batch`)."""
    with atomic_batch(root) as batch:
        target = batch.file(path, write)
    return target

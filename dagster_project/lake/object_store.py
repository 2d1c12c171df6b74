"""Batches on an object store (no rename there): staged under a prefix, committed by a manifest written last."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster_project.lake.batches import Batch, temporary_sibling, writer_is_gone, writer_tag
from dagster_project.lake.layout import is_object_root, lake_root

if TYPE_CHECKING:
    from upath import UPath

# Every batch stages under `<root>/.batches/<batch>/`, outside every folder a reader globs, and
# each staged object ends in `.tmp`, so not even a glob over the whole root reads one as data.
BATCHES = ".batches"
MANIFEST = "manifest.json"
STAGED_SUFFIX = ".tmp"
# `<host>-<pid>.<started, epoch s>.<uuid>`: the writer and when its batch began (on the
# writer's clock, not the store's), so a later writer can tell a dead writer's leftovers from a
# live one's work in progress (`writer_is_gone`).
_BATCH_NAME = re.compile(r"^(?P<host>[0-9a-f]{8})-(?P<pid>\d+)\.(?P<started>\d+)\.[0-9a-f]{32}$")

log = logging.getLogger(__name__)


@dataclass
class StagedBatch:
    """One batch's objects under the staging prefix, and its manifest's key once it is committed."""

    name: str
    keys: list[str] = field(default_factory=list)
    manifest: str | None = None


class ObjectLake:
    """The staging prefix of a lake root on an object store: lists the batches there, completes
    the committed ones and removes the ones their writers abandoned."""

    def __init__(self, root: UPath) -> None:
        self.root = root
        self.fs = root.fs
        self.base = root.path.rstrip("/")  # `bucket/prefix`, as fsspec names objects
        self.staging = f"{self.base}/{BATCHES}"

    def relative(self, target: UPath | str) -> str:
        """The key of `target` below the root (`raw/era5_land_monthly/2001-01.parquet`)."""
        path = lake_root(target)
        if not is_object_root(path) or path.protocol != self.root.protocol or not path.path.startswith(f"{self.base}/"):
            raise ValueError(f"{target} is not under the lake root {self.root}")
        return path.path[len(self.base) + 1 :]

    def find(self, prefix: str) -> list[str]:
        """Every object below `prefix` (a folder-like key), read afresh (other processes write here)."""
        self.fs.invalidate_cache(prefix)
        try:
            return [key for key in self.fs.find(prefix) if key.startswith(f"{prefix}/")]
        except FileNotFoundError:
            return []

    def batches(self) -> list[StagedBatch]:
        """Every batch under the staging prefix, from one listing."""
        found: dict[str, StagedBatch] = {}
        for key in self.find(self.staging):
            name, _, rest = key[len(self.staging) + 1 :].partition("/")
            batch = found.setdefault(name, StagedBatch(name))
            batch.keys.append(key)
            if rest == MANIFEST:
                batch.manifest = key
        return list(found.values())

    def complete_committed(self, batches: list[StagedBatch] | None = None) -> list[str]:
        """Publish every committed batch (its manifest exists) that is not published yet, oldest
        commit first, so a later batch's files win; returns their names."""
        manifests = []
        for batch in self.batches() if batches is None else batches:
            if batch.manifest is None:
                continue
            try:
                manifests.append(json.loads(self.fs.cat_file(batch.manifest)))
            except FileNotFoundError:
                continue  # its writer, or another reader, finished it since the listing
        completed = []
        for manifest in sorted(manifests, key=lambda manifest: (manifest["committed_at"], manifest["batch"])):
            if self.publish(manifest):
                log.warning("completed batch %s, committed but not published by its writer", manifest["batch"])
                completed.append(manifest["batch"])
        return completed

    def remove_abandoned(self, batches: list[StagedBatch] | None = None, now: float | None = None) -> list[str]:
        """Remove the staging of every batch without a manifest whose writer is gone (never read:
        it did not commit); returns their names. A live writer's staging is left alone."""
        removed = []
        for batch in self.batches() if batches is None else batches:
            writer = _BATCH_NAME.match(batch.name)
            if batch.manifest is not None or writer is None:
                continue
            if not writer_is_gone(writer["host"], int(writer["pid"]), float(writer["started"]), now):
                continue
            self.fs.rm(batch.keys)
            log.warning("removed the staging of batch %s, left uncommitted by a writer that no longer runs", batch.name)
            removed.append(batch.name)
        return removed

    def publish(self, manifest: dict[str, Any]) -> bool:
        """Copy a committed batch's staged objects onto their targets, then delete its manifest
        and staging. Copying again gives the same objects, so the writer, a later writer and a
        reader may all complete one batch; False when another one finished it first."""
        prefix = f"{self.staging}/{manifest['batch']}"
        for entry in manifest["entries"]:
            target, staged = f"{self.base}/{entry['target']}", f"{prefix}/{entry['target']}"
            if entry["kind"] == "file":
                copies = [(staged + STAGED_SUFFIX, target)]
            else:
                copies = [(f"{staged}/{name}{STAGED_SUFFIX}", f"{target}/{name}") for name in entry["files"]]
            for source, destination in copies:
                try:
                    self.fs.cp_file(source, destination)
                except FileNotFoundError:
                    self.fs.invalidate_cache(prefix)
                    if not self.fs.exists(f"{prefix}/{MANIFEST}"):
                        return False  # published and cleaned up by another process meanwhile
                    raise FileNotFoundError(
                        f"batch {manifest['batch']} is committed but its staged {source} is missing: "
                        f"{entry['target']} cannot be completed"
                    ) from None
            if entry["kind"] == "folder":
                # a folder is replaced as a whole: what the old one held beyond the new files goes
                kept = {destination for _, destination in copies}
                stale = [key for key in self.find(target) if key not in kept]
                if stale:
                    self.fs.rm(stale)
        self.fs.rm_file(f"{prefix}/{MANIFEST}")  # published: from here the staging is garbage
        self.remove(prefix)
        return True

    def remove(self, prefix: str) -> None:
        keys = self.find(prefix)
        if keys:
            self.fs.rm(keys)


class ObjectStoreBatch(Batch):
    """A batch under a lake root on an object store, where there is no rename.

    Every file is written locally, then uploaded under `<root>/.batches/<batch>/` (the batch
    named after its writer, as local temporaries are). `commit` writes the manifest listing the
    batch's files LAST, in one PUT: that is the commit point. Then each staged object is copied
    onto its target and the manifest and staging are deleted. Before the manifest nothing is
    read and a failure or a kill lands nothing; once it exists the batch lands: the next writer
    (or a reader, `complete_committed_batches`) completes a publish that was interrupted.
    """

    def __init__(self, root: UPath) -> None:
        self.lake = ObjectLake(root)
        self.name = f"{writer_tag()}.{int(time.time())}.{uuid.uuid4().hex}"
        self.prefix = f"{self.lake.staging}/{self.name}"
        self._entries: list[dict[str, Any]] = []  # what the manifest will list
        self._targets: dict[str, UPath | str] = {}  # by key below the root
        self._scratch: Path | None = None  # local folder the writers write in
        self._uploaded = False
        self._committed = False
        self._looked = False
        self.cleaned: list[str] = []  # batches of dead writers whose staging this batch removed
        self.completed: list[str] = []  # committed batches this batch published for their writers

    def _look(self) -> None:
        """Complete the batches committed before this one, so its files land after theirs, and
        remove the staging dead writers left: tidying falls to the next writer."""
        batches = self.lake.batches()
        self.completed += self.lake.complete_committed(batches)
        self.cleaned += self.lake.remove_abandoned(batches)

    def _register(self, target: UPath | str) -> str:
        relative = self.lake.relative(target)
        if relative in self._targets:
            raise ValueError(f"{target} is written twice in one batch")
        if not self._looked:
            self._look()
            self._looked = True
        self._targets[relative] = target
        return relative

    def _stage(self, target: UPath | str) -> tuple[str, Path]:
        relative = self._register(target)
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="permafrost-batch-"))
        return relative, temporary_sibling(self._scratch / Path(relative).name)

    def reserve(self, target: UPath | str) -> str:
        """The staging key a writer elsewhere (a dask worker, `tile_engine.map_tiles`) uploads
        `target`'s file to, listed in the manifest as a file. From here the batch owns the key:
        a discard removes it, uploaded or not; commit only once every reserved key is uploaded."""
        relative = self._register(target)
        self._uploaded = True  # a worker may have uploaded part of it by the time the batch is discarded
        self._entries.append({"target": relative, "kind": "file"})
        return f"{self.prefix}/{relative}{STAGED_SUFFIX}"

    def _upload(self, local: Path, key: str) -> None:
        self._uploaded = True
        self.lake.fs.put_file(os.fspath(local), key)

    def file(self, target: UPath | str, write: Callable[[Path], object]) -> UPath | str:
        relative, local = self._stage(target)
        write(local)
        self._upload(local, f"{self.prefix}/{relative}{STAGED_SUFFIX}")
        local.unlink()
        self._entries.append({"target": relative, "kind": "file"})
        return target

    def folder(self, target: UPath | str, write: Callable[[Path], object]) -> UPath | str:
        relative, local = self._stage(target)
        local.mkdir()
        write(local)
        files = sorted(path.relative_to(local).as_posix() for path in local.rglob("*") if path.is_file())
        for name in files:
            self._upload(local / name, f"{self.prefix}/{relative}/{name}{STAGED_SUFFIX}")
        shutil.rmtree(local)
        self._entries.append({"target": relative, "kind": "folder", "files": files})
        return target

    @property
    def targets(self) -> list[UPath | str]:
        return list(self._targets.values())

    def commit(self) -> list[UPath | str]:
        """Write the manifest (the commit point), then publish. A failure while publishing
        raises, but the batch is committed: the next writer or reader completes it."""
        if not self._entries:
            return []
        self._look()  # batches committed while this one was staging land first
        manifest = {"batch": self.name, "committed_at": time.time(), "entries": self._entries}
        self.lake.fs.pipe_file(f"{self.prefix}/{MANIFEST}", json.dumps(manifest, indent=1).encode())
        self._committed = True
        self.lake.publish(manifest)
        return self.targets

    def discard(self) -> None:
        if self._uploaded and not self._committed:
            self.lake.remove(self.prefix)
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


def complete_committed_batches(root: str | os.PathLike | UPath) -> list[str]:
    """What a reader of a lake on an object store calls before reading: completes every batch
    committed before the call whose publish has not finished (a killed writer's, or one still
    publishing), so every batch it reads is whole; returns their names. A local lake has no
    manifests (its batches land by renames): nothing to do."""
    root = lake_root(root)
    return ObjectLake(root).complete_committed() if is_object_root(root) else []

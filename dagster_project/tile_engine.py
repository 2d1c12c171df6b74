"""Grid mode's engine: one run maps a per-tile kernel over its tiles on dask.distributed (an
existing cluster by address, or a LocalCluster embedded in the run) and lands the tiles' outputs
all together, only when every tile succeeded. Plain Python (no Dagster): assets call it directly
or through `dask_engine.DaskResource`.

Coarse tasks: one task per tile holding all its variables and its whole time axis (fine-grained
dask graphs were slower than numpy here, and xsdba needs time in one chunk). A worker writes its
tile's outputs to temporaries beside their targets (`lake.temporary_sibling`, named after the
worker's process, so a killed worker's leftovers are recognised as stale and cleaned by the next
write there); the run renames them into place in one `lake.atomic_batch` after every tile
returned. The lake must be reachable at the same path from every worker (one machine, or a
shared volume), or be on an object store every worker reaches: there a worker uploads its tile's
files to the staging prefix of the run's `ObjectStoreBatch`, which commits by its manifest.

dask and distributed are imported inside the functions that need them (a heavy import).
"""

from __future__ import annotations

import functools
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl

from dagster_project import lake

# Where a user points the engine at an existing scheduler (tcp://host:8786); dask's own
# `scheduler-address` setting (DASK_SCHEDULER_ADDRESS) is asked next.
# One BLAS/OpenMP thread per worker process: the embedded cluster runs one single-threaded
# worker per core, and BLAS threads fighting for the same cores make numpy many times slower.
ONE_BLAS_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
# Attempts after a tile's kernel raised; a worker that dies is dask's business: the scheduler
# reruns its tasks elsewhere up to `distributed.scheduler.allowed-failures` times.
DEFAULT_TILE_RETRIES = 2

TileKernel = Callable[[Any], Mapping[str, pl.DataFrame]]


class TileRunError(RuntimeError):
    """A tile failed (after its retries): nothing of the run landed."""


def scheduler_address(configured: str | None = None) -> str | None:
    """The scheduler to use: `configured`, else dask's `scheduler-address` setting, else None
    (start an embedded LocalCluster)."""
    if configured and configured.strip():
        return configured.strip()
    import dask

    return dask.config.get("scheduler-address", None) or None


def local_cluster(n_workers: int | None = None, memory_limit: str = "auto"):
    """A LocalCluster of `n_workers` processes (default: one per core) with one thread and one
    BLAS thread each, on loopback only, its HTTP endpoints on a free port and no dashboard (two
    runs at once must not fight for a port). Use it as a context manager, which closes it."""
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        memory_limit=memory_limit,
        env=ONE_BLAS_THREAD,
    )


@contextmanager
def dask_client(address: str | None = None, n_workers: int | None = None, memory_limit: str = "auto") -> Iterator:
    """A `distributed.Client` on the scheduler at `address`, or, with none, on a `local_cluster`
    that lives as long as the block. An existing cluster is only disconnected from on exit."""
    from distributed import Client

    if address:
        try:
            client = Client(address)
        except OSError as error:
            raise ConnectionError(
                f"no dask scheduler answers at {address} (PERMAFROST_DASK_ADDRESS or dask's scheduler-address): {error}"
            ) from error
        with client:
            yield client
        return
    with local_cluster(n_workers, memory_limit) as cluster, Client(cluster) as client:
        yield client


def _stage_tile(tile: str, kernel: TileKernel, task: Any, targets: Mapping[str, Path]) -> dict[str, Path]:
    """Run on a worker: `kernel(task)`, each output frame written to a temporary beside its target.

    A kernel or a write that raises removes what it staged, so a retry starts clean.
    """
    frames = kernel(task)
    if set(frames) != set(targets):
        raise ValueError(
            f"tile {tile}: the kernel returned outputs {sorted(frames)}; the run expects {sorted(targets)}"
        )
    staged: dict[str, Path] = {}
    try:
        for name, frame in frames.items():
            target = Path(targets[name])
            target.parent.mkdir(parents=True, exist_ok=True)
            staged[name] = lake.temporary_sibling(target)
            frame.write_parquet(staged[name], compression="zstd", statistics=True)
    except BaseException:
        _remove(staged.values())
        raise
    return staged


def _remove(paths) -> None:
    for path in paths:
        Path(path).unlink(missing_ok=True)


def _move(tile: str, staged: Path) -> Callable[[Path], None]:
    def move(tmp: Path) -> None:
        try:
            os.replace(staged, tmp)
        except FileNotFoundError as error:
            raise TileRunError(
                f"tile {tile}: its output {staged} vanished before the commit (cleaned as a dead worker's "
                "leftover?); nothing landed: run again"
            ) from error

    return move


def _upload_tile(tile: str, kernel: TileKernel, task: Any, keys: Mapping[str, str], fs) -> dict[str, str]:
    """Run on a worker when the lake is on an object store: `kernel(task)`, each output frame
    written to a local scratch file and uploaded to its staging key (`keys`, reserved by the run's
    `ObjectStoreBatch`). What a failure leaves under the staging prefix goes with the batch."""
    frames = kernel(task)
    if set(frames) != set(keys):
        raise ValueError(f"tile {tile}: the kernel returned outputs {sorted(frames)}; the run expects {sorted(keys)}")
    with tempfile.TemporaryDirectory(prefix="permafrost-tile-") as scratch:
        for name, frame in frames.items():
            local = Path(scratch) / f"{name}.parquet"
            frame.write_parquet(local, compression="zstd", statistics=True)
            fs.put_file(os.fspath(local), keys[name])
    return dict(keys)


def _on_object_store(targets: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether the targets are objects (`UPath`s of a lake root on an object store) or local
    paths; a mix is an error."""
    kinds = {lake.is_object_root(lake.lake_root(path)) for outputs in targets.values() for path in outputs.values()}
    if len(kinds) > 1:
        raise ValueError("the targets mix local paths and object-store paths: one lake per run")
    return kinds == {True}


def _run_tiles(
    stage: Callable[..., Any],
    kernel: TileKernel,
    tasks: Mapping[str, Any],
    outputs: Mapping[str, Any],
    client,
    retries: int,
    name: str,
) -> tuple[dict[str, Any], dict[str, BaseException]]:
    """`stage(tile, kernel, task, outputs[tile])` for every tile, here (stopping at the first
    failure) or one task each on `client`, waiting for all; (what each tile staged, failures)."""
    staged: dict[str, Any] = {}
    failures: dict[str, BaseException] = {}
    if client is None:
        for tile, task in tasks.items():
            try:
                staged[tile] = stage(tile, kernel, task, outputs[tile])
            except Exception as error:
                failures[tile] = error
                break
        return staged, failures
    from distributed import wait

    run = uuid.uuid4().hex[:12]
    futures = {
        tile: client.submit(
            stage, tile, kernel, task, outputs[tile], key=f"{name}-{tile}-{run}", retries=retries, pure=False
        )
        for tile, task in tasks.items()
    }
    try:
        wait(list(futures.values()))
    except BaseException:  # interrupted: tiles not started yet never start
        client.cancel(list(futures.values()))
        raise
    for tile, future in futures.items():
        if future.status == "finished":
            staged[tile] = future.result()
        else:
            failures[tile] = future.exception() if future.status == "error" else RuntimeError(future.status)
        future.release()
    return staged, failures


def _raise_failures(failures: Mapping[str, BaseException], tiles: int) -> None:
    if failures:
        tile = sorted(failures)[0]
        error = failures[tile]
        raise TileRunError(
            f"{len(failures)} of {tiles} tile(s) failed, nothing landed; tile {tile}: {type(error).__name__}: {error}"
        ) from error


def map_tiles(
    kernel: TileKernel,
    tasks: Mapping[str, Any],
    targets: Mapping[str, Mapping[str, Any]],
    client=None,
    retries: int = DEFAULT_TILE_RETRIES,
    name: str = "tile",
    root=None,
) -> dict[str, list[Any]]:
    """Run `kernel(tasks[tile])` for every tile and land each tile's output frames (name -> frame)
    at `targets[tile][name]` (Parquet), all of them or none.

    On `client` (a `distributed.Client`) the tiles run as one task each, retried `retries` times
    when the kernel raises; without one they run here, one after the other (the same code path
    to the lake, for tests and small grids). The run waits for every tile before it decides, so
    no worker is still writing when it commits or cleans up. A tile that fails for good raises
    `TileRunError` naming it, and no target changes. Returns the landed paths per tile.

    Targets on an object store (`UPath`s under the lake root `root`, required then) land as one
    `ObjectStoreBatch`: the run reserves a staging key per output, each worker uploads its tile's
    files there, and the run writes the manifest (the commit) only when every tile succeeded;
    otherwise the staging is removed and nothing lands.
    """
    if set(tasks) != set(targets):
        raise ValueError(
            f"tasks and targets must name the same tiles: tasks only {sorted(set(tasks) - set(targets))[:5]}, "
            f"targets only {sorted(set(targets) - set(tasks))[:5]}"
        )
    if _on_object_store(targets):
        return _map_tiles_to_objects(kernel, tasks, targets, client, retries, name, root)
    staged, failures = _run_tiles(_stage_tile, kernel, tasks, targets, client, retries, name)
    try:
        _raise_failures(failures, len(tasks))
        with lake.atomic_batch() as batch:
            for tile, outputs in staged.items():
                for output, path in outputs.items():
                    batch.file(targets[tile][output], _move(tile, path))
    finally:
        _remove(path for outputs in staged.values() for path in outputs.values())  # whatever did not land
    return {tile: [Path(targets[tile][output]) for output in outputs] for tile, outputs in staged.items()}


def _map_tiles_to_objects(kernel, tasks, targets, client, retries, name, root) -> dict[str, list[Any]]:
    """`map_tiles` on a lake root on an object store (see there)."""
    if root is None or not lake.is_object_root(root := lake.lake_root(root)):
        raise ValueError(f"targets on an object store need the lake's object-store root, got root={root!r}")
    batch = lake.ObjectStoreBatch(root)
    try:
        keys = {
            tile: {output: batch.reserve(path) for output, path in outputs.items()} for tile, outputs in targets.items()
        }
        upload = functools.partial(_upload_tile, fs=batch.lake.fs)
        _, failures = _run_tiles(upload, kernel, tasks, keys, client, retries, name)
        _raise_failures(failures, len(tasks))
        batch.commit()
    finally:
        batch.discard()
    return {tile: list(outputs.values()) for tile, outputs in targets.items()}

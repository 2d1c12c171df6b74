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
shared volume).

dask and distributed are imported inside the functions that need them (a heavy import).
"""

from __future__ import annotations

import os
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


def map_tiles(
    kernel: TileKernel,
    tasks: Mapping[str, Any],
    targets: Mapping[str, Mapping[str, Path]],
    client=None,
    retries: int = DEFAULT_TILE_RETRIES,
    name: str = "tile",
) -> dict[str, list[Path]]:
    """Run `kernel(tasks[tile])` for every tile and land each tile's output frames (name -> frame)
    at `targets[tile][name]` (Parquet), all of them or none.

    On `client` (a `distributed.Client`) the tiles run as one task each, retried `retries` times
    when the kernel raises; without one they run here, one after the other (the same code path
    to the lake, for tests and small grids). The run waits for every tile before it decides, so
    no worker is still writing when it commits or cleans up. A tile that fails for good raises
    `TileRunError` naming it, and no target changes. Returns the landed paths per tile.
    """
    if set(tasks) != set(targets):
        raise ValueError(
            f"tasks and targets must name the same tiles: tasks only {sorted(set(tasks) - set(targets))[:5]}, "
            f"targets only {sorted(set(targets) - set(tasks))[:5]}"
        )
    staged: dict[str, dict[str, Path]] = {}
    failures: dict[str, BaseException] = {}
    if client is None:
        for tile, task in tasks.items():
            try:
                staged[tile] = _stage_tile(tile, kernel, task, targets[tile])
            except Exception as error:
                failures[tile] = error
                break
    else:
        from distributed import wait

        run = uuid.uuid4().hex[:12]
        futures = {
            tile: client.submit(
                _stage_tile, tile, kernel, task, targets[tile], key=f"{name}-{tile}-{run}", retries=retries, pure=False
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
    try:
        if failures:
            tile = sorted(failures)[0]
            error = failures[tile]
            raise TileRunError(
                f"{len(failures)} of {len(tasks)} tile(s) failed, nothing landed; tile {tile}: "
                f"{type(error).__name__}: {error}"
            ) from error
        with lake.atomic_batch() as batch:
            for tile, outputs in staged.items():
                for output, path in outputs.items():
                    batch.file(targets[tile][output], _move(tile, path))
    finally:
        _remove(path for outputs in staged.values() for path in outputs.values())  # whatever did not land
    return {tile: [Path(targets[tile][output]) for output in outputs] for tile, outputs in staged.items()}

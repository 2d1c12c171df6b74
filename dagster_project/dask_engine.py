"""The Dagster resource of grid mode's engine: which dask.distributed cluster runs the tiles.

No address: each run starts an embedded LocalCluster (processes, one thread and one BLAS thread
each) and closes it when it is done. An address (`PERMAFROST_DASK_ADDRESS`, or dask's own
`scheduler-address` setting) points it at any existing cluster: dask-kubernetes, dask-jobqueue,
Coiled. The work itself is `tile_engine.map_tiles`, which needs no Dagster.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from dagster_project import tile_engine


class DaskResource(ConfigurableResource):
    """Where grid mode's tile tasks run (see the module docstring)."""

    scheduler_address: str = Field(
        default="", description="tcp://host:port of an existing scheduler; empty: dask's setting, else embedded"
    )
    n_workers: int = Field(default=0, ge=0, description="workers of the embedded cluster; 0: one per core")
    memory_limit: str = Field(default="auto", description="memory per embedded worker ('4GiB'; 'auto' splits RAM)")
    tile_retries: int = Field(default=tile_engine.DEFAULT_TILE_RETRIES, ge=0, description="retries of a failed tile")
    serial: bool = Field(
        default=False,
        description="run the tiles in the step's own process, one after the other, with no cluster (tests, a "
        "handful of cells); the same path to the lake, all or nothing",
    )

    @property
    def address(self) -> str | None:
        """The scheduler this resource uses; None: an embedded LocalCluster."""
        return tile_engine.scheduler_address(self.scheduler_address)

    @contextmanager
    def client(self) -> Iterator:
        """A `distributed.Client` for the duration of the block (an embedded cluster lives as long)."""
        with tile_engine.dask_client(self.address, self.n_workers or None, self.memory_limit) as client:
            yield client

    def map_tiles(
        self,
        kernel: tile_engine.TileKernel,
        tasks: Mapping[str, Any],
        targets: Mapping[str, Mapping[str, Any]],
        root=None,
    ) -> dict[str, list[Any]]:
        """`tile_engine.map_tiles` on this resource's cluster (here, serially, with `serial`): every
        tile lands, or none. `root`: the lake root, needed when it is on an object store."""
        if self.serial:
            return tile_engine.map_tiles(kernel, tasks, targets, client=None, root=root)
        with self.client() as client:
            return tile_engine.map_tiles(kernel, tasks, targets, client=client, retries=self.tile_retries, root=root)

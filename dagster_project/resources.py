"""Dagster resources: the Parquet lake, the DuckDB warehouse and the configured sources."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
from dagster import ConfigurableResource, EnvVar

from dagster_project import dbt, lake
from dagster_project.dask_engine import DaskResource
from dagster_project.settings import DEFAULT_DEMO_SEED, EARTH_ENGINE_FIELDS, Settings
from sources import catalog, registry
from sources.base import ClimateModelSource, ReanalysisSource, StaticSource
from sources.config import ENV_EE_KEY_FILE, ENV_EE_PROJECT, ENV_EE_SERVICE_ACCOUNT, SourcesConfig, load_sources
from sources.simulator.worlds import DEFAULT_WORLD

# DuckDB allows one writer per file: every step that writes or reads the warehouse file
# shares this pool (dagster.yaml limits each pool to one step at a time). Other processes
# (a notebook, the README's read-only query, `dbt build` from a shell) are not in the pool:
# every connection waits a bounded time for them (`WarehouseResource.lock_wait_seconds`).
WAREHOUSE_POOL = "duckdb_warehouse"


class LakeResource(ConfigurableResource):
    """Root of the Parquet lake (a folder, or an object-store URL); `layout` says where everything lands in it."""

    root: str

    @property
    def layout(self) -> lake.LakeLayout:
        return lake.LakeLayout(self.root)

    def batch(self):
        """All-or-nothing writes: `with lake.batch() as batch: batch.parquet(...)`; every file
        of the block lands only after all were written."""
        return lake.atomic_batch(self.layout.root)

    def write_partitions(self, frames: dict[Path, pl.DataFrame]) -> list[Path]:
        return lake.write_partitions_atomic(frames, self.layout.root)


class WarehouseResource(ConfigurableResource):
    """The DuckDB warehouse file: views over the lake for users, tables built by dbt.

    Every connection waits up to `lock_wait_seconds` for another process's lock on the file,
    then fails naming that process (`lake.WarehouseLockedError`). With `lake_root` on an object
    store (`s3://...`), every connection registers the lake's fsspec file system, so the views
    over the lake's files read them without DuckDB's httpfs extension (as dbt's connection does,
    `dagster_project/lake/dbt_plugin.py`).
    """

    path: str
    lock_wait_seconds: float = lake.DEFAULT_LOCK_WAIT_SECONDS
    lake_root: str = ""

    @property
    def file(self) -> Path:
        return Path(self.path).expanduser().resolve()

    @property
    def filesystem(self):
        """The lake's fsspec file system where the lake is on an object store, else None."""
        if not self.lake_root or not lake.is_object_root(root := lake.lake_root(self.lake_root)):
            return None
        return root.fs

    def connect(self, read_only: bool = False):
        return lake.connect(
            self.file, read_only=read_only, wait_seconds=self.lock_wait_seconds, filesystem=self.filesystem
        )

    def wait_until_writable(self) -> None:
        lake.wait_until_writable(self.file, self.lock_wait_seconds)

    def refresh_output_views(self, layout: lake.LakeLayout, asset: str, log=None) -> dict[str, object]:
        """(Re)define the output views over `asset`'s files (`lake.OUTPUT_VIEWS`), once they landed;
        returns the metadata that says which.

        A view reads its files when queried, so an existing one already shows the files just
        landed: when the warehouse stays locked past the wait, the asset does not fail (its files
        are in place and recorded); it warns, and its next run defines the views.
        """
        views = {
            view: layout.view_source(view)
            for view, output in {**lake.OUTPUT_VIEWS, **lake.GRID_OUTPUT_VIEWS, **lake.GRID_NETWORK_VIEWS}.items()
            if asset in output.owners.split()
        }
        try:
            lake.refresh_parquet_views(self.file, views, self.lock_wait_seconds, self.filesystem)
        except lake.WarehouseLockedError as error:
            if log is not None:
                log.warning(f"warehouse views {', '.join(map(str, views))} not (re)defined: {error}")
            return {"warehouse_views_not_refreshed": f"{', '.join(map(str, views))}: {error}"}
        return {"warehouse_views": ", ".join(map(str, views))}

    def read_only(self):
        return lake.read_only(self.file, self.lock_wait_seconds, self.filesystem)

    def read_table(self, table: lake.Table) -> pl.DataFrame:
        """A whole warehouse table as a polars frame, read through a read-only connection."""
        with self.read_only() as con:
            query = f'select * from "{table.schema}"."{table.name}" order by all'
            return pl.from_arrow(con.sql(query).to_arrow_table())


class SourcesResource(ConfigurableResource):
    """Which source feeds each kind of data: the sources file (PERMAFROST_SOURCES, see
    `sources.config`), every kind on the offline demo when there is none.

    Earth Engine credentials arrive as `EnvVar`s (resolved at run time, never shown in the UI
    or written to run config); the file is validated when the definitions load.
    """

    demo_seed: int = DEFAULT_DEMO_SEED
    demo_latest_month: str = catalog.DEFAULT_LATEST_MONTH.strftime("%Y-%m")
    demo_world: str = DEFAULT_WORLD
    config_file: str = ""
    ee_project: str | None = None
    ee_service_account: str | None = None
    ee_key_file: str | None = None

    def _demo_settings(self):
        from sources.demo import DemoSettings

        return DemoSettings(
            seed=self.demo_seed, latest_month=catalog.month_start(self.demo_latest_month), world=self.demo_world
        )

    def config(self) -> SourcesConfig:
        credentials = {
            ENV_EE_PROJECT: self.ee_project,
            ENV_EE_SERVICE_ACCOUNT: self.ee_service_account,
            ENV_EE_KEY_FILE: self.ee_key_file,
        }
        return load_sources(self.config_file or None, {k: v for k, v in credentials.items() if v})

    def reanalysis(self) -> ReanalysisSource:
        return registry.reanalysis_source(self.config(), self._demo_settings())

    def climate_model(self) -> ClimateModelSource:
        return registry.climate_model_source(self.config(), self._demo_settings())

    def static(self) -> StaticSource:
        return registry.static_source(self.config(), self._demo_settings())

    def latest_published_month(self) -> dt.date:
        """Newest month the configured reanalysis source has published, asked at run time."""
        return self.reanalysis().latest_month()


def sources_resource(settings: Settings) -> SourcesResource:
    # the same names as the settings' fields: each credential that is set arrives as an EnvVar
    credentials = {name: EnvVar(settings.variable(name)) for name in EARTH_ENGINE_FIELDS if getattr(settings, name)}
    return SourcesResource(
        demo_seed=settings.demo_seed,
        demo_latest_month=settings.demo_latest_month,
        demo_world=settings.demo_world,
        config_file=str(settings.sources_file or ""),
        **credentials,
    )


def build_resources(settings: Settings) -> dict[str, ConfigurableResource]:
    from dagster_project.dbt_resource import ProjectDbtCliResource

    return {
        "dbt": ProjectDbtCliResource(project_dir=dbt.dbt_project(), dbt_executable=dbt.dbt_executable()),
        "lake": LakeResource(root=str(settings.lake_root)),
        "warehouse": WarehouseResource(
            path=str(settings.warehouse_path),
            lock_wait_seconds=settings.warehouse_lock_wait_seconds,
            lake_root=str(settings.lake_root),
        ),
        "sources": sources_resource(settings),
        "dask": DaskResource(scheduler_address=settings.dask_address.strip()),
    }

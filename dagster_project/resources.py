"""Dagster resources: the Parquet lake, the DuckDB warehouse and the configured sources."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
from dagster import ConfigurableResource

from dagster_project import dbt, lake
from dagster_project.settings import DEFAULT_DEMO_SEED, SOURCE_KINDS, Settings
from sources import catalog
from sources.base import ClimateModelSource, ReanalysisSource, StaticSource

# DuckDB allows one writer per file: every step that writes or reads the warehouse file
# shares this pool (dagster.yaml limits each pool to one step at a time).
WAREHOUSE_POOL = "duckdb_warehouse"


class LakeResource(ConfigurableResource):
    """Root folder of the Parquet lake; `layout` says where everything lands in it."""

    root: str

    @property
    def layout(self) -> lake.LakeLayout:
        return lake.LakeLayout(Path(self.root))

    def batch(self):
        """All-or-nothing writes: `with lake.batch() as batch: batch.parquet(...)`; every file
        of the block is renamed into place only after all were written."""
        return lake.atomic_batch()

    def write_partitions(self, frames: dict[Path, pl.DataFrame]) -> list[Path]:
        return lake.write_partitions_atomic(frames)


class WarehouseResource(ConfigurableResource):
    """The DuckDB warehouse file: views over the lake for users, tables built by dbt."""

    path: str

    @property
    def file(self) -> Path:
        return Path(self.path).expanduser().resolve()

    def refresh_parquet_view(self, table: lake.Table, parquet_glob: Path | str) -> None:
        lake.refresh_parquet_view(self.file, table, str(parquet_glob))

    def read_only(self):
        return lake.read_only(self.file)

    def read_table(self, table: lake.Table) -> pl.DataFrame:
        """A whole warehouse table as a polars frame, read through a read-only connection."""
        with self.read_only() as con:
            query = f'select * from "{table.schema}"."{table.name}" order by all'
            return pl.from_arrow(con.sql(query).to_arrow_table())


class SourcesResource(ConfigurableResource):
    """Which implementation feeds each kind of source. Only `demo` exists so far."""

    kind: str = "demo"
    demo_seed: int = DEFAULT_DEMO_SEED
    demo_latest_month: str = catalog.DEFAULT_LATEST_MONTH.strftime("%Y-%m")

    def _demo_settings(self):
        from sources.demo import DemoSettings

        return DemoSettings(seed=self.demo_seed, latest_month=catalog.month_start(self.demo_latest_month))

    def _check_kind(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"source kind {self.kind!r} is not implemented; expected one of {SOURCE_KINDS}")

    def reanalysis(self) -> ReanalysisSource:
        self._check_kind()
        from sources.demo import DemoReanalysisSource

        return DemoReanalysisSource(self._demo_settings())

    def climate_model(self) -> ClimateModelSource:
        self._check_kind()
        from sources.demo import DemoClimateModelSource

        return DemoClimateModelSource(self._demo_settings())

    def static(self) -> StaticSource:
        self._check_kind()
        from sources.demo import DemoStaticSource

        return DemoStaticSource(self._demo_settings())

    def latest_published_month(self) -> dt.date:
        return self.reanalysis().latest_month()


def build_resources(settings: Settings) -> dict[str, ConfigurableResource]:
    from dagster_dbt import DbtCliResource

    return {
        "dbt": DbtCliResource(project_dir=dbt.dbt_project(), dbt_executable=dbt.dbt_executable()),
        "lake": LakeResource(root=str(settings.lake_root)),
        "warehouse": WarehouseResource(path=str(settings.warehouse_path)),
        "sources": SourcesResource(
            kind=settings.source, demo_seed=settings.demo_seed, demo_latest_month=settings.demo_latest_month
        ),
    }

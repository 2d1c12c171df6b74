"""Staging, intermediate and mart layers: the dbt project in sql/, loaded with dagster-dbt.

Models over reanalysis months (tag `monthly`) are partitioned by month and receive their
partition's window as dbt vars; everything else is one unpartitioned dbt build.
"""

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from dagster import AssetExecutionContext, AssetKey, BackfillPolicy, Failure, TimeWindow
from dagster_dbt import DagsterDbtTranslator, DbtCliInvocation, DbtCliResource, dbt_assets

from dagster_project import settings
from dagster_project.dbt import dbt_project
from dagster_project.partitions import reanalysis_months
from dagster_project.resources import WAREHOUSE_POOL, LakeResource, WarehouseResource

MONTHLY_TAG = "tag:monthly"

# The manifest is parsed here when missing or older than the SQL (dagster_project.dbt).
DBT_PROJECT = dbt_project()


def dbt_build_args(time_window: TimeWindow | None) -> list[str]:
    """Arguments of `dbt build` for a run: the partition's [start, end) months as vars."""
    args = ["build"]
    if time_window is not None:
        window = {"min_month": f"{time_window.start:%Y-%m-%d}", "max_month": f"{time_window.end:%Y-%m-%d}"}
        args += ["--vars", json.dumps(window)]
    return args


@contextmanager
def dbt_environment(lake: LakeResource, warehouse: WarehouseResource) -> Iterator[None]:
    """Point the dbt subprocess at this run's lake and warehouse (dbt reads the same variables)."""
    wanted = {settings.ENV_LAKE_ROOT: str(lake.layout.root), settings.ENV_WAREHOUSE: str(warehouse.file)}
    previous = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class PermafrostDbtTranslator(DagsterDbtTranslator):
    """dbt models land in groups named after their layer folder (staging, intermediate, marts)."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "seed":
            return "staging"  # reference tables (the USGS lithology map) sit beside the staging models
        if dbt_resource_props["resource_type"] != "model":
            return None
        return dbt_resource_props["fqn"][1]

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        dagster_meta = dbt_resource_props.get("meta", {}).get("dagster", {})
        if "asset_key" in dagster_meta:
            return AssetKey(dagster_meta["asset_key"])
        return AssetKey(dbt_resource_props["name"])


translator = PermafrostDbtTranslator()


def failed_nodes(run_results: Mapping[str, Any]) -> list[str]:
    """Nodes that errored (a model that did not build, a test whose SQL broke).

    A test that ran and found bad rows has status `fail`, not `error`: it is reported as a
    failed (blocking) asset check, and dbt itself skips the models downstream of it.
    """
    return [
        f"{r['unique_id']}: {r.get('message')}" for r in run_results.get("results", []) if r.get("status") == "error"
    ]


def run_dbt_build(invocation: DbtCliInvocation):
    yield from invocation.stream()
    errors = failed_nodes(invocation.get_artifact("run_results.json"))
    if errors:
        raise Failure(description="dbt build errors:\n" + "\n".join(errors))


def build_models(context: AssetExecutionContext, dbt: DbtCliResource, lake: LakeResource, warehouse: WarehouseResource):
    """`dbt build` of the selected models (and their tests), for the run's months if partitioned."""
    window = context.partition_time_window if context.assets_def.partitions_def is not None else None
    with dbt_environment(lake, warehouse):
        yield from run_dbt_build(dbt.cli(dbt_build_args(window), context=context, raise_on_error=False))


# Both definitions load the same project, name their assets the same way and write the same file.
SHARED = {
    "manifest": DBT_PROJECT.manifest_path,
    "project": DBT_PROJECT,
    "dagster_dbt_translator": translator,
    "pool": WAREHOUSE_POOL,
}


@dbt_assets(
    **SHARED,
    select=MONTHLY_TAG,
    name="dbt_monthly_models",
    partitions_def=reanalysis_months,
    backfill_policy=BackfillPolicy.single_run(),
)
def dbt_monthly_models(
    context: AssetExecutionContext, dbt: DbtCliResource, lake: LakeResource, warehouse: WarehouseResource
):
    yield from build_models(context, dbt, lake, warehouse)


@dbt_assets(**SHARED, exclude=MONTHLY_TAG, name="dbt_models")
def dbt_models(context: AssetExecutionContext, dbt: DbtCliResource, lake: LakeResource, warehouse: WarehouseResource):
    yield from build_models(context, dbt, lake, warehouse)

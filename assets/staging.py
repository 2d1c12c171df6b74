"""Staging, intermediate and mart layers: the dbt project in sql/, loaded with dagster-dbt.

Models over reanalysis months (tag `monthly`) are partitioned by month and receive their
partition's window as dbt vars; everything else is one unpartitioned dbt build.
"""

import datetime as dt
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import duckdb
from dagster import AssetExecutionContext, AssetKey, BackfillPolicy, Failure, Output, TableColumn, TableSchema
from dagster_dbt import DagsterDbtTranslator, DbtCliInvocation, DbtCliResource, dbt_assets

from dagster_project.dbt import dbt_project, run_environment
from dagster_project.lake import lock_holder
from dagster_project.partitions import month_window, reanalysis_months
from dagster_project.resources import WAREHOUSE_POOL, LakeResource, WarehouseResource

MONTHLY_TAG = "tag:monthly"

# The manifest is parsed here when missing or older than the SQL (dagster_project.dbt).
DBT_PROJECT = dbt_project()


RUN_MIN_MONTH = "PERMAFROST_RUN_MIN_MONTH"
RUN_MAX_MONTH = "PERMAFROST_RUN_MAX_MONTH"


def dbt_window_environment(window: tuple[dt.date, dt.date] | None) -> dict[str, str]:
    """The run's [start, end) months for dbt (sql/macros/calendar.sql: run_window), as
    environment variables: a changed --vars would make dbt parse the whole project again."""
    start, end = window if window is not None else ("", "")
    return {RUN_MIN_MONTH: str(start), RUN_MAX_MONTH: str(end)}


@contextmanager
def dbt_environment(
    lake: LakeResource, warehouse: WarehouseResource, window: tuple[dt.date, dt.date] | None = None
) -> Iterator[None]:
    """Point the dbt subprocess at this run's lake, warehouse and month window."""
    wanted = {**run_environment(lake.layout.root, warehouse.file), **dbt_window_environment(window)}
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

    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        """The YAML description; never the SQL (dagster-dbt's default appends it)."""
        described = (dbt_resource_props.get("description") or "").strip()
        kind, name = dbt_resource_props["resource_type"], dbt_resource_props["name"]
        return described or f"dbt {kind} `{name}` (its YAML gives no description)"

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        dagster_meta = dbt_resource_props.get("meta", {}).get("dagster", {})
        if "asset_key" in dagster_meta:
            return AssetKey(dagster_meta["asset_key"])
        return AssetKey(dbt_resource_props["name"])


translator = PermafrostDbtTranslator()


# dbt statuses that stop a build: `error` (a model that did not build, e.g. one refusing
# duplicated raw rows; a test whose SQL broke) and `fail` (a test of severity error that found
# rows). A warn-severity test that finds rows has status `warn`: it reports as a failed asset
# check and the build goes on (README, "Data-quality checks").
STOPPING_STATUSES = ("error", "fail")
FAILING_ROWS_SHOWN = 5


def failed_nodes(run_results: Mapping[str, Any]) -> list[str]:
    """Nodes that stop the build, each with dbt's message (a lock error names its holder)."""
    failed = []
    for result in run_results.get("results", []):
        if result.get("status") not in STOPPING_STATUSES:
            continue
        message = str(result.get("message"))
        holder = lock_holder(message) if "Could not set lock on file" in message else None
        failed.append(f"{result['unique_id']}: {message}" + (f" [lock held by {holder}]" if holder else ""))
    return failed


def failing_rows(run_results: Mapping[str, Any], warehouse: WarehouseResource) -> list[str]:
    """The first rows each failed test (status `fail`) found, read again with its compiled SQL:
    dbt's own message only counts them, the rows say which band, month and file."""
    shown = []
    for result in run_results.get("results", []):
        sql = result.get("compiled_code")
        if result.get("status") != "fail" or not sql:
            continue
        try:
            with warehouse.read_only() as con:
                cursor = con.execute(f"select * from ({sql}) limit {FAILING_ROWS_SHOWN}")
                names = [column[0] for column in cursor.description]
                rows = cursor.fetchall()
        except Exception as error:  # the message above still names the test
            shown.append(f"{result['unique_id']}: (its rows could not be read again: {error})")
            continue
        for row in rows:
            described = ", ".join(f"{name} {value}" for name, value in zip(names, row, strict=True))
            shown.append(f"{result['unique_id']}: {described}")
    return shown


def table_metadata(con, node: Mapping[str, Any]) -> dict[str, Any]:
    """Row count and column types of a built model or seed, read from the warehouse."""
    schema, name = node["schema"], node.get("alias") or node["name"]
    rows = con.execute(f'select count(*) from "{schema}"."{name}"').fetchone()[0]
    typed = con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = ? and table_name = ? order by ordinal_position",
        [schema, name],
    ).fetchall()
    described = {column: spec.get("description") or None for column, spec in node.get("columns", {}).items()}
    columns = [TableColumn(column, kind.lower(), description=described.get(column)) for column, kind in typed]
    return {"dagster/row_count": int(rows), "dagster/column_schema": TableSchema(columns=columns)}


def with_table_metadata(events: list, invocation: DbtCliInvocation, warehouse: WarehouseResource):
    """The dbt events, each model's and seed's output with its row count and column types.

    Read after dbt has finished (dbt holds the warehouse's write lock while it runs), through
    one read-only connection; a table that cannot be read keeps dbt's own metadata.
    """
    nodes = {
        node["name"]: node
        for node in invocation.manifest["nodes"].values()
        if node["resource_type"] in ("model", "seed")
    }
    outputs = [event for event in events if isinstance(event, Output) and event.output_name in nodes]
    if not outputs:
        yield from events
        return
    extra: dict[str, dict[str, Any]] = {}
    try:
        with warehouse.read_only() as con:
            for event in outputs:
                try:
                    extra[event.output_name] = table_metadata(con, nodes[event.output_name])
                except duckdb.Error:
                    continue
    except (duckdb.Error, OSError):
        pass
    for event in events:
        if isinstance(event, Output) and event.output_name in extra:
            event = event.with_metadata({**event.metadata, **extra[event.output_name]})
        yield event


def run_dbt_build(invocation: DbtCliInvocation, warehouse: WarehouseResource):
    yield from with_table_metadata(list(invocation.stream()), invocation, warehouse)
    run_results = invocation.get_artifact("run_results.json")
    errors = failed_nodes(run_results)
    if errors:
        rows = failing_rows(run_results, warehouse)
        raise Failure(
            description="dbt build stopped:\n"
            + "\n".join(errors)
            + ("\nfailing rows:\n" + "\n".join(rows) if rows else ""),
            metadata={"stopped_by": errors, "failing_rows": rows},
        )


def build_models(context: AssetExecutionContext, dbt: DbtCliResource, lake: LakeResource, warehouse: WarehouseResource):
    """`dbt build` of the selected models (and their tests), for the run's months if partitioned.

    Waits (bounded) until no other process holds the warehouse before dbt opens it, so a reader
    that closes in time delays the build instead of failing it, and one that does not is named.
    """
    window = None
    if context.assets_def.partitions_def is not None:
        window = month_window(context.partition_key_range.start, context.partition_key_range.end)
    warehouse.wait_until_writable()
    with dbt_environment(lake, warehouse, window):
        yield from run_dbt_build(dbt.cli(["build"], context=context, raise_on_error=False), warehouse)


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

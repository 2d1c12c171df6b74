"""Raw layer: each product as its source delivers it, reduced to spatial units (the six bands
unless the reanalysis source declares others), one Parquet per partition.

Assets here only fetch, validate and land; conversion to canonical names and units is the
staging layer's job (sql/). They never open the DuckDB warehouse (so they need neither its
lock nor a slot of its pool): its views `raw.<asset>` are globs over these files, defined by
the dbt project (`create_raw_views`, on-run-start), so a landed month is visible at once.
Landing is the last thing an asset does: nothing after the rename can fail, so a failed run
lands nothing and a landed file is always recorded as materialized.
"""

import datetime as dt

import polars as pl
from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
    asset,
)

from dagster_project import lake as layout
from dagster_project.metadata import markdown_table
from dagster_project.partitions import cmip5_experiments, reanalysis_months
from dagster_project.resources import LakeResource, SourcesResource
from sources import catalog, validation
from sources.base import NotPublishedError, units_of
from sources.validation import (
    validate_cmip5,
    validate_lithology,
    validate_reanalysis,
    validate_soil_properties,
)

RAW = layout.RAW_SCHEMA


def schema_metadata(units: dict[str, str], keys: dict[str, str]) -> TableSchema:
    columns = [TableColumn(name, type_, description="key") for name, type_ in keys.items()]
    columns += [TableColumn(name, "float64", description=unit) for name, unit in units.items()]
    return TableSchema(columns=columns)


def months_label(months: list[dt.date]) -> str:
    return f"{min(months):%Y-%m}..{max(months):%Y-%m}" if months else "none"


def published_months(requested: list[dt.date], latest: dt.date, source: str) -> list[dt.date]:
    """The requested months, or NotPublishedError for the first one after `latest`."""
    unpublished = sorted(m for m in requested if m > latest)
    if unpublished:
        raise NotPublishedError(source, unpublished[0], latest)
    return sorted(requested)


@asset(
    group_name=RAW,
    partitions_def=reanalysis_months,
    backfill_policy=BackfillPolicy.single_run(),
    kinds={"parquet"},
    description="ERA5-Land monthly means per spatial unit (Earth Engine MONTHLY_AGGR band names and units), one "
    "Parquet per month with a row per unit: six band rows by default, keyed `band`; other units (basins) keyed "
    "`unit`. Variables the source lacks are null columns (metadata `absent_variables`).",
)
def era5_land_monthly(
    context: AssetExecutionContext, lake: LakeResource, sources: SourcesResource
) -> MaterializeResult:
    reanalysis = sources.reanalysis()
    requested = [dt.date.fromisoformat(key) for key in context.partition_keys]
    months = published_months(requested, reanalysis.latest_month(), f"{reanalysis.name} ERA5-Land")
    where = f"{reanalysis.name} ERA5-Land {months_label(months)}"
    time_step = getattr(reanalysis, "time_step", "month")  # "day": DAILY_AGGR rows, summed to months in staging
    units = units_of(reanalysis)
    absent = tuple(getattr(reanalysis, "absent_variables", ()))
    frame = validate_reanalysis(reanalysis.read_months(months), months, where, time_step, units, absent)
    if absent:
        context.log.warning(f"{where}: the source has no {', '.join(absent)}: landed as null columns (absent)")
    optional = {name: unit for name, unit in catalog.ERA5_LAND_OPTIONAL_UNITS.items() if name in frame.columns}
    files = {
        lake.layout.era5_land_month(month): part for (month,), part in frame.group_by("month", maintain_order=True)
    }
    metadata = {
        "source": reanalysis.name,
        "rows": frame.height,
        f"{units.kind}s": frame[units.key_column].n_unique(),
        "months": len(months),
        "months_covered": months_label(months),
        "time_step": time_step,
        "absent_variables": ", ".join(absent) or "none",
        "dagster/column_schema": schema_metadata(
            {**catalog.ERA5_LAND_UNITS, **optional},
            {units.key_column: "int32" if units.key_column == "band" else "int64", "month": "date", "date": "date"},
        ),
        "path": MetadataValue.path(str(lake.layout.raw_folder(layout.ERA5_LAND))),
    }
    lake.write_partitions(files)  # the last step: every month of the run lands, or none
    context.log.info(f"wrote {len(files)} month(s) of ERA5-Land from source {reanalysis.name}: {months_label(months)}")
    return MaterializeResult(metadata=metadata)


@asset(
    group_name=RAW,
    partitions_def=cmip5_experiments,
    backfill_policy=BackfillPolicy.single_run(),
    kinds={"parquet"},
    description="CMIP5 monthly band means per experiment (CMIP variable names, units and sign conventions, "
    "model calendar).",
)
def cmip5_monthly(context: AssetExecutionContext, lake: LakeResource, sources: SourcesResource) -> MaterializeResult:
    model_source = sources.climate_model()
    absent_variables = tuple(getattr(model_source, "absent_variables", ()))
    frames: dict = {}
    covered: dict[str, str] = {}
    for experiment in context.partition_keys:
        where = f"{model_source.name} CMIP5 {experiment}"
        if experiment not in model_source.experiments():
            # e.g. published tables without a historical run: an empty file replaces any earlier
            # one, so nothing of another source is spliced in; the graph goes on without it
            context.log.warning(f"{where}: the source has no {experiment} run; landing it empty")
            frames[lake.layout.cmip5_experiment(experiment)] = validation.empty_cmip5(experiment)
            covered[experiment] = "absent"
            continue
        frame = validate_cmip5(model_source.read_experiment(experiment), experiment, where, absent_variables)
        frame = frame.select("experiment", *[c for c in frame.columns if c != "experiment"])
        frames[lake.layout.cmip5_experiment(experiment)] = frame
        covered[experiment] = months_label(frame["month"].unique().to_list())
    all_rows = pl.concat(list(frames.values()))
    metadata = {
        "source": model_source.name,
        "rows": all_rows.height,
        "bands": all_rows["band"].n_unique(),
        "experiments": ", ".join(covered),
        "absent_experiments": ", ".join(e for e, span in covered.items() if span == "absent") or "none",
        "absent_variables": ", ".join(absent_variables) or "none",
        "months_covered": MetadataValue.json(covered),
        "calendar": ", ".join(sorted(all_rows["calendar"].unique().to_list())),
        "model": ", ".join(sorted(all_rows["model"].unique().to_list())),
        "dagster/column_schema": schema_metadata(
            catalog.CMIP5_UNITS,
            {"experiment": "string", "band": "int32", "month": "date", "calendar": "string", "model": "string"},
        ),
        "path": MetadataValue.path(str(lake.layout.raw_folder(layout.CMIP5))),
    }
    lake.write_partitions(frames)  # the last step: every experiment of the run lands, or none
    return MaterializeResult(metadata=metadata)


LITHOLOGY_SCHEMA = TableSchema(
    columns=[
        TableColumn("band", "int32", description="key"),
        TableColumn("lithology", "string", description="USGS generalised class"),
        TableColumn("area_km2", "float64", description="km2 (EPSG:3338)"),
    ]
)
SOIL_PROPERTIES_SCHEMA = TableSchema(
    columns=[
        TableColumn("band", "int32", description="key"),
        TableColumn("property", "string", description="bulk_density | organic_carbon"),
        TableColumn("asset", "string", description="Earth Engine asset id"),
        TableColumn("stored_unit", "string", description="10 kg m-3 | 5 g kg-1"),
    ]
    + [TableColumn(c, "float64", description="stored units") for c in catalog.OPENLANDMAP_DEPTH_COLUMNS]
)


def land_static(
    asset: str, frame: pl.DataFrame, source: str, schema: TableSchema, lake: LakeResource
) -> MaterializeResult:
    """Describe a validated one-file static extract, then land it (the last step)."""
    path = lake.layout.raw_table(asset)
    metadata = {
        "source": source,
        "rows": frame.height,
        "bands": frame["band"].n_unique(),
        "dagster/column_schema": schema,
        "path": MetadataValue.path(str(path)),
        "preview": MetadataValue.md(markdown_table(frame.head(12))),
    }
    lake.write_partitions({path: frame})
    return MaterializeResult(metadata=metadata)


@asset(
    group_name=RAW,
    kinds={"parquet"},
    description="USGS Geologic Map of Alaska lithology areas (km2, EPSG:3338) per band and class.",
)
def band_lithology(lake: LakeResource, sources: SourcesResource) -> MaterializeResult:
    static = sources.static()
    frame = validate_lithology(static.read_lithology(), f"{static.name} USGS lithology")
    return land_static(layout.LITHOLOGY, frame, static.name, LITHOLOGY_SCHEMA, lake)


@asset(
    group_name=RAW,
    kinds={"parquet"},
    description="OpenLandMap bulk density and organic carbon per band at depths b0..b200 cm, in stored units.",
)
def band_soil_properties(lake: LakeResource, sources: SourcesResource) -> MaterializeResult:
    static = sources.static()
    frame = validate_soil_properties(static.read_soil_properties(), f"{static.name} OpenLandMap soil")
    return land_static(layout.SOIL_PROPERTIES, frame, static.name, SOIL_PROPERTIES_SCHEMA, lake)


SPATIAL_UNITS_SCHEMA = TableSchema(
    columns=[
        TableColumn("unit", "int64", description="key: band index, basin station id or cell id"),
        TableColumn("kind", "string", description="band | basin | cell"),
        TableColumn("name", "string"),
        TableColumn("latitude", "float64", description="centroid, degrees north"),
        TableColumn("longitude", "float64", description="centroid, degrees east"),
        TableColumn("area_km2", "float64", description="km2"),
        TableColumn("band", "int64", description="band holding the centroid; null outside the six bands"),
        TableColumn("nearest_band", "int64", description="band of nearest latitudes: for what exists per band only"),
        TableColumn("series_group", "int64", description="units with identical reanalysis series share it"),
    ]
)


@asset(
    group_name=RAW,
    kinds={"parquet"},
    description="The reanalysis source's spatial units (the six bands by default; basins, cells), one row per unit: "
    "centroid, area, the band holding it, the nearest band and its series group. dbt and the checks expect every "
    "unit in every month.",
)
def spatial_units(lake: LakeResource, sources: SourcesResource) -> MaterializeResult:
    reanalysis = sources.reanalysis()
    units = units_of(reanalysis)
    table = units.to_table()
    path = lake.layout.raw_table(layout.SPATIAL_UNITS)
    metadata = {
        "source": reanalysis.name,
        "kind": units.kind,
        "units": units.count,
        "outside_the_bands": units.frame["band"].null_count(),
        "series_groups": units.frame["series_group"].n_unique(),
        "dagster/column_schema": SPATIAL_UNITS_SCHEMA,
        "path": MetadataValue.path(str(path)),
        "preview": MetadataValue.md(markdown_table(table.head(12))),
    }
    lake.write_partitions({path: table})  # the last step
    return MaterializeResult(metadata=metadata)
